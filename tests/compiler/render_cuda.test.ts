/**
 * Rendered CUDA: snapshots of the two kernels every Llama layer runs (residual add + RMS norm,
 * SiLU × mul) and their launch shapes. (render_cuda_nvcc.test.ts compiles every generated kernel.)
 */
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { cudaLaunch, renderCudaKernel } from "../../compiler/render/cuda.ts";
import type { LoweredKernel } from "../../compiler/kernel_ir.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { FLOAT_DTYPES } from "../../compiler/dtype.ts";

const SM90 = { kind: "cuda", arch: "sm_90" } as const;

async function kernelsOf(dir: string, dtype: (typeof FLOAT_DTYPES)[number]): Promise<readonly LoweredKernel[]> {
  const { graph } = await loadModel(dir);
  return compile(graph, { target: SM90, dtype }).program.kernels;
}

describe("CUDA rendering", () => {
  it("renders residual add + RMS norm (bf16) as in the snapshot", async () => {
    const k = (await kernelsOf(fixture("llama"), "bf16")).find((x) => x.name === "add_rms_norm_bf16")!;
    await expect(renderCudaKernel(k) + "\n").toMatchFileSnapshot("__snapshots__/add_rms_norm_bf16.cu");
  });

  it("renders SiLU × mul (bf16) as in the snapshot", async () => {
    const k = (await kernelsOf(fixture("llama"), "bf16")).find((x) => x.name === "silu_mul_bf16")!;
    await expect(renderCudaKernel(k) + "\n").toMatchFileSnapshot("__snapshots__/silu_mul_bf16.cu");
  });

  it("describes each kernel's launch: a block per row, threads for the widest loop, locals in shared memory", async () => {
    const kernels = await kernelsOf(fixture("fortune-llama"), "bf16");
    const byName = new Map(kernels.map((k) => [k.name, k]));
    // hidden 256: 64 threads each moving 4 elements; the residual (256 floats) and 1/rms in shared memory
    expect(cudaLaunch(byName.get("add_rms_norm_bf16")!)).toEqual({ grid: ["T", 1, 1], block: [64, 1, 1], sharedBytes: 4 * 257 });
    expect(cudaLaunch(byName.get("add_gather_rows_rms_norm_bf16")!).grid).toEqual(["S", 1, 1]);
    // intermediate 768 / 4 = 192 → 256 threads, no shared memory
    expect(cudaLaunch(byName.get("silu_mul_bf16")!)).toEqual({ grid: ["T", 1, 1], block: [256, 1, 1], sharedBytes: 0 });
  });
});
