/**
 * The fused-experts and mamba-like custom ops in the compiler: opaque to fusion; the stateful
 * ones (short_conv, linear_attention) split CUDA-graph pieces as attention does, while the pure
 * `moe` op is captured inside a piece; CSE and DCE leave stateful ops alone; the IR's JSON form
 * round-trips them.
 */
import { describe, expect, it } from "vitest";
import { graphFromJson, graphToJson } from "../../compiler/graph_json.ts";
import { checkGraph, checkPlan, checkProgram } from "../../compiler/invariants.ts";
import { isCustomOp, type Graph, type NodeKind } from "../../compiler/ir.ts";
import { commonSubexpressionElimination } from "../../compiler/passes/cse.ts";
import { compile } from "../../compiler/pipeline.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { traceModel, type CausalLM, type ModelInputs, type SequenceStateKind } from "../../models/dsl/causal_lm.ts";
import { ParallelLMHead, VocabParallelEmbedding } from "../../models/dsl/embedding.ts";
import type { LoadReport } from "../../models/dsl/load_weights.ts";
import { Module, SINGLE_DEVICE } from "../../models/dsl/module.ts";
import { CausalShortConv } from "../../models/dsl/short_conv.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { FIXTURES, fixturesWhere } from "../fixtures/index.ts";

/** embed → one short conv → head: attention-free, declaring `declared` */
class TinyConvLM extends Module implements CausalLM {
  readonly vocabSize = 16;
  readonly maxPositions = 64;
  readonly embed = new VocabParallelEmbedding("embed", 16, 8, { parallel: SINGLE_DEVICE, weightStorage: "f32" });
  readonly conv = new CausalShortConv("conv", 8, 3);
  readonly head = new ParallelLMHead("head", 16, 8, { parallel: SINGLE_DEVICE, weightStorage: "f32" });
  constructor(readonly sequenceState: SequenceStateKind) {
    super("");
  }
  forward(inputs: ModelInputs): Tensor {
    return this.head.logits(this.conv.forward(this.embed.forward(inputs.inputIds)).gatherRows(inputs.logitsIndices));
  }
  loadWeights(): LoadReport {
    return { loaded: new Map(), skipped: [] };
  }
}

const count = (g: Graph, kind: NodeKind): number => g.nodes.filter((n) => n.kind === kind).length;

describe("MoE, short conv and lightning attention in the compiler", () => {
  const LAYERS = [
    ["qwen3-moe", undefined, { attention: 2, moe: 2 }],
    ["lfm2", "short_conv", { attention: 2, short_conv: 2 }],
    ["minimax", "linear_attention", { attention: 2, linear_attention: 2, moe: 4 }],
    ["mamba", "selective_scan", { attention: 0, short_conv: 2, selective_scan: 2 }],
    ["mamba2", "ssd_scan", { attention: 0, short_conv: 2, ssd_scan: 2 }],
    ["jamba", "selective_scan", { attention: 2, short_conv: 2, selective_scan: 2, moe: 2 }],
    ["bamba", "ssd_scan", { attention: 2, short_conv: 2, ssd_scan: 2 }],
  ] as const;

  it("the table covers every fixture with state layers or experts", () => {
    expect(LAYERS.map(([name]) => name)).toEqual(fixturesWhere((f) => f.stateLayers || f.moe).map((f) => f.name));
  });

  for (const [name, stateful, layers] of LAYERS) {
    it(`${name}: each custom op is a step of its own; stateful ones split pieces, moe does not`, async () => {
      const { graph } = await loadModel(fixture(name));
      for (const [kind, n] of Object.entries(layers)) expect(count(graph, kind as NodeKind), kind).toBe(n);
      const { plan, program, graph: optimized } = compile(graph, { target: { kind: "cuda", arch: "sm_90" }, dtype: "f32" });
      expect(checkGraph(optimized)).toEqual([]);
      expect(checkPlan(plan)).toEqual([]);
      expect(checkProgram(program)).toEqual([]);
      const custom = program.pieces.filter((p) => p.kind === "custom");
      const splitting = optimized.nodes.filter(isCustomOp).length;
      expect(custom.length).toBe(splitting);
      expect(custom.every((p) => p.end - p.start === 1)).toBe(true);
      // every moe step sits inside a graph piece
      program.steps.forEach((s, i) => {
        if (s.kind !== "moe") return;
        expect(program.pieces.find((p) => p.start <= i && i < p.end)?.kind).toBe("graph");
      });
      expect(program.steps.filter((s) => s.kind === "moe").length).toBe(count(graph, "moe"));
      if (stateful !== undefined) expect(program.steps.filter((s) => s.kind === stateful).length).toBe(count(graph, stateful));
    });
  }

  it("a model's declared sequence state (attention, attention-free, hybrid) must match its graph", () => {
    const graph = traceModel(new TinyConvLM("attention_free"));
    expect(graph.kvLayers).toEqual([]);
    expect(graph.stateLayers).toEqual([{ stateKey: "conv", tensors: [{ name: "conv", shape: [2, 8], dtype: "f32" }] }]);
    expect(() => traceModel(new TinyConvLM("attention"))).toThrow(/declares itself attention but its graph is attention_free/);
    expect(() => traceModel(new TinyConvLM("hybrid"))).toThrow(/declares itself hybrid/);
  });

  it("common-subexpression elimination never merges two stateful layers reading the same value", async () => {
    const { graph } = await loadModel(fixture("lfm2"));
    const conv = graph.nodes.find((n) => n.kind === "short_conv")!;
    // a second conv over the same input and weight, under another state, read by the logits' path
    const twin = { ...conv, id: graph.nodes.length, stateKey: `${conv.kind}:twin` };
    const g: Graph = { ...graph, nodes: [...graph.nodes, twin] };
    expect(count(commonSubexpressionElimination(g), "short_conv")).toBe(3);
  });

  it("graph JSON round-trips every fixture's graph (moe, short_conv, linear_attention and scan nodes among them), and refuses a bad routing rule", async () => {
    for (const f of FIXTURES) {
      const { graph } = await loadModel(f.dir);
      const text = graphToJson(graph);
      expect(graphToJson(graphFromJson(text, "graph.json"))).toBe(text);
    }
    const { graph } = await loadModel(fixture("qwen3-moe"));
    const bad = graphToJson(graph).replace(/"routing":"softmax_topk_renorm"/, '"routing":"sigmoid_topk"');
    expect(() => graphFromJson(bad, "graph.json")).toThrow(/bad field 'routing'/);
  });
});
