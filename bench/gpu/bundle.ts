/**
 * Makes the folder the GPU check carries to the device machine (default .device/, git-ignored):
 *   main.js       bench/gpu/main.ts bundled into one ES module (koffi left external)
 *   node_modules/ koffi and its linux-x64 (glibc) binary, the only native code
 *   node.xz, unpack.sh, node.version   this machine's Node.js (bench/gpu/pack_node.sh)
 *   MANIFEST      what is in it, with sizes
 * Usage: npx tsx bench/gpu/bundle.ts [--out <dir>] [--no-node]
 * The device call carries at most 64 MiB of working tree; this folder is about 30 MiB.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("../..", import.meta.url));
const argv = process.argv.slice(2);
const outAt = argv.indexOf("--out");
const out = outAt >= 0 ? (argv[outAt + 1] ?? ".device") : join(root, ".device");
const withNode = !argv.includes("--no-node");

rmSync(join(out, "node_modules"), { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(root, "bench/gpu/main.ts")],
  outfile: join(out, "main.js"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["koffi"],
  // CommonJS dependencies inside an ES module bundle still call require()
  banner: { js: "import { createRequire as __kilnCreateRequire } from 'node:module'; const require = __kilnCreateRequire(import.meta.url);" },
  legalComments: "none",
  logLevel: "warning",
});

// koffi: its JS loaders and the glibc x86-64 binary; no sources, docs or musl build
const skip = /[/\\](doc|vendor|lib|musl_x64)([/\\]|$)|\.(cc|hh|inc|md|S|asm|def)$|CMakeLists\.txt$/;
for (const pkg of ["koffi", "@koromix/koffi-linux-x64"]) {
  cpSync(join(root, "node_modules", pkg), join(out, "node_modules", pkg), {
    recursive: true,
    filter: (src) => !skip.test(`/${relative(join(root, "node_modules", pkg), src)}`),
  });
}

if (withNode) execFileSync("bash", [join(root, "bench/gpu/pack_node.sh"), out], { stdio: "inherit" });

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
}
const listing = files(out)
  .filter((f) => !f.endsWith("MANIFEST"))
  .map((f) => ({ file: relative(out, f), bytes: statSync(f).size }));
const total = listing.reduce((n, f) => n + f.bytes, 0);
writeFileSync(join(out, "MANIFEST"), listing.map((f) => `${String(f.bytes).padStart(10)}  ${f.file}`).join("\n") + `\n${String(total).padStart(10)}  total\n`);
console.log(`${out}: ${listing.length} files, ${(total / 2 ** 20).toFixed(1)} MiB${withNode ? "" : " (no Node binary)"}`);
if (total > 60 * 2 ** 20) console.log("warning: over 60 MiB; the device call carries at most 64 MiB with the working tree");
