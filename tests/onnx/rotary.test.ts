/**
 * Rotary embedding read back from its tables: cos/sin rows gathered by a `position_ids` input
 * (cos_cached[position_ids]) become one rope node, checked against onnxruntime.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { traceModel } from "../../models/dsl/causal_lm.ts";
import { OnnxCausalLM } from "../../models/onnx/onnx_model.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { floats, ints, op, pseudoRandom, writeGraph } from "./graph_builder.ts";
import { maxAbsDiff } from "./onnx_fixtures.ts";

/** cos and sin of p · base^(-2j/D) for p < P, both halves alike (HF's cos_cached, sin_cached). */
function tables(P: number, D: number, base: number): { cos: Float32Array; sin: Float32Array } {
  const cos = new Float32Array(P * D);
  const sin = new Float32Array(P * D);
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < D; j++) {
      const f = Math.fround(1 / Math.fround(base ** Math.fround((2 * (j % (D / 2))) / D)));
      cos[p * D + j] = Math.cos(Math.fround(p * f));
      sin[p * D + j] = Math.sin(Math.fround(p * f));
    }
  }
  return { cos, sin };
}

describe("rotary from gathered tables", () => {
  it("x · cos[position_ids] + rotate_half(x) · sin[position_ids] → rope", async () => {
    const [T, H, D, P] = [6, 2, 8, 32];
    const { cos, sin } = tables(P, D, 10000);
    const path = writeGraph({
      opset: 18,
      inputs: [{ name: "x", dims: [1, T, H * D] }, { name: "position_ids", dims: [1, T], int: true }],
      outputs: [{ name: "y", dims: [1, T, H * D] }],
      initializers: [
        floats("cos_cached", [P, D], cos),
        floats("sin_cached", [P, D], sin),
        ints("heads", [1, T, H, D]),
        ints("one", [1]),
        ints("h0", [0]),
        ints("h1", [D / 2]),
        ints("h2", [D]),
        ints("last", [-1]),
        ints("flat", [1, T, H * D]),
      ],
      nodes: [
        op("Reshape", ["x", "heads"], ["x4"]),
        op("Transpose", ["x4"], ["q"], { perm: [0, 2, 1, 3] }),
        op("Gather", ["cos_cached", "position_ids"], ["c0"], { axis: 0 }),
        op("Unsqueeze", ["c0", "one"], ["c"]),
        op("Gather", ["sin_cached", "position_ids"], ["s0"], { axis: 0 }),
        op("Unsqueeze", ["s0", "one"], ["s"]),
        op("Slice", ["q", "h0", "h1", "last"], ["lo"]),
        op("Slice", ["q", "h1", "h2", "last"], ["hi"]),
        op("Neg", ["hi"], ["nhi"]),
        op("Concat", ["nhi", "lo"], ["rot"], { axis: -1 }),
        op("Mul", ["q", "c"], ["qc"]),
        op("Mul", ["rot", "s"], ["rs"]),
        op("Add", ["qc", "rs"], ["r"]),
        op("Transpose", ["r"], ["r4"], { perm: [0, 2, 1, 3] }),
        op("Reshape", ["r4", "flat"], ["y"]),
      ],
    });
    const x = pseudoRandom(T * H * D, 11);
    const model = OnnxCausalLM.open(path, { rowInputs: new Map([["x", x]]) });
    const graph = traceModel(model);
    expect(graph.nodes.filter((n) => n.kind === "rope")).toHaveLength(1);
    const weights = new Map([...model.parameters()].map(([n, p]) => [n, p.data!]));
    const runner = ModelRunner.forGraph(graph, weights, model.vocabSize, { numBlocks: 1, blockSize: 16 });
    // one sequence of T tokens: positions 0..T-1
    const ours = runner.execute([{ tokens: Array.from({ length: T }, (_, i) => i), numCached: 0, blockTable: [0], allLogits: true }]);
    runner.dispose();
    const session = await ort.InferenceSession.create(path);
    const positions = BigInt64Array.from({ length: T }, (_, i) => BigInt(i));
    const out = await session.run({ x: new ort.Tensor("float32", x, [1, T, H * D]), position_ids: new ort.Tensor("int64", positions, [1, T]) });
    expect(maxAbsDiff(ours, out["y"]!.data as Float32Array)).toBeLessThan(1e-5);
  });
});
