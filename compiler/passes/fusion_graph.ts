/**
 * The graph as fusion sees it: IR nodes plus one virtual "KV write" vertex per attention node.
 *
 * Attention stores its step's k and v into the paged cache before attending. Splitting that store
 * out of the custom op, as a vertex that reads k and v and that attention then depends on, lets
 * fusion put it in the kernel that produces k and v (rotary embedding applied with the KV-cache
 * write): k and v never round-trip through memory as separate tensors.
 *
 *   vertex id < graph.nodes.length: the IR node of that id
 *   vertex id = graph.nodes.length + i: the KV write of the i-th attention node
 */
import type { Dim, Graph, Node, NodeOf, ValueId } from "../ir.ts";
import { fusionClass, nodeInputs, type FusionClass } from "../ops.ts";

/**
 * The op catalogue's fusion class of the node (ops.ts: FUSION_CLASS). custom: an opaque op that
 * splits CUDA-graph pieces; opaque: one that does not (MoE)
 */
export type VertexClass = FusionClass;

export interface Vertex {
  readonly id: number;
  readonly cls: VertexClass;
  /** vertices whose values this one reads */
  readonly inputs: readonly number[];
  /** the row space it computes over (T, S, or a concrete count) */
  readonly rows: Dim;
  /** the IR node, or the attention node whose KV write this virtual vertex is */
  readonly node: Node;
  readonly kvWrite: boolean;
}

export class FusionGraph {
  readonly vertices: readonly Vertex[];
  /** a topological order of vertex ids (each KV write right before its attention) */
  readonly order: readonly number[];
  readonly position: readonly number[];
  readonly users: readonly (readonly number[])[];

  constructor(readonly graph: Graph) {
    const N = graph.nodes.length;
    const vertices: Vertex[] = [];
    const kvOf = new Map<ValueId, number>();
    graph.nodes.forEach((n) => {
      if (n.kind === "attention") kvOf.set(n.id, N + kvOf.size);
    });
    for (const n of graph.nodes) {
      const inputs = n.kind === "attention" ? [n.q, kvOf.get(n.id)!] : nodeInputs(n);
      vertices.push({ id: n.id, cls: fusionClass(n), inputs, rows: rowsOf(n), node: n, kvWrite: false });
    }
    for (const [att, id] of kvOf) {
      const a = graph.nodes[att] as NodeOf<"attention">;
      vertices[id] = { id, cls: "fusible", inputs: [a.k, a.v], rows: rowsOf(graph.nodes[a.k]!), node: a, kvWrite: true };
    }
    const order: number[] = [];
    for (const n of graph.nodes) {
      const kv = kvOf.get(n.id);
      if (kv !== undefined) order.push(kv);
      order.push(n.id);
    }
    const position: number[] = new Array<number>(vertices.length);
    order.forEach((v, i) => (position[v] = i));
    const users: number[][] = vertices.map(() => []);
    for (const v of vertices) for (const i of v.inputs) users[i]!.push(v.id);
    this.vertices = vertices;
    this.order = order;
    this.position = position;
    this.users = users;
  }

  vertex(id: number): Vertex {
    const v = this.vertices[id];
    if (!v) throw new Error(`no fusion vertex ${id}`);
    return v;
  }

  /** whether the value leaves the graph (the logits) */
  isGraphOutput(id: number): boolean {
    return id === this.graph.outputs.logits;
  }
}

/** [R, C] values run over R rows; a 1-D [C] value is one row. */
function rowsOf(n: Node): Dim {
  return n.shape.length >= 2 ? n.shape[0]! : 1;
}
