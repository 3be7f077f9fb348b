/**
 * The nightly package end to end (slow tier, about 3.5 minutes on 2 busy cores, mostly tools/nightly.sh): tools/nightly.sh
 * builds the tarball, which is installed into an empty folder with `npm install --offline` from the
 * npm cache `npm ci` filled, then used with a PATH holding only node, npm, npx and sh — no cc, gcc,
 * g++, cmake or nvcc — through `npx kiln run`, a script importing the library API, and a
 * TypeScript consumer type-checked against the package's declarations. The texts are checked
 * against the fortune model's Hugging Face reference (assets/fortune-llama/reference.json).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const references = JSON.parse(readFileSync(join(ROOT, "assets/fortune-llama/reference.json"), "utf8")) as readonly { prompt: string; greedy: string }[];

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The first file named `name` on the PATH, through its links (npm and npx are links to npm's CLI scripts). */
function onPath(name: string): string {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    const p = join(dir, name);
    if (dir !== "" && existsSync(p)) return realpathSync(p);
  }
  throw new Error(`${name} is not on the PATH: the packaging test needs node, npm, npx and sh`);
}

const work = mkdtempSync(join(tmpdir(), "kiln-nightly-"));
const out = join(work, "out");
const app = join(work, "app");
const bin = join(work, "bin");
// only what npm and the package need: no compiler can be found, whatever the machine has
const env: NodeJS.ProcessEnv = { HOME: process.env["HOME"], PATH: bin, npm_config_update_notifier: "false" };
let tarball = "";

beforeAll(async () => {
  mkdirSync(app);
  mkdirSync(bin);
  for (const tool of ["node", "npm", "npx", "sh"]) symlinkSync(onPath(tool), join(bin, tool));

  const built = await run("bash", ["tools/nightly.sh", out], { cwd: ROOT, timeoutMs: 240_000 });
  if (built.code !== 0) throw new Error(`tools/nightly.sh failed (${built.code}):\n${built.stdout}\n${built.stderr}`);
  const index = JSON.parse(readFileSync(join(out, "index.json"), "utf8")) as { builds: { tarball: string; version: string }[] };
  const latest = index.builds[0];
  if (latest === undefined) throw new Error("nightly/index.json lists no build");
  tarball = join(out, latest.tarball);

  // the app's lockfile pins the tarball's npm-shrinkwrap.json, as docs/nightly.md says to install offline
  const locked = await run(process.execPath, [join(ROOT, "tools/nightly-package.mjs"), "lock", tarball, app], { cwd: ROOT, timeoutMs: 30_000 });
  if (locked.code !== 0) throw new Error(`writing the app's lockfile failed:\n${locked.stderr}`);
  const installed = await run("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], { cwd: app, env, timeoutMs: 180_000 });
  if (installed.code !== 0) {
    const missing = /request to (\S+) failed: cache mode is 'only-if-cached'/.exec(installed.stderr)?.[1];
    throw new Error(
      missing !== undefined
        ? `a dependency of the nightly is not in the npm cache (${missing}): run \`npm ci\` in the checkout first, online, so the cache holds every dependency\n${installed.stderr}`
        : `npm install of ${tarball} failed (${installed.code}):\n${installed.stderr}`,
    );
  }
}, 420_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the nightly package", () => {
  it("is versioned X.Y.Z-nightly.YYYYMMDD.<sha>, carries the prebuilds, and installs without running its own scripts", () => {
    const pkg = JSON.parse(readFileSync(join(app, "node_modules/kiln/package.json"), "utf8")) as Record<string, unknown>;
    const base = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    expect(pkg["version"]).toMatch(new RegExp(`^${base.replaceAll(".", "\\.")}-nightly\\.\\d{8}\\.g?[0-9a-f]{7,}(\\.dirty)?$`));
    expect(pkg["scripts"]).toBeUndefined();
    for (const file of ["prebuilds/linux-x64/kiln_cpu.node", "prebuilds/linux-x64/fortune-llama/kernels/module.so", "build/js/runtime/api.js", "build/js/runtime/api.d.ts"]) {
      expect(existsSync(join(app, "node_modules/kiln", file)), file).toBe(true);
    }
    // nothing built at install: no source build of the addon, no cmake output
    expect(existsSync(join(app, "node_modules/kiln/build/native"))).toBe(false);
  });

  it("npx kiln run generates the reference text from the embedded model with no compiler on the PATH", async () => {
    const ref = references[0]!;
    const r = await run("npx", ["kiln", "run", "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "12"], { cwd: app, env, timeoutMs: 60_000 });
    expect(r.stderr).not.toMatch(/error|rebuilt|built its stored source/);
    expect(r.code).toBe(0);
    const text = r.stdout.replace(/\n$/, "");
    expect(text.length).toBeGreaterThan(0);
    expect(ref.greedy.startsWith(text)).toBe(true);
  }, 90_000);

  it("a script importing the library API generates text", async () => {
    const ref = references[3]!;
    writeFileSync(
      join(app, "check.mjs"),
      `import { createEngine } from "kiln";
const engine = await createEngine();
let text = "";
for await (const d of engine.generate(${JSON.stringify(ref.prompt)}, { maxTokens: 8, temperature: 0 })) text += d.text;
const [batch] = await engine.generateBatch(["A computer"], { maxTokens: 4 });
process.stdout.write(JSON.stringify({ model: engine.model, text, batch: batch.completions[0].tokenIds.length }));
await engine.close();
`,
    );
    const r = await run("node", ["check.mjs"], { cwd: app, env, timeoutMs: 60_000 });
    expect(r.stderr).toBe("");
    const result = JSON.parse(r.stdout) as { model: string; text: string; batch: number };
    expect(result.model).toMatch(/node_modules\/kiln\/prebuilds\/linux-x64\/fortune-llama$/);
    expect(result.text.length).toBeGreaterThan(0);
    expect(ref.greedy.startsWith(result.text)).toBe(true);
    expect(result.batch).toBe(4);
  }, 90_000);

  it("a TypeScript consumer type-checks against the package's declarations", async () => {
    writeFileSync(
      join(app, "consumer.ts"),
      `import { createEngine, serve, type CompletionDelta, type KilnServer } from "kiln";
const engine = await createEngine({ maxModelLen: 64 });
const deltas: CompletionDelta[] = [];
for await (const d of engine.generate("You will", { maxTokens: 4, signal: AbortSignal.timeout(10_000) })) deltas.push(d);
const total: number = (await engine.generateBatch(["A"], { temperature: 0 }))[0]!.usage.totalTokens;
const server: KilnServer = await serve({ engine, port: 0 });
await server.close();
// @ts-expect-error: maxTokens is a number
engine.generate("x", { maxTokens: "4" });
console.log(total, deltas.length);
`,
    );
    const tsconfig = {
      compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", noEmit: true, types: ["node"], typeRoots: [join(ROOT, "node_modules/@types")] },
      files: ["consumer.ts"],
    };
    writeFileSync(join(app, "tsconfig.json"), JSON.stringify(tsconfig));
    // an ES module app, so top-level await type-checks under nodenext
    const pkg = JSON.parse(readFileSync(join(app, "package.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(app, "package.json"), JSON.stringify({ ...pkg, type: "module" }, null, 2));
    const tsc = join(dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin/tsc");
    const r = await run("node", [tsc, "-p", "."], { cwd: app, env, timeoutMs: 120_000 });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.code).toBe(0);
  }, 150_000);
});
