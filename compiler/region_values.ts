/**
 * Lowering, part one: the value of each member of a fused region as an expression at (row,
 * column), and the kernel parameters, row-local arrays and constant tables those expressions
 * name. Elementwise ops compose; a slice shifts the column; a gather replaces the row by
 * indices[row]; an RMS norm multiplies by the scalar its reduction left in a local array; rotary
 * embedding reads a partner column and a cos/sin table (lower_rope.ts). A value computed once in
 * a loop body is bound to a `let` and reused; one kept in a local array is loaded from it once
 * the array is complete. Scheduling these into loops is lower_region.ts.
 */
import { assertNever, type Graph, type Node, type NodeOf, type ValueId } from "./ir.ts";
import { isFusible } from "./ops.ts";
import type { Region } from "./passes/fuse.ts";
import { iadd, imul, int, intKey, iop, ivar, num, ROW_VAR, type BodyStmt, type ConstTable, type FloatExpr, type IntExpr, type KernelParam, type LocalArray } from "./kernel_ir.ts";
import { ropeExpr } from "./lower_rope.ts";
import type { Dtype } from "./dtype.ts";

export interface LowerOptions {
  /** storage type of a value's buffer (an activation, a weight or an i32 input) */
  readonly valueElem: (id: ValueId) => Dtype;
  readonly kvCache: Dtype;
  /** suffix naming the kernel's storage flavour (`f32`, `bf16`) */
  readonly suffix: string;
}

/** What the executor passes for each kernel parameter. */
export type ParamBinding =
  | { readonly kind: "value"; readonly id: ValueId }
  | { readonly kind: "output"; readonly id: ValueId }
  | { readonly kind: "slot_mapping" }
  | { readonly kind: "kv_cache"; readonly attention: ValueId; readonly which: "k" | "v" };

/** Statements of one loop body, with the values already computed in it. */
export class Body {
  readonly stmts: BodyStmt[] = [];
  readonly memo = new Map<string, FloatExpr>();
  readonly imemo = new Map<string, IntExpr>();
}

export class RegionValues {
  readonly members: Set<ValueId>;
  /** members kept in a row-local array: a reduction reads them, or a rotary partner column does */
  readonly materialized = new Set<ValueId>();
  readonly params: KernelParam[] = [];
  readonly bindings: ParamBinding[] = [];
  readonly locals: LocalArray[] = [];
  readonly consts: ConstTable[] = [];
  private readonly paramNames = new Map<string, string>();
  private readonly localOf = new Map<string, string>();
  private readonly counters = new Map<string, number>();

  constructor(
    readonly graph: Graph,
    readonly region: Region,
    private readonly opts: LowerOptions,
    /** whether the local array of a materialized member is complete where code is being emitted */
    private readonly localReady: (id: ValueId) => boolean,
  ) {
    this.members = new Set(region.nodes);
    for (const id of region.nodes) {
      const n = this.node(id);
      const x = n.kind === "rms_norm" || n.kind === "layer_norm" || n.kind === "rope" ? n.x : undefined;
      if (x !== undefined && this.members.has(x) && !this.loadLike(x)) this.materialized.add(x);
    }
  }

  node(id: ValueId): Node {
    const n = this.graph.nodes[id];
    if (!n) throw new Error(`lowering: no node ${id}`);
    return n;
  }

  cols(id: ValueId): number {
    const d = this.node(id).shape[this.node(id).shape.length - 1];
    if (typeof d !== "number") throw new Error(`lowering: node ${id} has a symbolic last axis`);
    return d;
  }

  fresh(prefix: string): string {
    const n = this.counters.get(prefix) ?? 0;
    this.counters.set(prefix, n + 1);
    return `${prefix}${n}`;
  }

  /** a member whose value is one load from memory (slices and gathers of loads, embeddings) */
  loadLike(id: ValueId): boolean {
    const n = this.node(id);
    if (n.kind === "embedding") return true;
    if (n.kind !== "slice" && n.kind !== "gather_rows") return false;
    return !this.members.has(n.x) || this.loadLike(n.x);
  }

  // ---- parameters ---------------------------------------------------------------------------

