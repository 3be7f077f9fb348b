/**
 * Lowering, part two: one fused region → one kernel in loop/index form (kernel_ir.ts). The
 * values come from region_values.ts; here the work is scheduled into loops over columns.
 *
 * Work items are: store a region output, fill a row-local array, write k/v to the KV cache, fill
 * a rotary cos/sin table, or reduce a row (RMS norm; mean and variance for layer norm). An item's
 * phase is one more than the latest phase among the reductions, tables and (read at another
 * column) local arrays it needs; items of one phase over the same columns share a loop, which a
 * reduction of that phase absorbs. Residual add + RMS norm becomes two loops per row:
 *
 *   reduce c < H:  t = x0[r,c] + x1[r,c]; y0[r,c] = t; loc0[c] = t; Σ t²  → inv0[0] = 1/√(Σ/H + ε)
 *   for c < H:     y1[r,c] = loc0[c] · inv0[0] · w0[c]
 */
import { assertNever, type Graph, type NodeOf, type ValueId } from "./ir.ts";
import { isFusible } from "./ops.ts";
import type { Region } from "./passes/fuse.ts";
import { iadd, imul, int, ivar, ROW_VAR, type FloatExpr, type IntExpr, type LoweredKernel, type RowStmt } from "./kernel_ir.ts";
import { Body, label, RegionValues, type LowerOptions, type ParamBinding } from "./region_values.ts";

export type { LowerOptions, ParamBinding } from "./region_values.ts";

export interface LoweredRegion {
  readonly kernel: LoweredKernel;
  /** parallel to kernel.params */
  readonly bindings: readonly ParamBinding[];
}

type Item =
  | { readonly kind: "local" | "store"; readonly v: ValueId }
  | { readonly kind: "kv"; readonly attention: ValueId; readonly which: "k" | "v" }
  | { readonly kind: "table"; readonly key: string; readonly rope: ValueId }
  | { readonly kind: "reduce"; readonly norm: ValueId; readonly stage: "rms" | "mean" | "var" };

type ItemOf<K extends Item["kind"]> = Extract<Item, { kind: K }>;

const COL = ivar("c");

export function lowerRegion(graph: Graph, region: Region, opts: LowerOptions): LoweredRegion {
  return new RegionScheduler(graph, region, opts).lower();
}

class RegionScheduler {
  private readonly v: RegionValues;
  private readonly phases = new Map<string, number>();
  private readonly depsMemo = new Map<ValueId, Set<string>>();
  /** the phase whose loops are being emitted */
  private cur = 0;

  constructor(graph: Graph, region: Region, private readonly opts: LowerOptions) {
    this.v = new RegionValues(graph, region, opts, (id) => (this.phases.get(`local:${id}`) ?? Infinity) < this.cur);
  }

  readDeps(u: ValueId, shifted: boolean): Set<string> {
    if (!this.v.members.has(u)) return new Set();
    if (this.v.materialized.has(u) && shifted) return new Set([`local:${u}`]);
    return this.inlineDeps(u);
  }

  inlineDeps(id: ValueId): Set<string> {
    const memo = this.depsMemo.get(id);
    if (memo) return memo;
    const n = this.v.node(id);
    if (!isFusible(n)) throw new Error(`lowering: a ${n.kind} node cannot be fused`);
    const d = new Set<string>();
    const add = (s: Set<string>): void => s.forEach((x) => d.add(x));
    switch (n.kind) {
      case "embedding":
        break;
      case "binary":
        add(this.readDeps(n.a, false));
        add(this.readDeps(n.b, false));
        break;
      case "unary":
      case "scale":
      case "gather_rows":
        add(this.readDeps(n.x, false));
        break;
      case "slice":
        add(this.readDeps(n.x, n.start !== 0));
        break;
      case "rms_norm":
        add(this.readDeps(n.x, false));
        d.add(`reduce:${id}:rms`);
        break;
      case "layer_norm":
        add(this.readDeps(n.x, false));
        d.add(`reduce:${id}:mean`).add(`reduce:${id}:var`);
        break;
      case "rope":
        add(this.readDeps(n.x, true));
        d.add(`table:${this.v.tableKey(id)}`);
        break;
      default:
        assertNever(n, "node kind");
    }
    this.depsMemo.set(id, d);
    return d;
  }

