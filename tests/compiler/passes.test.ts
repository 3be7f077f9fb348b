/** Graph passes: each does its one rewrite, and every pass leaves every fixture's graph well formed. */
import { describe, expect, it } from "vitest";
import { assertGraph, checkGraph, checkPlan, checkProgram } from "../../compiler/invariants.ts";
import type { Graph } from "../../compiler/ir.ts";
import { commonSubexpressionElimination } from "../../compiler/passes/cse.ts";
import { constantFolding } from "../../compiler/passes/const_fold.ts";
import { deadCodeElimination } from "../../compiler/passes/dce.ts";
import { fuse } from "../../compiler/passes/fuse.ts";
import { compile, optimizeGraph } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { FIXTURES } from "../fixtures/index.ts";

const MODELS = FIXTURES.map((f) => [f.name, f.dir] as const);

/** A graph whose logits are `f(x)` for a [S, 8] input row picked by logits_indices. */
function graphOf(f: (x: Tensor, g: GraphBuilder) => Tensor): Graph {
  const g = new GraphBuilder();
  const ids = g.input("input_ids");
  const table = g.param("table", [16, 8], "f32");
  const x = g.add({ kind: "embedding", table: table.id, ids: ids.id, shape: ["T", 8], dtype: "f32" });
  return g.finish(f(x, g).gatherRows(g.input("logits_indices")));
}

const kinds = (g: Graph): string[] => g.nodes.map((n) => (n.kind === "unary" || n.kind === "binary" ? n.op : n.kind));

describe("graph passes", () => {
  it("dead-code elimination drops what the logits do not read, and renumbers", () => {
    const g = graphOf((x) => {
      x.silu(); // unused
      x.scale(3).unary("tanh"); // unused chain
      return x.scale(2);
    });
    const out = deadCodeElimination(g);
    expect(kinds(out)).toEqual(["input", "param", "embedding", "scale", "input", "gather_rows"]);
    expect(checkGraph(out)).toEqual([]);
    expect(deadCodeElimination(out)).toBe(out); // nothing left to do: the same graph comes back
  });

  it("dead-code elimination keeps custom ops, which write the KV cache", async () => {
    const { graph } = await loadModel(fixture("llama"));
    const out = deadCodeElimination(graph);
    expect(out.nodes.filter((n) => n.kind === "attention")).toHaveLength(2);
  });

  it("common-subexpression elimination merges equal nodes over equal inputs", () => {
    const g = graphOf((x) => x.silu().add(x.silu()).mul(x.scale(2)).add(x.scale(3)));
    const out = deadCodeElimination(commonSubexpressionElimination(g));
    expect(kinds(out).filter((k) => k === "silu")).toHaveLength(1);
    expect(kinds(out).filter((k) => k === "scale")).toHaveLength(2); // different factors stay apart
    expect(checkGraph(out)).toEqual([]);
  });

  it("constant folding applies only bit-exact identities", () => {
    const g = graphOf((x) =>
      x
        .scale(1) // → x
        .scale(0.5)
        .scale(3) // 0.5 is a power of two: one scale by 1.5
        .unary("neg")
        .unary("neg") // → identity
        .scale(0.1)
        .scale(0.3) // neither is a power of two: kept as two roundings
        .slice(2, 6)
        .slice(1, 4), // → one slice [3, 7)
    );
    const out = deadCodeElimination(constantFolding(g));
    const scales = out.nodes.filter((n) => n.kind === "scale").map((n) => (n.kind === "scale" ? n.factor : 0));
    expect(scales).toEqual([1.5, 0.1, 0.3]);
    expect(kinds(out)).not.toContain("neg");
    const slices = out.nodes.filter((n) => n.kind === "slice");
    expect(slices).toHaveLength(1);
    expect(slices[0]).toMatchObject({ start: 3, size: 4 });
    expect(checkGraph(out)).toEqual([]);
  });

  it("the invariants catch a broken graph", () => {
    const g = graphOf((x) => x.silu());
    const broken: Graph = { ...g, nodes: g.nodes.map((n) => (n.kind === "unary" ? { ...n, x: n.id + 1 } : n)) };
    expect(checkGraph(broken).join("\n")).toMatch(/reads value \d+, which is not an earlier node/);
  });

  it.each(MODELS)("every pass keeps the invariants of %s, and the plan and program are well formed", async (_name, dir) => {
    const { graph } = await loadModel(dir);
    assertGraph(graph, "tracing");
    const optimized = optimizeGraph(graph, (pass, out) => assertGraph(out, pass.name));
    expect(checkPlan(fuse(optimized))).toEqual([]);
    for (const target of [{ kind: "cpu" } as const, { kind: "cuda", arch: "sm_90" } as const]) {
      expect(checkProgram(compile(graph, { target, dtype: "bf16" }).program)).toEqual([]);
    }
  });
});
