/** Packing the CUDA executor's activations by their spans over the plan (runtime/backends/cuda/activation_plan.ts). */
import { describe, expect, it } from "vitest";
import { numel, type Graph, type ValueId } from "../../compiler/ir.ts";
import { ACTIVATION_ALIGN, executorActivations, layoutActivations, planStepUses, type StepUses } from "../../runtime/backends/cuda/activation_plan.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { FIXTURES } from "../fixtures/index.ts";
import { compile } from "../../compiler/pipeline.ts";
import { cudaProgramOptions } from "../../runtime/backends/cuda/executor.ts";

/** Checks the layout's promises for `uses` at sizes T = S = n; returns packed / unshared. */
function checkLayout(graph: Graph, uses: StepUses, n: number): number {
  const sizes = { T: n, S: n };
  const layout = layoutActivations(graph, uses, sizes);
  const span = new Map<ValueId, [number, number]>();
  uses.forEach((ids, step) => ids.forEach((id) => span.set(id, [span.get(id)?.[0] ?? step, step])));
  const logits = span.get(graph.outputs.logits);
  if (logits) logits[1] = uses.length;
  // every touched value has memory, aligned, inside the arena; untouched values have none
  expect([...layout.offsets.keys()].sort((a, b) => a - b)).toEqual([...span.keys()].sort((a, b) => a - b));
  const size = (id: ValueId): number => numel(graph.nodes[id]!.shape, sizes) * 4;
  for (const [id, off] of layout.offsets) {
    expect(off % ACTIVATION_ALIGN).toBe(0);
    expect(off + size(id)).toBeLessThanOrEqual(layout.bytes);
  }
  // values alive at the same step never share a byte
  const ids = [...layout.offsets.keys()];
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const [a, b] = [ids[i]!, ids[j]!];
      const [sa, sb] = [span.get(a)!, span.get(b)!];
      if (sa[0] > sb[1] || sb[0] > sa[1]) continue;
      const [oa, ob] = [layout.offsets.get(a)!, layout.offsets.get(b)!];
      expect(oa + size(a) <= ob || ob + size(b) <= oa, `values ${a} and ${b} overlap in time and memory`).toBe(true);
    }
  }
  // never below what the busiest step holds at once
  let peak = 0;
  for (let step = 0; step <= uses.length; step++) {
    let live = 0;
    for (const [id, [first, last]] of span) if (first <= step && step <= last) live += size(id);
    peak = Math.max(peak, live);
  }
  expect(layout.bytes).toBeGreaterThanOrEqual(peak);
  expect(layout.bytes).toBeLessThanOrEqual(layout.unsharedBytes);
  return layout.bytes / layout.unsharedBytes;
}

describe("activation layout", () => {
  it("a chain reuses memory: a → b → c → d needs two buffers, not four", () => {
    const g = {
      nodes: [
        { id: 0, kind: "input", name: "x", shape: ["T", 64], dtype: "f32" },
        { id: 1, kind: "unary", op: "silu", x: 0, shape: ["T", 64], dtype: "f32" },
        { id: 2, kind: "unary", op: "silu", x: 1, shape: ["T", 64], dtype: "f32" },
        { id: 3, kind: "unary", op: "silu", x: 2, shape: ["T", 64], dtype: "f32" },
        { id: 4, kind: "unary", op: "silu", x: 3, shape: ["T", 64], dtype: "f32" },
      ],
      outputs: { logits: 4 },
    } as unknown as Graph;
    // each node a step of its own
    const steps = [1, 2, 3, 4].map((node) => ({ kind: "node" as const, node }));
    const layout = layoutActivations(g, planStepUses(g, steps), { T: 4, S: 4 });
    expect(layout.unsharedBytes).toBe(4 * 1024);
    expect(layout.bytes).toBe(2 * 1024);
    expect(layout.offsets.get(1)).not.toBe(layout.offsets.get(2));
    expect(layout.offsets.get(3)).toBe(layout.offsets.get(1)); // 1 is dead once 2 is written
  });

  for (const f of FIXTURES) {
    it(`${f.name}: the compiled plan's values pack without overlap, well under one buffer each`, async () => {
      const m = await loadModel(f.dir);
      const compiled = compile(m.graph, cudaProgramOptions("sm_90", {}));
      const { graph, uses } = executorActivations(compiled);
      for (const n of [1, 37, 512]) expect(checkLayout(graph, uses, n)).toBeLessThan(0.5);
    });
  }
});
