/**
 * Tracing: the DSL's Tensor records ops into a Graph. Shapes and dtypes are checked as each op is
 * built; a mismatch throws a TRACE_SHAPE error naming the module prefix where it happened.
 */
import { KilnError } from "../runtime/engine/errors.ts";
import {
  formatShape,
  type BinaryOp,
  type Dim,
  type DType,
  type Graph,
  type InputName,
  type KvLayerSpec,
  type Node,
  type StateLayerSpec,
  type NodeOf,
  type Shape,
  type StorageDType,
  type UnaryOp,
  type ValueId,
} from "./ir.ts";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type NodeSpec = DistributiveOmit<Node, "id" | "scope">;

export class GraphBuilder {
  private readonly nodes: Node[] = [];
  private readonly scopes: string[] = [];
  private readonly params = new Map<string, Tensor>();
  private readonly kvLayers: KvLayerSpec[] = [];
  private readonly stateLayers: StateLayerSpec[] = [];

  get scope(): string {
    return this.scopes[this.scopes.length - 1] ?? "";
  }

  /** Runs `fn` with `prefix` as the scope recorded on every node it builds. */
  withScope<R>(prefix: string, fn: () => R): R {
    this.scopes.push(prefix);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  fail(message: string): never {
    const where = this.scope === "" ? "" : ` (in module '${this.scope}')`;
    throw new KilnError("TRACE_SHAPE", `${message}${where}`);
  }

  add(spec: NodeSpec): Tensor {
    const node = { ...spec, id: this.nodes.length, scope: this.scope } as Node;
    this.nodes.push(node);
    return new Tensor(this, node.id, node.shape, node.dtype);
  }

  input(name: InputName): Tensor {
    const shape: Shape = name === "logits_indices" ? ["S"] : ["T"];
    return this.add({ kind: "input", name, shape, dtype: "i32" });
  }

  /** One param node per parameter name, however often the parameter is used. */
  param(name: string, shape: readonly number[], storage: StorageDType): Tensor {
    const seen = this.params.get(name);
    if (seen) return seen;
    const t = this.add({ kind: "param", name, shape, dtype: "f32", storage });
    this.params.set(name, t);
    return t;
  }

  registerKvLayer(spec: KvLayerSpec): void {
    if (this.kvLayers.some((l) => l.cacheKey === spec.cacheKey)) {
      this.fail(`attention cache '${spec.cacheKey}' is used twice`);
    }
    this.kvLayers.push(spec);
  }

  /** Declares a mamba-like layer's per-sequence state (once per layer, at trace time). */
  registerStateLayer(spec: StateLayerSpec): void {
    if (this.stateLayers.some((l) => l.stateKey === spec.stateKey)) this.fail(`state '${spec.stateKey}' is used twice`);
    this.stateLayers.push(spec);
  }

  node(id: ValueId): Node {
    const n = this.nodes[id];
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  finish(logits: Tensor): Graph {
    if (logits.graph !== this) throw new Error("logits tensor belongs to another graph");
    return { nodes: [...this.nodes], outputs: { logits: logits.id }, kvLayers: [...this.kvLayers], stateLayers: [...this.stateLayers] };
  }
}

function sameDim(a: Dim | undefined, b: Dim | undefined): boolean {
  return a === b;
}

export class Tensor {
  constructor(
    readonly graph: GraphBuilder,
    readonly id: ValueId,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  /** Size of the last axis, which is always concrete. */
  get cols(): number {
    const d = this.shape[this.shape.length - 1];
    if (typeof d !== "number") return this.graph.fail(`last axis of ${formatShape(this.shape)} is symbolic`);
    return d;
  }

  expect(shape: Shape, what: string): this {
    const ok = shape.length === this.shape.length && shape.every((d, i) => sameDim(d, this.shape[i]));
    if (!ok) this.graph.fail(`${what}: expected shape ${formatShape(shape)}, got ${formatShape(this.shape)}`);
    return this;
  }

  expectF32(what: string): this {
    if (this.dtype !== "f32") this.graph.fail(`${what}: expected f32, got ${this.dtype}`);
    return this;
  }

  private binary(op: BinaryOp, other: Tensor): Tensor {
    this.expectF32(op);
    other.expectF32(op);
    const same = other.shape.length === this.shape.length && other.shape.every((d, i) => sameDim(d, this.shape[i]));
    const rowBroadcast = other.rank === 1 && this.rank === 2 && other.shape[0] === this.shape[1];
    if (!same && !rowBroadcast) {
      this.graph.fail(`${op}: shapes ${formatShape(this.shape)} and ${formatShape(other.shape)} do not match`);
    }
    return this.graph.add({ kind: "binary", op, a: this.id, b: other.id, shape: this.shape, dtype: "f32" });
  }

  add(other: Tensor): Tensor {
    return this.binary("add", other);
  }

  mul(other: Tensor): Tensor {
    return this.binary("mul", other);
  }

  unary(op: UnaryOp): Tensor {
    this.expectF32(op);
    return this.graph.add({ kind: "unary", op, x: this.id, shape: this.shape, dtype: "f32" });
  }

  silu(): Tensor {
    return this.unary("silu");
  }

  scale(factor: number): Tensor {
    this.expectF32("scale");
    return this.graph.add({ kind: "scale", x: this.id, factor, shape: this.shape, dtype: "f32" });
  }

  /** cap · tanh(x / cap): Gemma-style logit soft-capping, built from primitive ops. */
  softcap(cap: number): Tensor {
    return this.scale(1 / cap).unary("tanh").scale(cap);
  }

  /** Columns [start, start + size) of a [R, N] tensor. */
  slice(start: number, size: number): Tensor {
    this.expectF32("slice");
    if (this.rank !== 2) this.graph.fail(`slice: expected a 2-D tensor, got ${formatShape(this.shape)}`);
    if (start < 0 || size <= 0 || start + size > this.cols) {
      this.graph.fail(`slice [${start}, ${start + size}) is outside ${this.cols} columns`);
    }
    return this.graph.add({ kind: "slice", x: this.id, start, size, shape: [this.shape[0]!, size], dtype: "f32" });
  }

  /** Splits the columns into consecutive pieces of the given sizes. */
  split(sizes: readonly number[]): Tensor[] {
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== this.cols) this.graph.fail(`split sizes ${sizes.join("+")} != ${this.cols} columns`);
    let start = 0;
    return sizes.map((s) => {
      const t = this.slice(start, s);
      start += s;
      return t;
    });
  }

  /** Rows picked by an i32 index vector [S] → [S, N]. */
  gatherRows(indices: Tensor): Tensor {
    this.expectF32("gather_rows");
    if (indices.dtype !== "i32" || indices.rank !== 1) this.graph.fail("gather_rows: indices must be a 1-D i32 tensor");
    return this.graph.add({
      kind: "gather_rows",
      x: this.id,
      indices: indices.id,
      shape: [indices.shape[0]!, this.cols],
      dtype: "f32",
    });
  }
}

export type { NodeOf };
