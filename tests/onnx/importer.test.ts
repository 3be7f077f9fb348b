/**
 * The ONNX importer against references no one here wrote: the fixtures' recorded outputs (from
 * PyTorch at export time) and onnxruntime on the same inputs, through the normal
 * trace → compile() → CPU executor path.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { traceModel } from "../../models/dsl/causal_lm.ts";
import { OnnxCausalLM } from "../../models/onnx/onnx_model.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { llamaReference, maxAbsDiff, MLP_BLOCK, mlpReference, TINY_LLAMA } from "./onnx_fixtures.ts";

function weightsOf(m: OnnxCausalLM): Map<string, WeightData> {
  return new Map([...m.parameters()].map(([n, p]) => [n, p.data!]));
}

describe("mlp_block.onnx (LayerNorm, Linear, erf GELU, residual; dynamic batch and seq)", () => {
  const ref = mlpReference();
  // the block's float input x [3, 5, 64] is bound to a table whose rows the token ids pick
  const model = OnnxCausalLM.open(MLP_BLOCK, { rowInputs: new Map([["x", ref.x]]) });
  const graph = traceModel(model);

  it("maps the decomposed GELU to one gelu and the MatMuls to linears", () => {
    const kinds = graph.nodes.map((n) => n.kind);
    expect(kinds.filter((k) => k === "linear")).toHaveLength(2);
    expect(kinds.filter((k) => k === "layer_norm")).toHaveLength(1);
    expect(graph.nodes.filter((n) => n.kind === "unary" && n.op === "gelu")).toHaveLength(1);
  });

  it("computes the reference output and onnxruntime's on the same input", async () => {
    const runner = ModelRunner.forGraph(graph, weightsOf(model), model.vocabSize, { numBlocks: 2, blockSize: 16 });
    const T = 15;
    const ours = runner.execute([{ tokens: Array.from({ length: T }, (_, i) => i), numCached: 0, blockTable: [0, 1], allLogits: true }]);
    runner.dispose();
    expect(maxAbsDiff(ours, ref.y)).toBeLessThan(1e-5);
    const session = await ort.InferenceSession.create(MLP_BLOCK);
    const out = await session.run({ x: new ort.Tensor("float32", ref.x, [3, 5, 64]) });
    expect(maxAbsDiff(ours, out["y"]!.data as Float32Array)).toBeLessThan(1e-5);
  });
});

describe("tiny_llama.onnx (torch dynamo export, opset 18)", () => {
  const ref = llamaReference();

  it("replaces attention and rotary by kiln's paged attention and rope ops", async () => {
    const { graph, arch } = await loadModel(TINY_LLAMA);
    expect(arch).toBe("OnnxModel");
    const count = (k: string): number => graph.nodes.filter((n) => n.kind === k).length;
    expect(graph.kvLayers.map((l) => [l.numKvHeads, l.headDim])).toEqual([[2, 16], [2, 16]]);
    expect(count("attention")).toBe(2);
    expect(count("rope")).toBe(4);
    expect(count("rms_norm")).toBe(5);
    // q, k, v, o, gate, up, down per layer, and the head
    expect(count("linear")).toBe(15);
    const rope = graph.nodes.find((n) => n.kind === "rope");
    // read back from the exported cos/sin tables: 10000^(-2j/16)
    if (rope?.kind === "rope") rope.invFreq.forEach((f, j) => expect(f).toBeCloseTo(10000 ** (-(2 * j) / 16), 6));
  });

  it("prefill logits match the reference and onnxruntime; decode steps through the KV cache match too", async () => {
    const { graph, weights, model } = await loadModel(TINY_LLAMA);
    const V = model.vocabSize;
    const runner = ModelRunner.forGraph(graph, weights, V, { numBlocks: 2, blockSize: 16 });
    const table = [0, 1];
    const prefill = runner.execute([{ tokens: ref.ids, numCached: 0, blockTable: table, allLogits: true }]);
    expect(maxAbsDiff(prefill, ref.logits)).toBeLessThan(1e-4);
    const session = await ort.InferenceSession.create(TINY_LLAMA);
    const out = await session.run({ input_ids: new ort.Tensor("int64", BigInt64Array.from(ref.ids.map(BigInt)), [1, 12]) });
    expect(maxAbsDiff(prefill, out["logits"]!.data as Float32Array)).toBeLessThan(1e-4);
    // a fresh cache: 4 tokens of prompt, then one token per step (positions the tables never saw past 12 are covered by the frequencies)
    runner.execute([{ tokens: ref.ids.slice(0, 4), numCached: 0, blockTable: table }]);
    for (let p = 4; p < ref.ids.length; p++) {
      const row = runner.execute([{ tokens: [ref.ids[p]!], numCached: p, blockTable: table }]);
      expect(maxAbsDiff(row, ref.logits.subarray(p * V, (p + 1) * V))).toBeLessThan(1e-4);
    }
    runner.dispose();
  });

  it("passes `kiln golden`'s checks on the CPU", async () => {
    const { results, summary } = await runGolden(TINY_LLAMA, { tolerance: 1e-4 });
    expect(summary.ok).toBe(true);
    expect(summary.greedy_token_match).toBe("6/6");
    expect(results[0]!.prefill_max_abs_err).toBeLessThan(1e-4);
  });
});
