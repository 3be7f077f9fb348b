/**
 * Rendered CUDA: snapshots of the two kernels every Llama layer runs (residual add + RMS norm,
 * SiLU × mul), and an nvcc compile of every kernel generated for every supported model in every
 * storage type, so a kernel that does not compile fails CI even without a GPU. All kernels of a
 * model (bf16, f16 and f32 flavours) go into one translation unit: one nvcc run per model.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { compileGraph } from "../../compiler/pipeline.ts";
import { STORAGE_DTYPES } from "../../compiler/program.ts";
import { cudaLaunch, renderCudaKernel, renderCudaModule } from "../../compiler/render/cuda.ts";
import { findCompiler, nvccFlags } from "../../compiler/toolchain.ts";
import type { LoweredKernel } from "../../compiler/kernel_ir.ts";
import { loadModel } from "../../runtime/model_loader.ts";
import { fixture } from "../fixture_copy.ts";

const FORTUNE = fileURLToPath(new URL("../../assets/fortune-llama", import.meta.url));
const MODELS: [string, string][] = [
  ["llama", fixture("llama")],
  ["llama-bf16", fixture("llama-bf16")],
  ["qwen2", fixture("qwen2")],
  ["qwen3", fixture("qwen3")],
  ["mistral-swa", fixture("mistral-swa")],
  ["fortune-llama", FORTUNE],
  ["qwen3-moe", fixture("qwen3-moe")],
  ["lfm2", fixture("lfm2")],
  ["minimax", fixture("minimax")],
  ["mamba", fixture("mamba")],
  ["mamba2", fixture("mamba2")],
  ["jamba", fixture("jamba")],
  ["bamba", fixture("bamba")],
];
const SM90 = { kind: "cuda", arch: "sm_90" } as const;
const nvcc = findCompiler("nvcc");

async function kernelsOf(dir: string, dtype: (typeof STORAGE_DTYPES)[number]): Promise<readonly LoweredKernel[]> {
  const { graph } = await loadModel(dir);
  return compileGraph(graph, { target: SM90, dtype }).program.kernels;
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
    const kernels = await kernelsOf(FORTUNE, "bf16");
    const byName = new Map(kernels.map((k) => [k.name, k]));
    // hidden 256: 64 threads each moving 4 elements; the residual (256 floats) and 1/rms in shared memory
    expect(cudaLaunch(byName.get("add_rms_norm_bf16")!)).toEqual({ grid: ["T", 1, 1], block: [64, 1, 1], sharedBytes: 4 * 257 });
    expect(cudaLaunch(byName.get("add_gather_rows_rms_norm_bf16")!).grid).toEqual(["S", 1, 1]);
    // intermediate 768 / 4 = 192 → 256 threads, no shared memory
    expect(cudaLaunch(byName.get("silu_mul_bf16")!)).toEqual({ grid: ["T", 1, 1], block: [256, 1, 1], sharedBytes: 0 });
  });

  it.skipIf(nvcc.version === undefined)("nvcc compiles every kernel of every supported model, in every storage type", async () => {
    const run = promisify(execFile);
    const dir = mkdtempSync(join(tmpdir(), "kiln-nvcc-"));
    // models of the same shapes and constants generate the same kernels: compile each module once
    const modules = new Map<string, string>();
    for (const [name, path] of MODELS) {
      const kernels = (await Promise.all(STORAGE_DTYPES.map((d) => kernelsOf(path, d)))).flat();
      const src = renderCudaModule(kernels);
      if (![...modules.values()].includes(src)) modules.set(name, src);
    }
    const results = await Promise.allSettled(
      [...modules].map(async ([name, src]) => {
        const file = join(dir, `${name}.cu`);
        writeFileSync(file, src);
        await run(nvcc.command, [...nvccFlags("sm_90"), "-o", join(dir, `${name}.cubin`), file]);
        return name;
      }),
    );
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [`${[...modules.keys()][i]}: ${String(Reflect.get(r.reason, "stderr") ?? r.reason)}`] : []));
    expect(failures).toEqual([]);
    expect(modules.size).toBeGreaterThanOrEqual(3);
  }, 120_000);
});