  /** `prefix`: a numbered name (x0, w1, y0), `fixed`: the name itself (positions, k_cache) */
  param(key: string, make: () => Omit<KernelParam, "name"> & ({ prefix: string } | { fixed: string }) & { binding: ParamBinding }): string {
    const known = this.paramNames.get(key);
    if (known !== undefined) return known;
    const { binding, ...rest } = make();
    const name = "fixed" in rest ? rest.fixed : this.fresh(rest.prefix);
    const p: KernelParam = { name, io: rest.io, elem: rest.elem, shape: rest.shape, doc: rest.doc };
    this.params.push(p);
    this.bindings.push(binding);
    this.paramNames.set(key, name);
    return name;
  }

  valueParam(id: ValueId): string {
    return this.param(`value:${id}`, () => {
      const n = this.node(id);
      // docs name the role, not the producer, so the same fused op in every layer is one kernel
      const doc = n.kind === "input" ? INPUT_DOCS[n.name] : n.kind === "param" ? "weight" : "activation";
      const naming = n.kind === "input" ? { fixed: n.name } : { prefix: n.kind === "param" ? "w" : "x" };
      return { ...naming, io: "in", elem: this.opts.valueElem(id), shape: n.shape, doc, binding: { kind: "value", id } };
    });
  }

  outputParam(id: ValueId): string {
    const n = this.node(id);
    return this.param(`output:${id}`, () => ({
      prefix: "y",
      io: "out",
      elem: this.opts.valueElem(id),
      shape: n.shape,
      doc: `${label(n)} result`,
      binding: { kind: "output", id },
    }));
  }

  local(key: string, prefix: string, size: number): string {
    const known = this.localOf.get(key);
    if (known !== undefined) return known;
    const name = this.fresh(prefix);
    this.locals.push({ name, size });
    this.localOf.set(key, name);
    return name;
  }

  constTable(values: readonly number[]): string {
    const rounded = values.map((v) => Math.fround(v));
    const same = this.consts.find((c) => c.values.length === rounded.length && c.values.every((v, i) => v === rounded[i]));
    if (same) return same.name;
    const name = this.fresh("inv_freq");
    this.consts.push({ name, values: rounded });
    return name;
  }

  slotParam(): string {
    return this.param("slot_mapping", () => ({
      fixed: "slot_mapping",
      io: "in",
      elem: "i32",
      shape: ["T"],
      doc: "KV cache slot of each token",
      binding: { kind: "slot_mapping" },
    }));
  }

  cacheParam(attention: ValueId, which: "k" | "v", width: number): string {
    return this.param(`cache:${attention}:${which}`, () => ({
      ...(this.region.kvWrites.length === 1 ? { fixed: `${which}_cache` } : { prefix: `${which}_cache` }),
      io: "out",
      elem: this.opts.kvCache,
      shape: ["slots", width],
      doc: `${which.toUpperCase()} cache [slots, kv heads × head dim], written at slot_mapping[r]`,
      binding: { kind: "kv_cache", attention, which },
    }));
  }

  // ---- rows ---------------------------------------------------------------------------------

  /** the row of a member's own value, as an expression of the kernel's row */
  row(id: ValueId): IntExpr {
    const path = this.region.rowPaths.get(id) ?? [];
    let row = ivar(ROW_VAR);
    for (const g of path) row = { k: "iload", buf: this.valueParam((this.node(g) as NodeOf<"gather_rows">).indices), index: row };
    return row;
  }

  /** the row at which member m reads its input u */
  inputRow(m: ValueId, u: ValueId): IntExpr {
    const n = this.node(m);
    if (n.kind === "gather_rows" && n.x === u) return { k: "iload", buf: this.valueParam(n.indices), index: this.row(m) };
    return this.row(m);
  }

  tableKey(rope: ValueId): string {
    const n = this.node(rope) as NodeOf<"rope">;
    return `${intKey(this.row(rope))}|${n.rotaryDim}|${n.invFreq.map((f) => Math.fround(f)).join(",")}`;
  }

  // ---- values -------------------------------------------------------------------------------

  /** member `id` at column `col`; `inlineSelf` computes it even when a local array holds it */
  valueAt(id: ValueId, col: IntExpr, body: Body, inlineSelf = false): FloatExpr {
    const key = `${id}@${intKey(col)}`;
    const memo = body.memo.get(key);
    if (memo) return memo;
    if (this.materialized.has(id) && !inlineSelf && this.localReady(id)) {
      return { k: "load", buf: this.localOf.get(`local:${id}`)!, index: col };
    }
    const expr = this.compute(id, col, body);
    if (expr.k === "load" || expr.k === "num" || expr.k === "fvar") {
      body.memo.set(key, expr);
      return expr;
    }
    const name = this.fresh("t");
    body.stmts.push({ s: "let", name, value: expr });
    const v: FloatExpr = { k: "fvar", name };
    body.memo.set(key, v);
    return v;
  }

