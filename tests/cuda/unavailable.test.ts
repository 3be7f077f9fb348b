// Without a usable CUDA driver the CUDA backend fails with KilnError CUDA_UNAVAILABLE naming what
// was tried — from the library API and from `kiln golden --backend cuda` — and the CPU path does
// not notice it exists.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function openError(env: Record<string, string>): unknown {
  try {
    CudaBackend.open({ probe: { env, exists: () => false, listDir: () => [], ldconfig: () => undefined } }).dispose();
  } catch (e) {
    return e;
  }
  return undefined;
}

async function kiln(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("npx", ["tsx", "cli/kiln.ts", ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe("CUDA backend without a driver", () => {
  it("opening it fails with CUDA_UNAVAILABLE listing every libcuda path tried", () => {
    const err = openError({});
    expect(isKilnError(err, "CUDA_UNAVAILABLE")).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toMatch(/cannot load libcuda/);
    expect(msg).toContain("KILN_LIBCUDA");
    for (const p of ["/usr/local/cuda/lib64/libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"]) {
      expect(msg).toContain(`${p} (standard folder): not found`);
    }
  });

  it("a file that is not a shared library is reported as such", () => {
    const err = openError({ KILN_LIBCUDA: fileURLToPath(new URL("../../package.json", import.meta.url)) });
    expect(isKilnError(err, "CUDA_UNAVAILABLE")).toBe(true);
    expect((err as Error).message).toMatch(/package\.json \(environment\): (not found|failed to load)/);
  });

  it("`kiln golden --backend cuda` exits 2 with the CUDA_UNAVAILABLE error", async () => {
    const r = await kiln(["golden", "tests/fixtures/llama", "--backend", "cuda"], { KILN_LIBCUDA: "/nonexistent/libcuda.so.1" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("kiln: error [CUDA_UNAVAILABLE]: cannot load libcuda");
    expect(r.stderr).toContain("/nonexistent/libcuda.so.1 (environment): not found");
    expect(r.stdout).toBe("");
  }, 60_000);

  it("`kiln golden --backend` accepts only known backends", async () => {
    const r = await kiln(["golden", "tests/fixtures/llama", "--backend", "tpu"], {});
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("backend 'tpu' is not available; use cpu or cuda");
  }, 60_000);
});
