// The GPU check's bundle (bench/gpu/bundle.ts) builds, runs under plain Node with only koffi
// beside it, and on a machine without a driver stops cleanly: exit 2, CUDA_UNAVAILABLE, the paths
// tried, and the table — no stack trace. With --quick it runs through to the end under the CPU
// emulator of the CUDA libraries. check.sh's own checks run without a GPU too.
import { execFile, execFileSync } from "node:child_process";
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

/** The emulator needs g++ to build and nvcc behind its NVRTC. */
const emulatorTools = ["g++", "nvcc"].every((tool) => {
  try {
    execFileSync(tool, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});

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

  it.skipIf(!emulatorTools)("under the CPU emulator, main.js --quick passes every check and prints the timing rows", async () => {
    const env = { ...emulatorEnv(buildEmulator()), KILN_CACHE_DIR: CUBIN_CACHE };
    const json = join(out, "quick.json");
    const r = await exec(process.execPath, [join(out, ".device/main.js"), "--quick", "--json", json], env);
    expect(r.code, r.stdout.slice(-4000)).toBe(0);
    const { gpu_check } = JSON.parse(readFileSync(json, "utf8")) as { gpu_check: { failed: number; rows: { check: string; result: string; detail: string }[] } };
    expect(gpu_check.failed).toBe(0);
    const timing = (pattern: RegExp): string => {
      const row = gpu_check.rows.find((x) => pattern.test(x.check));
      expect(row, String(pattern)).toBeDefined();
      expect(row!.result).toBe("TIME");
      return row!.detail;
    };
    for (const shape of ["Llama-3.2-1B", "Qwen3-0.6B"]) {
      for (const variant of ["fused, graphs, GEMV", "unfused, eager, cuBLASLt"]) {
        expect(timing(new RegExp(`^${shape} \\(toy\\) decode b=1 ctx \\d+ \\(bf16, ${variant}\\)$`))).toMatch(/ms\/step .* \d+% of floor/);
        expect(timing(new RegExp(`^${shape} \\(toy\\) decode b=1 host share \\(bf16, ${variant}\\)`))).toMatch(/host busy \d+% of a step/);
      }
      const profile = timing(new RegExp(`^${shape} \\(toy\\) decode b=1 ctx \\d+ profile \\(bf16, fused, graphs, GEMV\\)$`));
      for (const part of [/^units sum [\d.]+ ms: /, /gemv [\d.]+ ms ×\d+ at [\d.]+ GB\/s/, /fused [\d.]+ ms ×\d+/, /attention [\d.]+ ms ×\d+/, /; slowest /]) expect(profile).toMatch(part);
      // the default path replays captured graphs; the eager baseline captures none
      expect(timing(new RegExp(`^${shape} \\(toy\\) decode b=1 host share \\(bf16, fused, graphs`))).toMatch(/"captures":[1-9].*"replays":[1-9]/);
      expect(timing(new RegExp(`^${shape} \\(toy\\) decode b=1 host share \\(bf16, unfused`))).toMatch(/"captures":0/);
      expect(timing(new RegExp(`^${shape} \\(toy\\) offline throughput \\(16 prompts, bf16\\)$`))).toMatch(/output tokens\/s: .* 16\/16 requests finished; KV pool \d+ blocks/);
    }
    for (const name of ["llama", "qwen3", "mistral-swa", "gemma2", "lfm2", "bamba"]) {
      expect(gpu_check.rows.find((x) => x.check === `golden ${name} (f16 weights + KV, 2e-2)`)?.result, name).toBe("PASS");
    }
    // the rows added for the KV dtype, graph pieces and the output overlap
    expect(timing(/^Llama-3\.2-1B \(toy\) decode b=4 ctx \d+ \(bf16 KV\)$/)).toMatch(/ms\/step, .* of it/);
    expect(timing(/^Llama-3\.2-1B \(toy\) decode b=4 ctx \d+ \(f32 KV\)$/)).toMatch(/ms\/step, .* of it/);
    expect(timing(/^Llama-3\.2-1B \(toy\) prefill 16 tokens \(bf16, fused, graphs, GEMV\)$/)).toMatch(/tokens\/s/);
    expect(timing(/^Llama-3\.2-1B \(toy\) offline throughput \(16 prompts, bf16, output not overlapped\)$/)).toMatch(/16\/16 requests finished; .* host busy \d+% of the run/);
  }, 420_000);

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