  /** input u of member m at column col: computed in the kernel, or loaded from its buffer */
  operand(m: ValueId, u: ValueId, col: IntExpr, body: Body): FloatExpr {
    if (this.members.has(u)) return this.valueAt(u, col, body);
    const n = this.node(u);
    const index = n.shape.length === 1 ? col : iadd(imul(this.inputRow(m, u), int(this.cols(u))), col);
    return { k: "load", buf: this.valueParam(u), index };
  }

  compute(id: ValueId, col: IntExpr, body: Body): FloatExpr {
    const n = this.node(id);
    if (!isFusible(n)) throw new Error(`lowering: a ${n.kind} node cannot be fused`);
    switch (n.kind) {
      case "embedding": {
        const ids: IntExpr = { k: "iload", buf: this.valueParam(n.ids), index: this.row(id) };
        return { k: "load", buf: this.valueParam(n.table), index: iadd(imul(ids, int(this.cols(id))), col) };
      }
      case "binary":
        return { k: "fop", op: n.op === "add" ? "+" : "*", a: this.operand(id, n.a, col, body), b: this.operand(id, n.b, col, body) };
      case "unary":
        return { k: "call", fn: n.op, x: this.operand(id, n.x, col, body) };
      case "scale":
        return { k: "fop", op: "*", a: this.operand(id, n.x, col, body), b: num(Math.fround(n.factor)) };
      case "slice":
        return this.operand(id, n.x, iadd(col, int(n.start)), body);
      case "gather_rows":
        return this.operand(id, n.x, col, body);
      case "rms_norm": {
        const grouped = n.group !== this.cols(id);
        const g = grouped ? iop("/", col, int(n.group)) : int(0);
        const j = grouped ? iop("%", col, int(n.group)) : col;
        const x = this.operand(id, n.x, col, body);
        const inv: FloatExpr = { k: "load", buf: this.local(`reduce:${id}:rms`, "inv", this.cols(id) / n.group), index: g };
        const w = this.operand(id, n.weight, j, body);
        const scaled: FloatExpr = { k: "fop", op: "*", a: x, b: inv };
        return { k: "fop", op: "*", a: scaled, b: n.weightOffset === 0 ? w : { k: "fop", op: "+", a: w, b: num(Math.fround(n.weightOffset)) } };
      }
      case "layer_norm": {
        const x = this.operand(id, n.x, col, body);
        const mean: FloatExpr = { k: "load", buf: this.local(`reduce:${id}:mean`, "mean", 1), index: int(0) };
        const inv: FloatExpr = { k: "load", buf: this.local(`reduce:${id}:var`, "inv", 1), index: int(0) };
        const centered: FloatExpr = { k: "fop", op: "-", a: x, b: mean };
        const scaled: FloatExpr = { k: "fop", op: "*", a: { k: "fop", op: "*", a: centered, b: inv }, b: this.operand(id, n.weight, col, body) };
        return n.bias === undefined ? scaled : { k: "fop", op: "+", a: scaled, b: this.operand(id, n.bias, col, body) };
      }
      case "rope": {
        const [cos, sin] = this.tableLocals(id);
        return ropeExpr(n, col, body, { cos, sin }, (c) => this.operand(id, n.x, c, body), (p) => this.fresh(p));
      }
      default:
        return assertNever(n, "node kind");
    }
  }

  tableLocals(rope: ValueId): [string, string] {
    const key = this.tableKey(rope);
    const half = (this.node(rope) as NodeOf<"rope">).rotaryDim / 2;
    return [this.local(`cos:${key}`, "cos", half), this.local(`sin:${key}`, "sin", half)];
  }
}

const INPUT_DOCS = {
  input_ids: "token ids",
  positions: "token positions",
  logits_indices: "rows whose logits are wanted",
} as const;

export function label(n: Node): string {
  return n.kind === "unary" || n.kind === "binary" ? n.op : n.kind;
}

