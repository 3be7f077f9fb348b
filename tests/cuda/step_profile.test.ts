// CudaExecutor.profileStep on the CPU emulator: every unit of the plan timed once, categorised,
// with the weight bytes of its GEMVs, and the step's logits the same as an unprofiled run's.
import { expect, it } from "vitest";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { deviceWeightBytes } from "../../runtime/backends/cuda/memory_budget.ts";
import { profileByCategory } from "../../runtime/backends/cuda/step_profile.ts";
import { packStep } from "../../runtime/backends/kv_cache.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { emulatedSuite } from "./emulated_suite.ts";

emulatedSuite("step profile on the emulated CUDA backend", (backend) => {
  it("times every unit of a decode step once and leaves the step's logits as an unprofiled run does", async () => {
    const { graph, weights } = await loadModel(fixture("qwen3"));
    const table = Array.from({ length: 4 }, (_, i) => i);
    const prompt = Array.from({ length: 20 }, (_, i) => 5 + ((i * 31) % 500));
    const ex = CudaExecutor.fromGraph(graph, weights, backend(), { numBlocks: 4, blockSize: 16, weightDtype: "bf16", cudaGraphs: false });
    try {
      ex.run(packStep([{ tokens: prompt, numCached: 0, blockTable: table }], 16));
      const step = packStep([{ tokens: [7], numCached: 20, blockTable: table }], 16);
      const plain = ex.run(step);
      const p = ex.profileStep(step, 1);
      const plan = ex.planSummary;
      expect(p.units.length).toBe(plan.fusedKernels + plan.nodes);
      expect(p.units.every((u) => u.ms >= 0)).toBe(true);
      const cats = new Map(profileByCategory(p.units).map((c) => [c.category, c]));
      expect(cats.get("fused")?.count).toBe(plan.fusedKernels);
      const linears = ex.graph.nodes.filter((n) => n.kind === "linear").length;
      expect(cats.get("gemv")?.count).toBe(linears); // one row: every linear is a GEMV
      expect(cats.has("gemm")).toBe(false);
      expect(cats.get("attention")?.count).toBe(ex.graph.kvLayers.length);
      // the GEMVs read every bf16 matrix but the embedding table (the LM head is tied here or not)
      const gemvBytes = cats.get("gemv")!.weightBytes;
      expect(gemvBytes).toBeGreaterThan(0);
      expect(gemvBytes).toBeLessThanOrEqual(deviceWeightBytes(ex.program, weights));
      expect(Array.from(ex.run(step))).toEqual(Array.from(plain));
    } finally {
      ex.dispose();
    }
  });
});
