// 16-bit weights and KV cache on the CUDA backend, through the CPU emulator of libcuda, NVRTC and
// cuBLASLt (tests/cuda/emulator): HF goldens with f16 GEMM and embedding matrices (f16 GEMMs and
// GEMVs, fp32 accumulation) and an f16 cache (emulated_backend.test.ts has the bf16 goldens), and
// the device bytes bf16 and f16 take.
import { expect, it } from "vitest";
import { CudaExecutor, cudaProgramOptions, type CudaCompileSettings, type CudaExecutorOptions } from "../../runtime/backends/cuda/executor.ts";
import { deviceWeightBytes } from "../../runtime/backends/cuda/memory_budget.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { packStep } from "../../runtime/backends/kv_cache.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { fixturesWhere } from "../fixtures/index.ts";
import { emulatedSuite } from "./emulated_suite.ts";
import { compile } from "../../compiler/pipeline.ts";
import { CpuExecutor } from "../reference/cpu_executor.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import type { Program } from "../../compiler/program.ts";

emulatedSuite("16-bit storage on the emulated CUDA backend", (backend) => {
  // MoE fixtures stay f32-only here as with bf16: rounding flips near-tied routing decisions; the
  // fortune model is llama's shape, at 25 s a run here
  for (const f of fixturesWhere((x) => x.golden && x.halfPrecision && !x.trained)) {
    it(`${f.name} with f16 weights and KV cache (f16 GEMMs, fp32 accumulation; 2e-2)`, async () => {
      const cuda = registerCudaBackend({ weightDtype: "f16" });
      try {
        const { summary } = await runGolden(f.dir, { tolerance: 2e-2, backend: "cuda", ropeFreqBf16: f.ropeFreqBf16 });
        expect(summary.ok, JSON.stringify(summary)).toBe(true);
        // a path that silently ran in f32 would land near 1e-7
        expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-5);
      } finally {
        cuda.dispose();
      }
    });
  }

  it("mistral-swa with f32 weights and an f16 KV cache (2e-2)", async () => {
    const cuda = registerCudaBackend({ kvCacheDtype: "f16" });
    try {
      const { summary } = await runGolden(fixture("mistral-swa"), { tolerance: 2e-2, backend: "cuda" });
      expect(summary.ok, JSON.stringify(summary)).toBe(true);
      expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-6);
    } finally {
      cuda.dispose();
    }
  });

  // the executor with 16-bit KV and weights: bytes held, and the fused program's rotary + cache
  // write against the CPU reference executor (the traced graph node by node, f32 cache)
  for (const half of ["bf16", "f16"] as const) {
    it(`${half} matrices and cache take half the bytes of f32, and the fused program's logits stay within the format's precision of the CPU reference`, async () => {
      const loaded = await loadModel(fixture("qwen3"));
      const table = Array.from({ length: 12 }, (_, i) => i);
      const prompt = Array.from({ length: 40 }, (_, i) => 5 + ((i * 29) % 500));
      const steps = [
        packStep([{ tokens: prompt.slice(0, 33), numCached: 0, blockTable: table }], 16),
        // 7 tokens: the GEMMs of this step run as GEMVs (≤ 8 rows); the prefill's through cuBLASLt
        packStep([{ tokens: prompt.slice(33), numCached: 33, blockTable: table }], 16),
      ] as const;
      const run = (opts: Partial<CudaExecutorOptions & CudaCompileSettings>): { logits: Float32Array; bytes: number } => {
        const ex = CudaExecutor.fromGraph(loaded.graph, loaded.weights, backend(), { numBlocks: 12, blockSize: 16, cudaGraphs: false, ...opts });
        try {
          ex.run(steps[0]);
          const logits = ex.run(steps[1]);
          return { logits, bytes: ex.deviceBytes };
        } finally {
          ex.dispose();
        }
      };
      const cpu = new CpuExecutor(loaded.graph, loaded.weights, loadNative(), { numBlocks: 12, blockSize: 16 });
      cpu.run(steps[0]);
      const reference = cpu.run(steps[1]);
      const f32 = run({});
      const kvOnly = run({ kvCacheDtype: half });
      const both = run({ weightDtype: half });
      const kv = loaded.graph.kvLayers.reduce((n, l) => n + 2 * 13 * 16 * l.numKvHeads * l.headDim, 0); // 12 blocks + padding
      expect(f32.bytes - kvOnly.bytes).toBe(kv * 2);
      const program = (weightDtype: typeof half | "f32"): Program => compile(loaded.graph, cudaProgramOptions("sm_90", { weightDtype })).program;
      const weights = deviceWeightBytes(program("f32"), loaded.weights) - deviceWeightBytes(program(half), loaded.weights);
      expect(weights).toBeGreaterThan(0);
      // the 16-bit run also holds a 16-bit copy of the GEMM input in its arena
      expect(f32.bytes - both.bytes).toBeGreaterThanOrEqual(kv * 2 + weights - 64 * 1024);
      const diff = (a: Float32Array, b: Float32Array): number => Math.max(...a.map((x, i) => Math.abs(x - b[i]!) / Math.max(1, Math.abs(b[i]!))));
      // two float orderings of the same function; then the rounded cache moves the logits by its format's precision
      expect(diff(f32.logits, reference)).toBeLessThan(5e-5);
      expect(diff(kvOnly.logits, reference)).toBeGreaterThan(1e-7); // the cache really was rounded
      expect(diff(kvOnly.logits, reference)).toBeLessThan(2e-2);
      // rounded matrices move the logits by their format's precision (8 vs 11 significant bits);
      // the goldens bound the error against HF's references
      expect(diff(both.logits, f32.logits)).toBeGreaterThan(1e-6);
      expect(diff(both.logits, f32.logits)).toBeLessThan(half === "bf16" ? 0.15 : 2e-2);
    });
  }
});
