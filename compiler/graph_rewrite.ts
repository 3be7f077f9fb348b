/**
 * The one way passes rebuild a graph: a single sweep in topological order that keeps, replaces
 * or drops each node, renumbering so that node i has id i again. Passes stay pure: the input
 * graph is never mutated.
 */
import { assertNever, type Graph, type Node, type ValueId } from "./ir.ts";

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

/** The node with every value id it reads passed through `f`. */
export function mapInputs(n: Node, f: (id: ValueId) => ValueId): Node {
  switch (n.kind) {
    case "input":
    case "param":
      return n;
    case "embedding":
      return { ...n, table: f(n.table), ids: f(n.ids) };
    case "linear":
      return { ...n, x: f(n.x), weight: f(n.weight), bias: n.bias === undefined ? undefined : f(n.bias) };
    case "rms_norm":
      return { ...n, x: f(n.x), weight: f(n.weight) };
    case "layer_norm":
      return { ...n, x: f(n.x), weight: f(n.weight), bias: n.bias === undefined ? undefined : f(n.bias) };
    case "binary":
      return { ...n, a: f(n.a), b: f(n.b) };
    case "unary":
    case "scale":
    case "slice":
      return { ...n, x: f(n.x) };
    case "gather_rows":
      return { ...n, x: f(n.x), indices: f(n.indices) };
    case "rope":
      return { ...n, x: f(n.x), positions: f(n.positions) };
    case "attention":
      return { ...n, q: f(n.q), k: f(n.k), v: f(n.v) };
    case "moe":
      return { ...n, x: f(n.x), router: f(n.router), w13: f(n.w13), w2: f(n.w2) };
    case "short_conv":
      return { ...n, x: f(n.x), weight: f(n.weight), bias: n.bias === undefined ? undefined : f(n.bias) };
    case "linear_attention":
      return { ...n, qkv: f(n.qkv) };
    case "selective_scan":
      return { ...n, u: f(n.u), delta: f(n.delta), aLog: f(n.aLog), b: f(n.b), c: f(n.c), d: f(n.d), z: f(n.z) };
    case "ssd_scan":
      return { ...n, x: f(n.x), dt: f(n.dt), dtBias: f(n.dtBias), aLog: f(n.aLog), b: f(n.b), c: f(n.c), d: f(n.d) };
    default:
      return assertNever(n, "node kind");
  }
}

/** For each value, the ids of the nodes that read it (in order, repeated if read twice). */
export function consumers(graph: Graph): ValueId[][] {
  const users: ValueId[][] = graph.nodes.map(() => []);
  for (const n of graph.nodes) {
    for (const i of nodeInputsOf(n)) users[i]?.push(n.id);
  }
  return users;
}

function nodeInputsOf(n: Node): ValueId[] {
  const ids: ValueId[] = [];
  mapInputs(n, (id) => {
    ids.push(id);
    return id;
  });
  return ids;
}
