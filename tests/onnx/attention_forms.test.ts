/**
 * Other spellings of attention the pattern accepts, made by editing the tiny Llama export and
 * checked against onnxruntime on the edited file: scale factors on Q and on Kᵀ before the
 * product (as SDPA's decomposition writes √scale on both).
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { floats, op } from "./graph_builder.ts";
import { llamaReference, maxAbsDiff, mutatedModel, TINY_LLAMA } from "./onnx_fixtures.ts";

describe("attention forms", () => {
  it("Q · 2 and Kᵀ · 0.5 before Q · Kᵀ (layer 0), and Kᵀ / 4 (layer 1)", async () => {
    const path = mutatedModel(TINY_LLAMA, (e) => {
      e.initializers.push(floats("q_two", [], [2]), floats("k_half", [], [0.5]), floats("k_four", [], [4]));
      const at = (name: string): number => e.nodes.findIndex((n) => n.name === name);
      const first = e.nodes[at("node_matmul_1")]!;
      first.input = ["q_scaled", "kt_scaled"];
      e.nodes.splice(at("node_matmul_1"), 0, op("Mul", ["add_4", "q_two"], ["q_scaled"]), op("Mul", ["transpose_4", "k_half"], ["kt_scaled"]));
      const second = e.nodes[at("node_matmul_3")]!;
      second.input = ["add_11", "kt_div"];
      e.nodes.splice(at("node_matmul_3"), 0, op("Div", ["transpose_9", "k_four"], ["kt_div"]));
    });
    const ref = llamaReference();
    const session = await ort.InferenceSession.create(path);
    const out = await session.run({ input_ids: new ort.Tensor("int64", BigInt64Array.from(ref.ids.map(BigInt)), [1, 12]) });
    const theirs = out["logits"]!.data as Float32Array;
    // the edit changes the function: the file's own reference no longer applies
    expect(maxAbsDiff(theirs, ref.logits)).toBeGreaterThan(1e-2);
    const { graph, weights, model } = await loadModel(path);
    expect(graph.nodes.filter((n) => n.kind === "attention").map((n) => (n.kind === "attention" ? n.scale : 0))).toEqual([0.125, 0.0625]);
    const runner = ModelRunner.forGraph(graph, weights, model.vocabSize, { numBlocks: 1, blockSize: 16 });
    const ours = runner.execute([{ tokens: ref.ids, numCached: 0, blockTable: [0], allLogits: true }]);
    runner.dispose();
    expect(maxAbsDiff(ours, theirs)).toBeLessThan(1e-4);
  });
});