  itemKey(item: Item): string {
    switch (item.kind) {
      case "local":
      case "store":
        return `${item.kind}:${item.v}`;
      case "kv":
        return `kv:${item.attention}:${item.which}`;
      case "table":
        return `table:${item.key}`;
      case "reduce":
        return `reduce:${item.norm}:${item.stage}`;
      default:
        return assertNever(item, "item");
    }
  }

  itemDeps(item: Item): Set<string> {
    switch (item.kind) {
      case "local":
      case "store":
        return this.inlineDeps(item.v);
      case "kv": {
        const a = this.v.node(item.attention) as NodeOf<"attention">;
        return this.readDeps(item.which === "k" ? a.k : a.v, false);
      }
      case "table":
        return new Set();
      case "reduce": {
        const x = (this.v.node(item.norm) as NodeOf<"rms_norm" | "layer_norm">).x;
        const d = new Set(this.readDeps(x, false));
        if (item.stage === "var") d.add(`reduce:${item.norm}:mean`);
        return d;
      }
      default:
        return assertNever(item, "item");
    }
  }

  phase(key: string, byKey: ReadonlyMap<string, Item>): number {
    const known = this.phases.get(key);
    if (known !== undefined) return known;
    const item = byKey.get(key);
    if (!item) throw new Error(`lowering: no work item ${key}`);
    let p = 0;
    for (const d of this.itemDeps(item)) p = Math.max(p, this.phase(d, byKey) + 1);
    this.phases.set(key, p);
    return p;
  }

  emitItem(item: Item, body: Body): void {
    switch (item.kind) {
      case "local": {
        const value = this.v.valueAt(item.v, COL, body, true);
        body.stmts.push({ s: "store", buf: this.v.local(`local:${item.v}`, "loc", this.v.cols(item.v)), index: COL, value });
        return;
      }
      case "store": {
        const value = this.v.valueAt(item.v, COL, body);
        const index = this.v.node(item.v).shape.length === 1 ? COL : iadd(imul(ivar(ROW_VAR), int(this.v.cols(item.v))), COL);
        body.stmts.push({ s: "store", buf: this.v.outputParam(item.v), index, value });
        return;
      }
      case "kv": {
        const a = this.v.node(item.attention) as NodeOf<"attention">;
        const src = item.which === "k" ? a.k : a.v;
        const value = this.v.members.has(src) ? this.v.valueAt(src, COL, body) : this.v.operand(item.attention, src, COL, body);
        const slot: IntExpr = { k: "iload", buf: this.v.slotParam(), index: ivar(ROW_VAR) };
        const buf = this.v.cacheParam(item.attention, item.which, a.numKvHeads * a.headDim);
        body.stmts.push({ s: "store", buf, index: iadd(imul(slot, int(a.numKvHeads * a.headDim)), COL), value });
        return;
      }
      case "table": {
        const n = this.v.node(item.rope) as NodeOf<"rope">;
        const [cos, sin] = this.v.tableLocals(item.rope);
        const pos: FloatExpr = { k: "itof", x: { k: "iload", buf: this.v.valueParam(n.positions), index: this.v.row(item.rope) } };
        const angle = this.v.fresh("t");
        body.stmts.push({ s: "let", name: angle, value: { k: "fop", op: "*", a: pos, b: { k: "load", buf: this.v.constTable(n.invFreq), index: COL } } });
        body.stmts.push({ s: "store", buf: cos, index: COL, value: { k: "call", fn: "cos", x: { k: "fvar", name: angle } } });
        body.stmts.push({ s: "store", buf: sin, index: COL, value: { k: "call", fn: "sin", x: { k: "fvar", name: angle } } });
        return;
      }
      case "reduce":
        throw new Error("lowering: reductions are row statements, not loop items");
      default:
        assertNever(item, "item");
    }
  }

  extent(item: Item): number {
    switch (item.kind) {
      case "local":
      case "store":
        return this.v.cols(item.v);
      case "kv": {
        const a = this.v.node(item.attention) as NodeOf<"attention">;
        return a.numKvHeads * a.headDim;
      }
      case "table":
        return (this.v.node(item.rope) as NodeOf<"rope">).rotaryDim / 2;
      case "reduce":
        return this.v.cols(item.norm);
      default:
        return assertNever(item, "item");
    }
  }

