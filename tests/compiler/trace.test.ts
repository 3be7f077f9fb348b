/** Tracing: the IR a model produces, and shape errors that name the module. */
import { describe, expect, it } from "vitest";
import { nodeInputs, type Graph } from "../../compiler/ir.ts";
import { GraphBuilder } from "../../compiler/trace.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { RMSNorm } from "../../models/dsl/norm.ts";
import { fixture } from "../fixture_copy.ts";

/** Invariants every graph keeps: node i has id i, inputs come earlier, shapes are set. */
function checkInvariants(g: Graph): void {
  g.nodes.forEach((n, i) => {
    expect(n.id).toBe(i);
    for (const input of nodeInputs(n)) expect(input).toBeLessThan(i);
  });
  expect(g.outputs.logits).toBeLessThan(g.nodes.length);
}

describe("tracing", () => {
  it("traces a Llama checkpoint into a graph over symbolic T and S", async () => {
    const { graph } = await loadModel(fixture("llama"));
    checkInvariants(graph);
    const logits = graph.nodes[graph.outputs.logits]!;
    expect(logits.shape).toEqual(["S", 512]);
    expect(graph.kvLayers.map((l) => l.cacheKey)).toEqual(["model.layers.0.self_attn.attn", "model.layers.1.self_attn.attn"]);
    const count = (kind: string): number => graph.nodes.filter((n) => n.kind === kind).length;
    expect(count("attention")).toBe(2);
    expect(count("linear")).toBe(2 * 4 + 1); // qkv, o, gate_up, down per layer + head
    expect(graph.nodes.find((n) => n.kind === "embedding")?.shape).toEqual(["T", 64]);
  });

  it("puts the module prefix in a shape error", () => {
    const g = new GraphBuilder();
    const ids = g.input("input_ids");
    const norm = new RMSNorm("model.layers.7.input_layernorm", 48, 1e-6);
    const x = g.withScope("model.embed_tokens", () =>
      g.add({ kind: "embedding", table: g.param("w", [10, 64], "f32").id, ids: ids.id, shape: ["T", 64], dtype: "f32" }),
    );
    try {
      norm.forward(x);
      throw new Error("expected a trace error");
    } catch (e) {
      expect(isKilnError(e, "TRACE_SHAPE")).toBe(true);
      expect((e as Error).message).toContain("model.layers.7.input_layernorm");
      expect((e as Error).message).toContain("[T, 64]");
    }
  });

  it("refuses mismatched elementwise shapes", () => {
    const g = new GraphBuilder();
    const a = g.param("a", [4, 8], "f32");
    const b = g.param("b", [4, 6], "f32");
    expect(() => g.withScope("blk", () => a.add(b))).toThrow(/add: shapes \[4, 8\] and \[4, 6\] do not match \(in module 'blk'\)/);
  });
});
