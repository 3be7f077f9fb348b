/**
 * Importer op rules on small graphs written here, each checked against onnxruntime on the same
 * file and input (the float input is bound to rows the token ids pick).
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { traceModel } from "../../models/dsl/causal_lm.ts";
import { OnnxCausalLM } from "../../models/onnx/onnx_model.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { floats, ints, op, pseudoRandom, writeGraph, type GraphSpec } from "./graph_builder.ts";
import { maxAbsDiff } from "./onnx_fixtures.ts";

/** Runs `spec` (input x [1, T, F], output y [1, T, N]) through kiln and onnxruntime. */
async function bothWays(spec: GraphSpec, T: number, F: number): Promise<{ ours: Float32Array; theirs: Float32Array; kinds: string[] }> {
  const path = writeGraph(spec);
  const x = pseudoRandom(T * F, 7);
  const model = OnnxCausalLM.open(path, { rowInputs: new Map([["x", x]]) });
  const graph = traceModel(model);
  const weights = new Map([...model.parameters()].map(([n, p]) => [n, p.data!]));
  const runner = ModelRunner.forGraph(graph, weights, model.vocabSize, { numBlocks: 1, blockSize: 16 });
  const ours = runner.execute([{ tokens: Array.from({ length: T }, (_, i) => i), numCached: 0, blockTable: [0], allLogits: true }]);
  runner.dispose();
  const session = await ort.InferenceSession.create(path);
  const out = await session.run({ x: new ort.Tensor("float32", x, [1, T, F]) });
  return { ours, theirs: out["y"]!.data as Float32Array, kinds: graph.nodes.map((n) => n.kind) };
}

describe("ONNX op rules against onnxruntime", () => {
  it("Gemm (transB, alpha, beta), Split, Sigmoid, Tanh, feature Reshapes, Slice, Sub/Div by constants, Relu, LayerNormalization", async () => {
    const [T, F] = [4, 8];
    const spec: GraphSpec = {
      opset: 17,
      inputs: [{ name: "x", dims: [1, T, F] }],
      outputs: [{ name: "y", dims: [1, T, 6] }],
      initializers: [
        ints("to2d", [T, F]),
        floats("W", [12, F], pseudoRandom(12 * F, 1)),
        floats("C", [12], pseudoRandom(12, 2)),
        ints("split", [4, 8]),
        ints("to3d", [T, 2, 4]),
        ints("back", [T, 8]),
        ints("s0", [0]),
        ints("s1", [4]),
        ints("ax", [1]),
        floats("c1", [4], pseudoRandom(4, 3)),
        floats("two", [], [2]),
        floats("W2", [4, 6], pseudoRandom(24, 4)),
        floats("ln_w", [6], pseudoRandom(6, 5)),
        floats("ln_b", [6], pseudoRandom(6, 6)),
        ints("ax0", [0]),
      ],
      nodes: [
        op("Reshape", ["x", "to2d"], ["r0"]),
        op("Gemm", ["r0", "W", "C"], ["g"], { transB: 1, alpha: { f: 0.5 }, beta: { f: 2 } }),
        op("Split", ["g", "split"], ["a", "b"], { axis: 1 }),
        op("Sigmoid", ["a"], ["sa"]),
        op("Tanh", ["b"], ["tb"]),
        op("Reshape", ["tb", "to3d"], ["tb3"]),
        op("Reshape", ["tb3", "back"], ["tb2"]),
        op("Slice", ["tb2", "s0", "s1", "ax"], ["ts"]),
        op("Mul", ["sa", "ts"], ["m"]),
        op("Sub", ["m", "c1"], ["s"]),
        op("Div", ["s", "two"], ["d"]),
        op("Relu", ["d"], ["r"]),
        op("MatMul", ["r", "W2"], ["o"]),
        op("LayerNormalization", ["o", "ln_w", "ln_b"], ["n"], { axis: -1, epsilon: { f: 1e-5 } }),
        op("Unsqueeze", ["n", "ax0"], ["y"]),
      ],
    };
    const { ours, theirs, kinds } = await bothWays(spec, T, F);
    expect(kinds.filter((k) => k === "linear")).toHaveLength(2);
    expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-5);
  });

  it("shape arithmetic on a static activation (Shape, Gather, Concat, Range, Less, Where) folds at import", async () => {
    const [T, F] = [5, 8];
    const spec: GraphSpec = {
      opset: 18,
      inputs: [{ name: "x", dims: [1, T, F] }],
      outputs: [{ name: "y", dims: [1, T, F] }],
      initializers: [ints("lead", [0, 1]), ints("heads", [2, 4]), ints("flat", [-1]), ints("r0", [0], []), ints("r1", [F], []), ints("r2", [1], []), ints("half", [4], []), floats("pos", [], [1]), floats("neg", [], [-1])],
      nodes: [
        op("Shape", ["x"], ["shape"]),
        op("Gather", ["shape", "lead"], ["bs"], { axis: 0 }),
        op("Concat", ["bs", "heads"], ["to4d"], { axis: 0 }),
        op("Reshape", ["x", "to4d"], ["x4"]),
        op("Concat", ["bs", "flat"], ["to3d"], { axis: 0 }),
        op("Reshape", ["x4", "to3d"], ["x3"]),
        op("Range", ["r0", "r1", "r2"], ["idx"]),
        op("Less", ["idx", "half"], ["lo"]),
        op("Where", ["lo", "pos", "neg"], ["sign"]),
        op("Mul", ["x3", "sign"], ["y"]),
      ],
    };
    const { ours, theirs } = await bothWays(spec, T, F);
    expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-6);
  });

  it("decomposed LayerNorm ((x − mean) / sqrt(var + eps) · w + b) and RMSNorm (x · 1/sqrt(mean(x²) + eps) · w) map to one norm node each", async () => {
    const [T, F] = [3, 8];
    const spec: GraphSpec = {
      opset: 17,
      inputs: [{ name: "x", dims: [1, T, F] }],
      outputs: [{ name: "y", dims: [1, T, F] }],
      initializers: [floats("two", [], [2]), floats("eps", [], [1e-5]), floats("w", [F], pseudoRandom(F, 8)), floats("b", [F], pseudoRandom(F, 9)), floats("w2", [F], pseudoRandom(F, 10))],
      nodes: [
        op("ReduceMean", ["x"], ["mean"], { axes: [-1] }),
        op("Sub", ["x", "mean"], ["d"]),
        op("Pow", ["d", "two"], ["d2"]),
        op("ReduceMean", ["d2"], ["var"], { axes: [-1] }),
        op("Add", ["var", "eps"], ["ve"]),
        op("Sqrt", ["ve"], ["sd"]),
        op("Div", ["d", "sd"], ["n"]),
        op("Mul", ["n", "w"], ["nw"]),
        op("Add", ["nw", "b"], ["ln"]),
        op("Mul", ["ln", "ln"], ["sq"]),
        op("ReduceMean", ["sq"], ["ms"], { axes: [-1] }),
        op("Add", ["eps", "ms"], ["mse"]),
        op("Sqrt", ["mse"], ["rms"]),
        op("Reciprocal", ["rms"], ["inv"]),
        op("Mul", ["ln", "inv"], ["normed"]),
        op("Mul", ["w2", "normed"], ["y"]),
      ],
    };
    const { ours, theirs, kinds } = await bothWays(spec, T, F);
    expect(kinds.filter((k) => k === "layer_norm")).toHaveLength(1);
    expect(kinds.filter((k) => k === "rms_norm")).toHaveLength(1);
    expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-5);
  });
});
