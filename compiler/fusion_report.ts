/**
 * How much fusion saved, per decoder layer: kernel launches before (one per computing node of the
 * traced graph) and after (one per step of the plan: fused kernel, GEMM or custom op). A launch
 * belongs to the layer of the last node it computes, read from the node's module scope
 * (`model.layers.3.mlp` → layer 3); launches outside any layer (the LM head) are not counted.
 */
import type { Graph } from "./ir.ts";
import type { FusionPlan } from "./passes/fuse.ts";

export interface LayerKernelCounts {
  /** per layer, in layer order */
  readonly before: readonly number[];
  readonly after: readonly number[];
}

export function layerOfScope(scope: string): number | undefined {
  const m = /(?:^|\.)layers\.(\d+)(?:\.|$)/.exec(scope);
  return m ? Number(m[1]) : undefined;
}

function countPerLayer(graph: Graph, steps: readonly (readonly number[])[]): number[] {
  const counts: number[] = [];
  for (const nodes of steps) {
    const layer = layerOfScope(graph.nodes[Math.max(...nodes)]!.scope);
    if (layer !== undefined) counts[layer] = (counts[layer] ?? 0) + 1;
  }
  return Array.from(counts, (c) => c ?? 0);
}

export function kernelsPerLayer(plan: FusionPlan): LayerKernelCounts {
  const g = plan.graph;
  const unfused = g.nodes.filter((n) => n.kind !== "input" && n.kind !== "param").map((n) => [n.id]);
  const fused = plan.steps.map((s) => (s.kind === "fused" ? s.region.nodes : [s.node]));
  return { before: countPerLayer(g, unfused), after: countPerLayer(g, fused) };
}
