/**
 * Pass: dead-code elimination. A node lives when the logits depend on it or when it has a side
 * effect: custom ops write state (attention writes its layer's KV cache), so they always stay,
 * with everything they read.
 */
import { isCustomOp, nodeInputs, type Graph } from "../ir.ts";
import { rewriteGraph } from "../graph_rewrite.ts";

export function deadCodeElimination(graph: Graph): Graph {
  const live = new Set<number>([graph.outputs.logits]);
  for (const n of graph.nodes) if (isCustomOp(n)) live.add(n.id);
  // inputs always come before their readers, so one backward sweep settles liveness
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i]!;
    if (live.has(n.id)) for (const id of nodeInputs(n)) live.add(id);
  }
  if (live.size === graph.nodes.length) return graph;
  return rewriteGraph(graph, (n) => n, (old) => live.has(old.id));
}
