/**
 * The one way passes rebuild a graph: a single sweep in topological order that keeps, replaces
 * or drops each node, renumbering so that node i has id i again. Passes stay pure: the input
 * graph is never mutated.
 */
import type { Graph, Node, ValueId } from "./ir.ts";
import { mapInputs, nodeInputs } from "./ops.ts";

/** The graph being built, as a visitor sees it. */
export interface RewriteOutput {
  /** a node already in the new graph */
  node(id: ValueId): Node;
  /** how many nodes the new graph holds so far: the id the next kept node gets */
  readonly size: number;
}

/**
 * What a visitor returns for a node whose inputs already point into the new graph:
 * the node to keep (its id is reassigned), the new-graph id of a value that replaces it, or
 * `drop` for a node no kept node reads.
 */
export type Rewrite = Node | { readonly replaceWith: ValueId } | "drop";

/**
 * `visit(n, out, old)`: n is `old` with its inputs remapped into the new graph. Nodes that fail
 * `keep` are dropped before their inputs are looked at (dead code may read other dead code).
 */
export function rewriteGraph(
  graph: Graph,
  visit: (n: Node, out: RewriteOutput, old: Node) => Rewrite,
  keep: (old: Node) => boolean = () => true,
): Graph {
  const nodes: Node[] = [];
  const map = new Map<ValueId, ValueId>();
  const out: RewriteOutput = {
    node(id) {
      const n = nodes[id];
      if (!n) throw new Error(`rewrite: no node ${id} in the new graph`);
      return n;
    },
    get size() {
      return nodes.length;
    },
  };
  const remap = (id: ValueId): ValueId => {
    const to = map.get(id);
    if (to === undefined) throw new Error(`rewrite: value ${id} is read after it was dropped`);
    return to;
  };
  for (const old of graph.nodes) {
    if (!keep(old)) continue;
    const r = visit(mapInputs(old, remap), out, old);
    if (r === "drop") continue;
    if ("replaceWith" in r) {
      map.set(old.id, r.replaceWith);
      continue;
    }
    const kept = { ...r, id: nodes.length };
    nodes.push(kept);
    map.set(old.id, kept.id);
  }
  return { nodes, outputs: { logits: remap(graph.outputs.logits) }, kvLayers: graph.kvLayers, stateLayers: graph.stateLayers };
}

/** The node with every value id it reads passed through `f` (derived from the op catalogue). */
export { mapInputs };

/** For each value, the ids of the nodes that read it (in order, repeated if read twice). */
export function consumers(graph: Graph): ValueId[][] {
  const users: ValueId[][] = graph.nodes.map(() => []);
  for (const n of graph.nodes) {
    for (const i of nodeInputs(n)) users[i]?.push(n.id);
  }
  return users;
}
