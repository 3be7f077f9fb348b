/**
 * Pass: common-subexpression elimination. Two nodes of the same kind with the same attributes
 * reading the same values compute the same thing; the later one is replaced by the earlier.
 * Custom ops are never merged: each attention writes its own KV cache.
 */
import { isCustomOp, type Graph, type Node } from "../ir.ts";
import { rewriteGraph } from "../graph_rewrite.ts";

/** Everything that defines a node's value: its fields without id and scope. */
function valueKey(n: Node): string {
  const { id: _id, scope: _scope, ...rest } = n;
  return JSON.stringify(rest);
}

export function commonSubexpressionElimination(graph: Graph): Graph {
  const seen = new Map<string, number>();
  let merged = 0;
  const out = rewriteGraph(graph, (n, built) => {
    if (isCustomOp(n)) return n;
    const key = valueKey(n);
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      merged++;
      return { replaceWith: earlier };
    }
    seen.set(key, built.size); // the id the kept node is about to get
    return n;
  });
  return merged === 0 ? graph : out;
}