  reduceStmt(item: ItemOf<"reduce">, body: Body): RowStmt {
    const n = this.v.node(item.norm) as NodeOf<"rms_norm" | "layer_norm">;
    const cols = this.v.cols(item.norm);
    const group = n.kind === "rms_norm" ? n.group : cols;
    const x = this.v.members.has(n.x) ? this.v.valueAt(n.x, COL, body) : this.v.operand(item.norm, n.x, COL, body);
    const out = this.v.local(`reduce:${item.norm}:${item.stage}`, item.stage === "mean" ? "mean" : "inv", cols / group);
    const eps = Math.fround(n.eps);
    const common = { out, groups: cols / group, extent: group, g: "g", j: "j", col: "c", body: body.stmts } as const;
    switch (item.stage) {
      case "rms":
        return { s: "reduce", ...common, op: "sum_sq", value: x, finish: { k: "rsqrt_mean_eps", n: group, eps } };
      case "mean":
        return { s: "reduce", ...common, op: "sum", value: x, finish: { k: "mean", n: group } };
      case "var": {
        const mean: FloatExpr = { k: "load", buf: this.v.local(`reduce:${item.norm}:mean`, "mean", 1), index: int(0) };
        return { s: "reduce", ...common, op: "sum_sq", value: { k: "fop", op: "-", a: x, b: mean }, finish: { k: "rsqrt_mean_eps", n: group, eps } };
      }
      default:
        return assertNever(item.stage, "reduction stage");
    }
  }

  lower(): LoweredRegion {
    const items: Item[] = [];
    for (const id of this.v.region.nodes) {
      const n = this.v.node(id);
      if (this.v.materialized.has(id)) items.push({ kind: "local", v: id });
      if (n.kind === "rms_norm") items.push({ kind: "reduce", norm: id, stage: "rms" });
      if (n.kind === "layer_norm") items.push({ kind: "reduce", norm: id, stage: "mean" }, { kind: "reduce", norm: id, stage: "var" });
      if (n.kind === "rope" && !items.some((i) => i.kind === "table" && i.key === this.v.tableKey(id))) {
        items.push({ kind: "table", key: this.v.tableKey(id), rope: id });
      }
    }
    for (const id of this.v.region.outputs) items.push({ kind: "store", v: id });
    for (const a of this.v.region.kvWrites) items.push({ kind: "kv", attention: a, which: "k" }, { kind: "kv", attention: a, which: "v" });

    const byKey = new Map(items.map((i) => [this.itemKey(i), i]));
    const maxPhase = Math.max(0, ...items.map((i) => this.phase(this.itemKey(i), byKey)));
    const body: RowStmt[] = [];
    const order = { local: 0, table: 1, store: 2, kv: 3, reduce: 4 } as const satisfies Record<Item["kind"], number>;
    for (let p = 0; p <= maxPhase; p++) {
      this.cur = p;
      const here = items.filter((i) => this.phases.get(this.itemKey(i)) === p).sort((a, b) => order[a.kind] - order[b.kind]);
      const reduces = here.filter((i): i is ItemOf<"reduce"> => i.kind === "reduce").map((item) => ({ item, body: new Body(), work: [] as Item[] }));
      const loops = new Map<number, Item[]>();
      for (const item of here) {
        if (item.kind === "reduce") continue;
        const r = reduces.find((x) => this.extent(x.item) === this.extent(item));
        if (r) r.work.push(item);
        else loops.set(this.extent(item), [...(loops.get(this.extent(item)) ?? []), item]);
      }
      for (const r of reduces) {
        for (const item of r.work) this.emitItem(item, r.body);
        body.push(this.reduceStmt(r.item, r.body));
      }
      for (const [extent, work] of loops) {
        const b = new Body();
        for (const item of work) this.emitItem(item, b);
        body.push({ s: "for", v: "c", extent, body: b.stmts });
      }
    }
    const kernel: LoweredKernel = {
      name: `${kernelOps(this.v.graph, this.v.region).join("_")}_${this.opts.suffix}`,
      rows: this.v.region.rows,
      ops: kernelOps(this.v.graph, this.v.region),
      params: this.v.params,
      locals: this.v.locals,
      consts: this.v.consts,
      body,
    };
    return { kernel, bindings: this.v.bindings };
  }
}

/** the region's ops for its name: `add_rms_norm`, `rope_kv_write` (slices are only indexing) */
export function kernelOps(graph: Graph, region: Region): string[] {
  const ops: string[] = [];
  for (const id of region.nodes) {
    const l = label(graph.nodes[id]!);
    if (l !== "slice" && !ops.includes(l)) ops.push(l);
  }
  if (region.kvWrites.length > 0) ops.push("kv_write");
  return ops.length > 0 ? ops : ["slice"];
}
