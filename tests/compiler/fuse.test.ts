/** Fusion: what ends up in one kernel, and how many kernels a decoder layer launches. */
import { describe, expect, it } from "vitest";
import type { Graph, Node } from "../../compiler/ir.ts";
import { checkPlan } from "../../compiler/invariants.ts";
import { fuse, type FusionPlan, type PlanStep } from "../../compiler/passes/fuse.ts";
import { partition } from "../../compiler/passes/partition.ts";
import { compile, optimizeGraph } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";

function layerOf(n: Node): number | undefined {
  const m = /(?:^|\.)layers\.(\d+)(?:\.|$)/.exec(n.scope);
  return m ? Number(m[1]) : undefined;
}

/** Kernels per decoder layer; a step belongs to the layer of the last node it computes. */
function perLayer(graph: Graph, steps: readonly (readonly number[])[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const nodes of steps) {
    const layer = layerOf(graph.nodes[Math.max(...nodes)]!);
    if (layer !== undefined) counts.set(layer, (counts.get(layer) ?? 0) + 1);
  }
  return counts;
}

const unfusedSteps = (g: Graph): number[][] => g.nodes.filter((n) => n.kind !== "input" && n.kind !== "param").map((n) => [n.id]);
const planSteps = (p: FusionPlan): number[][] => p.steps.map((s) => (s.kind === "fused" ? [...s.region.nodes] : [s.node]));

function stepName(plan: FusionPlan, s: PlanStep): string {
  if (s.kind !== "fused") return s.kind === "gemm" ? "gemm" : plan.graph.nodes[s.node]!.kind;
  const ops: string[] = [];
  for (const id of s.region.nodes) {
    const n = plan.graph.nodes[id]!;
    const op = n.kind === "unary" || n.kind === "binary" ? n.op : n.kind;
    if (op !== "slice" && !ops.includes(op)) ops.push(op);
  }
  if (s.region.kvWrites.length > 0) ops.push("kv_write");
  return ops.join("+");
}

describe("fusion", () => {
  it("fuses a llama decoder layer from 18 kernels into 9", async () => {
    const { graph } = await loadModel(fixture("llama"));
    const optimized = optimizeGraph(graph);
    const plan = fuse(optimized);
    expect(checkPlan(plan)).toEqual([]);
    const before = perLayer(optimized, unfusedSteps(optimized));
    const after = perLayer(optimized, planSteps(plan));
    expect([...before.values()]).toEqual([18, 18]);
    expect([...after.values()]).toEqual([9, 9]);
    const names = plan.steps.map((s) => stepName(plan, s));
    expect(names).toEqual([
      ...["embedding+rms_norm", "gemm", "rope+kv_write", "attention", "gemm", "add+rms_norm", "gemm", "silu+mul", "gemm"],
      ...["add+rms_norm", "gemm", "rope+kv_write", "attention", "gemm", "add+rms_norm", "gemm", "silu+mul", "gemm"],
      ...["add+gather_rows+rms_norm", "gemm"],
    ]);
  });

  it("fuses qwen3's per-head q/k norms into the rotary + KV-write kernel (20 → 9 per layer)", async () => {
    const { graph } = await loadModel(fixture("qwen3"));
    const optimized = optimizeGraph(graph);
    const plan = fuse(optimized);
    expect([...perLayer(optimized, unfusedSteps(optimized)).values()]).toEqual([20, 20]);
    expect([...perLayer(optimized, planSteps(plan)).values()]).toEqual([9, 9]);
    expect(plan.steps.map((s) => stepName(plan, s))).toContain("rms_norm+rope+kv_write");
  });

  it("emits each distinct kernel once for the whole model", async () => {
    const { graph } = await loadModel(fixture("llama"));
    const { program } = compile(graph, { target: { kind: "cpu" }, dtype: "f32" });
    expect(program.kernels.map((k) => k.name)).toEqual([
      "embedding_rms_norm_f32",
      "rope_kv_write_f32",
      "add_rms_norm_f32",
      "silu_mul_f32",
      "add_gather_rows_rms_norm_f32",
    ]);
  });

  it("splits the steps into CUDA-graph pieces at attention", async () => {
    const { graph } = await loadModel(fixture("llama"));
    const plan = fuse(optimizeGraph(graph));
    const pieces = partition(plan.steps);
    expect(pieces.map((p) => p.kind)).toEqual(["graph", "custom", "graph", "custom", "graph"]);
    expect(pieces.map((p) => [p.start, p.end])).toEqual([[0, 3], [3, 4], [4, 12], [12, 13], [13, 20]]);
  });

  function plan(f: (x: Tensor, g: GraphBuilder) => Tensor): FusionPlan {
    const g = new GraphBuilder();
    const table = g.param("table", [16, 8], "f32");
    const x = g.add({ kind: "embedding", table: table.id, ids: g.input("input_ids").id, shape: ["T", 8], dtype: "f32" });
    const p = fuse(g.finish(f(x, g)));
    expect(checkPlan(p)).toEqual([]);
    return p;
  }
  const linear = (g: GraphBuilder, x: Tensor, name: string, n: number): Tensor =>
    g.add({ kind: "linear", x: x.id, weight: g.param(name, [n, x.cols], "f32").id, bias: undefined, shape: [x.shape[0]!, n], dtype: "f32" });

  it("fuses logit soft-capping (scale, tanh, scale) after the LM head into one kernel", () => {
    const p = plan((x, g) => linear(g, x.gatherRows(g.input("logits_indices")), "head", 32).softcap(30));
    expect(p.steps.map((s) => stepName(p, s))).toEqual(["embedding+gather_rows", "gemm", "scale+tanh"]);
  });

  it("does not pull a producer into a kernel that runs after a GEMM reading it (no cycles)", () => {
    // a = silu(x); b = linear(a); c = a * b: `a` cannot join c's kernel, which waits for b
    const p = plan((x, g) => {
      const a = x.silu();
      return a.mul(linear(g, a, "w", 8)).gatherRows(g.input("logits_indices"));
    });
    expect(p.steps.map((s) => stepName(p, s))).toEqual(["embedding+silu", "gemm", "mul+gather_rows"]);
    const first = p.steps[0]!;
    expect(first.kind === "fused" && first.region.outputs.length).toBe(1); // silu(x) is stored
  });

  it("computes an op feeding only a gather at the gathered rows, inside the gather's kernel", () => {
    const p = plan((x, g) => x.silu().mul(x).gatherRows(g.input("logits_indices")));
    expect(p.steps).toHaveLength(1);
    const s = p.steps[0]!;
    expect(s.kind === "fused" && s.region.rows).toBe("S");
    expect(s.kind === "fused" && s.region.outputs).toEqual([p.graph.outputs.logits]);
  });
});
