// On a machine with an NVIDIA GPU: every CUDA kernel against its CPU twin on random inputs of
// awkward sizes, and golden parity of every supported fixture on the CUDA backend (fp32 within
// 1e-3, bf16 weights within 2e-2).
// Skipped, saying why, where no CUDA driver is found (the emulated suite covers the same code).
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { CudaBackend } from "../../runtime/cuda/backend.ts";
import { registerCudaBackend } from "../../runtime/cuda/register.ts";
import { isKilnError } from "../../runtime/errors.ts";
import { runGolden, type GoldenOptions } from "../../runtime/golden_check.ts";
import { fixture } from "../fixture_copy.ts";
import { PARITY_CASES, runParityCases } from "./parity_cases.ts";

function openGpu(): { backend: CudaBackend } | { skipped: string } {
  try {
    return { backend: CudaBackend.open() };
  } catch (e) {
    if (isKilnError(e, "CUDA_UNAVAILABLE")) return { skipped: e.message.split("\n")[0] ?? "no CUDA driver" };
    throw e;
  }
}

const gpu = openGpu();

if ("skipped" in gpu) {
  describe("GPU parity", () => {
    it.skip(`skipped: no CUDA driver on this machine (${gpu.skipped})`, () => {});
  });
} else {
  const backend = gpu.backend;
  afterAll(() => backend.dispose());

  describe(`GPU parity on ${backend.describe()}`, () => {
    for (const c of PARITY_CASES) {
      it(`kernel: ${c.name}`, () => {
        const [r] = runParityCases(backend, [c]);
        expect(r?.maxErr, r?.name).toBeLessThanOrEqual(r?.tol ?? 0);
      });
    }

    const FORTUNE = fileURLToPath(new URL("../../assets/fortune-llama", import.meta.url));
    const GOLDEN: [string, string, GoldenOptions][] = [
      ["llama", fixture("llama"), { tolerance: 1e-3, backend: "cuda" }],
      ["llama-bf16", fixture("llama-bf16"), { tolerance: 1e-3, backend: "cuda", ropeFreqBf16: true }],
      ["qwen2", fixture("qwen2"), { tolerance: 1e-3, backend: "cuda" }],
      ["qwen3", fixture("qwen3"), { tolerance: 1e-3, backend: "cuda" }],
      ["mistral-swa", fixture("mistral-swa"), { tolerance: 1e-3, backend: "cuda" }],
      ["fortune-llama", FORTUNE, { tolerance: 1e-3, backend: "cuda" }],
      ["lfm2", fixture("lfm2"), { tolerance: 1e-3, backend: "cuda" }],
      ["mamba", fixture("mamba"), { tolerance: 1e-3, backend: "cuda" }],
      ["mamba2", fixture("mamba2"), { tolerance: 1e-3, backend: "cuda" }],
      ["bamba", fixture("bamba"), { tolerance: 1e-3, backend: "cuda" }],
    ];
    // f32 only: bf16 activations flip a MoE model's near-tied routing decisions
    const GOLDEN_F32_ONLY: [string, string, GoldenOptions][] = [
      ["qwen3-moe", fixture("qwen3-moe"), { tolerance: 1e-3, backend: "cuda" }],
      ["minimax", fixture("minimax"), { tolerance: 1e-3, backend: "cuda" }],
      ["jamba", fixture("jamba"), { tolerance: 1e-3, backend: "cuda" }],
    ];
    for (const [name, dir, opts] of GOLDEN_F32_ONLY) {
      it(`golden: ${name}`, async () => {
        const cuda = registerCudaBackend();
        try {
          const { summary } = await runGolden(dir, opts);
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }
    for (const [name, dir, opts] of GOLDEN) {
      it(`golden: ${name}`, async () => {
        const cuda = registerCudaBackend();
        try {
          const { summary } = await runGolden(dir, opts);
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
      it(`golden: ${name}, bf16 weights (2e-2)`, async () => {
        const cuda = registerCudaBackend({ weightDtype: "bf16" });
        try {
          const { summary } = await runGolden(dir, { ...opts, tolerance: 2e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }
  });
}
