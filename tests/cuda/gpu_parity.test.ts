// On a machine with an NVIDIA GPU: every CUDA kernel against its CPU twin on random inputs of
// awkward sizes, and golden parity of every supported fixture on the CUDA backend (fp32 within
// 1e-3, bf16 weights within 2e-2).
// Skipped, saying why, where no CUDA driver is found (the emulated suite covers the same code).
import { afterAll, describe, expect, it } from "vitest";
import { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { runGolden, type GoldenOptions } from "../../cli/golden_check.ts";
import { fixturesWhere, type FixtureFacts } from "../fixtures/index.ts";
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

    const goldenOptions = (f: FixtureFacts): GoldenOptions => ({ tolerance: 1e-3, backend: "cuda", ropeFreqBf16: f.ropeFreqBf16 });
    for (const f of fixturesWhere((x) => x.golden)) {
      it(`golden: ${f.name}`, async () => {
        const cuda = registerCudaBackend();
        try {
          const { summary } = await runGolden(f.dir, goldenOptions(f));
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }
    // not the MoE fixtures: bf16 activations flip their near-tied routing decisions
    for (const f of fixturesWhere((x) => x.golden && x.halfPrecision)) {
      it(`golden: ${f.name}, bf16 weights (2e-2)`, async () => {
        const cuda = registerCudaBackend({ weightDtype: "bf16" });
        try {
          const { summary } = await runGolden(f.dir, { ...goldenOptions(f), tolerance: 2e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }
  });
}
