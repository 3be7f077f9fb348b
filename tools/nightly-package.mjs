#!/usr/bin/env node
// The steps of tools/nightly.sh that edit JSON and declarations, in Node rather than sed:
//
//   node tools/nightly-package.mjs stage <stage-dir> <version> <commit> <cpu-arch>
//       rewrites the staged package.json into the installable one, and the emitted declarations'
//       relative `.ts` specifiers to `.js` (tsc keeps them as written; a consumer has no sources
//       to resolve them to, only the .d.ts beside each .js)
//   node tools/nightly-package.mjs shrinkwrap <stage-dir>
//       turns the staged package-lock.json (pruned by npm to the package's dependencies) into the
//       npm-shrinkwrap.json the package carries: the exact versions the nightly was tested with,
//       each with the registry URL of its tarball (kiln's lock leaves `resolved` out), so a
//       lockfile made from it installs from the npm cache by integrity without any registry metadata
//   node tools/nightly-package.mjs index <out-dir> <pack-json-file> <version> <commit> <dirty>
//       adds the packed tarball to <out-dir>/index.json, one entry per commit (newest first)
//   node tools/nightly-package.mjs lock <tarball> <app-dir>
//       writes <app-dir>/package.json and package-lock.json for an app that depends on the
//       tarball, pinning its dependencies to the tarball's npm-shrinkwrap.json. npm honours a
//       shrinkwrap only for packages from a registry, so an install of the file needs this lock
//       to get the tested versions, and to work offline (`npm ci` caches tarballs, not the
//       registry metadata an unlocked install must resolve version ranges against)
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const [step, ...args] = process.argv.slice(2);

/** Dependencies only the source build needs (the addon comes prebuilt): an install must not fetch or run them. */
const BUILD_ONLY = ["cmake-js", "node-addon-api"];

function stage(dir, version, commit, cpuArch) {
  const path = join(dir, "package.json");
  const pkg = JSON.parse(readFileSync(path, "utf8"));
  pkg.version = version;
  // installable: not private; no scripts at all, so neither `npm install <tgz>` nor `npm pack`
  // runs `prepare` (cmake + a compiler) or anything else
  delete pkg.private;
  delete pkg.scripts;
  delete pkg.devDependencies;
  delete pkg.binary;
  for (const name of BUILD_ONLY) delete pkg.dependencies[name];
  // the compiled JavaScript with its declarations; kiln/dsl stays TypeScript, because plugins run
  // through tsx with the CLI's TypeScript modules (bin/kiln.js) and must share them
  pkg.exports = {
    ".": { types: "./build/js/runtime/api.d.ts", default: "./build/js/runtime/api.js" },
    "./dsl": pkg.exports["./dsl"],
    "./package.json": "./package.json",
  };
  pkg.types = "./build/js/runtime/api.d.ts";
  pkg.files = ["bin", "build/js", "cli", "compiler", "runtime", "models", "kernels/cuda", "prebuilds", "README.md", "npm-shrinkwrap.json"];
  pkg.kilnBuild = { channel: "nightly", commit, cpuArch, prebuilds: ["linux-x64"] };
  writeFileSync(path, JSON.stringify(pkg, null, 2) + "\n");

  let rewritten = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".d.ts")) {
        const text = readFileSync(p, "utf8");
        const out = text.replace(/((?:from\s+|import\s*\(\s*)["'])(\.{1,2}\/[^"']*?)\.ts(["'])/g, "$1$2.js$3");
        if (out !== text) {
          writeFileSync(p, out);
          rewritten++;
        }
      }
    }
  };
  walk(join(dir, "build", "js"));
  process.stdout.write(`nightly: package.json ${version}; ${rewritten} declaration files' specifiers rewritten to .js\n`);
}

function index(outDir, packJsonFile, version, commit, dirty) {
  const [packed] = JSON.parse(readFileSync(packJsonFile, "utf8"));
  const path = join(outDir, "index.json");
  const previous = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : { builds: [] };
  const entry = {
    version,
    commit,
    dirty: dirty === "true",
    date: new Date().toISOString(),
    tarball: packed.filename,
    bytes: packed.size,
    unpackedBytes: packed.unpackedSize,
    integrity: packed.integrity,
    shasum: packed.shasum,
    platforms: ["linux-x64"],
  };
  // one entry per commit (a rebuild of the same commit replaces its entry), newest first
  const builds = [entry, ...previous.builds.filter((b) => !(b.commit === commit && b.dirty === entry.dirty))];
  writeFileSync(path, JSON.stringify({ package: "kiln", channel: "nightly", builds }, null, 2) + "\n");
  process.stdout.write(`nightly: ${packed.filename} (${(packed.size / 2 ** 20).toFixed(1)} MiB) listed in ${path}\n`);
}

function shrinkwrap(dir) {
  const lock = JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8"));
  let filled = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === "" || entry.link === true || entry.resolved !== undefined) continue;
    // node_modules/@scope/name or …/node_modules/name: the registry's tarball URL for it
    const name = entry.name ?? path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    entry.resolved = `https://registry.npmjs.org/${name}/-/${name.split("/").pop()}-${entry.version}.tgz`;
    filled++;
  }
  writeFileSync(join(dir, "npm-shrinkwrap.json"), JSON.stringify(lock, null, 2) + "\n");
  rmSync(join(dir, "package-lock.json"));
  process.stdout.write(`nightly: npm-shrinkwrap.json pins ${Object.keys(lock.packages).length - 1} packages (${filled} tarball URLs filled in)\n`);
}

function lockApp(tarball, appDir) {
  const tgz = resolve(tarball);
  const sw = JSON.parse(execFileSync("tar", ["-xzOf", tgz, "package/npm-shrinkwrap.json"], { encoding: "utf8", maxBuffer: 64 * 2 ** 20 }));
  const root = sw.packages[""];
  const spec = `file:${tgz}`;
  const packages = {
    "": { name: "kiln-app", dependencies: { kiln: spec } },
    "node_modules/kiln": { version: root.version, resolved: spec, license: root.license, dependencies: root.dependencies, bin: root.bin, engines: root.engines },
  };
  // the shrinkwrap's paths are relative to kiln's folder; hoisted into the app they keep their names
  for (const [path, entry] of Object.entries(sw.packages)) if (path !== "") packages[path] = entry;
  writeFileSync(join(appDir, "package.json"), JSON.stringify({ name: "kiln-app", private: true, dependencies: { kiln: spec } }, null, 2) + "\n");
  writeFileSync(join(appDir, "package-lock.json"), JSON.stringify({ name: "kiln-app", lockfileVersion: 3, requires: true, packages }, null, 2) + "\n");
}

if (step === "stage" && args.length === 4) stage(...args);
else if (step === "shrinkwrap" && args.length === 1) shrinkwrap(...args);
else if (step === "index" && args.length === 5) index(...args);
else if (step === "lock" && args.length === 2) lockApp(...args);
else {
  process.stderr.write("usage: nightly-package.mjs stage <dir> <version> <commit> <cpu-arch> | shrinkwrap <dir> | index <out-dir> <pack.json> <version> <commit> <dirty> | lock <tarball> <app-dir>\n");
  process.exit(2);
}
