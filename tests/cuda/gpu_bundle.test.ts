// The GPU check's bundle (bench/gpu/bundle.ts) builds, runs under plain Node with only koffi
// beside it, and on a machine without a driver stops cleanly: exit 2, CUDA_UNAVAILABLE, the paths
// tried, and the table — no stack trace. Under the CPU emulator of the CUDA libraries it runs its
// checks and prints its table. check.sh's own checks run without a GPU too.
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
const out = mkdtempSync(join(tmpdir(), "kiln-gpu-bundle-"));
const CUBIN_CACHE = join(ROOT, "build/cuda-emulator/cubin-cache");

async function exec(cmd: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(cmd, args, { cwd, env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

beforeAll(async () => {
  const r = await exec("npx", ["tsx", "bench/gpu/bundle.ts", "--out", join(out, ".device"), "--no-node"]);
  expect(r.code, r.stderr).toBe(0);
}, 120_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("GPU check bundle", () => {
  it("holds main.js and koffi's glibc x86-64 binary, and nothing from node_modules besides", () => {
    for (const f of ["main.js", "MANIFEST", "node_modules/koffi/package.json", "node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node"]) {
      expect(existsSync(join(out, ".device", f)), f).toBe(true);
    }
    expect(existsSync(join(out, ".device/node_modules/koffi/vendor"))).toBe(false);
    expect(existsSync(join(out, ".device/node_modules/@koromix/koffi-linux-x64/musl_x64"))).toBe(false);
  });

  it("without a CUDA driver, main.js exits 2 with CUDA_UNAVAILABLE and the table", async () => {
    const r = await exec(process.execPath, [join(out, ".device/main.js")], { KILN_LIBCUDA: "/nonexistent/libcuda.so.1" });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("the CUDA backend did not open [CUDA_UNAVAILABLE]");
    expect(r.stdout).toContain("/nonexistent/libcuda.so.1 (environment): not found");
    expect(r.stdout).toMatch(/open CUDA backend\s+FAIL/);
    expect(r.stderr).not.toMatch(/at .*main\.js/);
  }, 60_000);

  // --smoke runs one golden and no 16-bit, split-KV or fortune-text checks, and --budget 0 skips
  // every timing section after the first (the fortune model's, a few steps): the run still opens
  // the backend, checks kernel parity and prints the table. What the skipped checks compute is
  // tested on the emulator by emulated_backend, emulated_half and emulated_artifact.
  it("under the CPU emulator, main.js --smoke --budget 0 opens the backend, passes its checks and prints the table", async () => {
    const env = { ...emulatorEnv(buildEmulator()), KILN_CACHE_DIR: CUBIN_CACHE };
    const json = join(out, "quick.json");
    const r = await exec(process.execPath, [join(out, ".device/main.js"), "--smoke", "--budget", "0", "--json", json], env);
    expect(r.code, r.stdout.slice(-4000)).toBe(0);
    const table = r.stdout.slice(r.stdout.lastIndexOf("\ncheck "));
    expect(table).toMatch(/^\ncheck +result {2}detail\n-+ {2}-{6} {2}-{6}\n/);
    for (const row of [/^open CUDA backend +PASS +.*Emulated/m, /^kernel parity \(\d+ cases\) +PASS/m, /^golden llama \(fp32, 1e-3\) +PASS/m, /^other goldens and the fortune text +SKIP +--smoke$/m, /^fortune decode b=1 ctx 16 +TIME/m]) {
      expect(table).toMatch(row);
    }
    expect(table).toMatch(/^Llama-3\.2-1B decode +SKIP +over the 0s budget$/m);
    const { gpu_check } = JSON.parse(readFileSync(json, "utf8")) as { gpu_check: { failed: number; rows: readonly unknown[] } };
    expect(gpu_check.failed).toBe(0);
    expect(table.trim().split("\n")).toHaveLength(gpu_check.rows.length + 2);
  }, 300_000);

  it("check.sh is valid bash and refuses to start without .device", async () => {
    expect((await exec("bash", ["-n", "bench/gpu/check.sh"])).code).toBe(0);
    const tree = join(out, "tree");
    mkdirSync(join(tree, "bench/gpu"), { recursive: true });
    cpSync(join(ROOT, "bench/gpu/check.sh"), join(tree, "bench/gpu/check.sh"));
    const r = await exec("bash", [join(tree, "bench/gpu/check.sh")], {}, tree);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain("missing .device/main.js: run 'npx tsx bench/gpu/bundle.ts' and carry .device");
  }, 60_000);
});
