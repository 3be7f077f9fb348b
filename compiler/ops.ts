/**
 * The op catalogue: every IR node kind described once. The node types themselves stay a
 * discriminated union in ir.ts (with their shape comments); this table is tied to that union, so
 * a new kind, or a new field on a kind, does not compile until it is catalogued here.
 *
 * Everything that must know an op's fields, inputs, class or state derives from its entry:
 *   - nodeInputs / mapInputs (the value ids a node reads: its "id", "id?" and "ids" fields, in
 *     field order)
 *   - graph.json reading and writing (the fields and their JSON types)
 *   - the fusion class (fusible, GEMM, custom op that splits CUDA-graph pieces, opaque op)
 *   - stateKeyOf, and the KV-cache / state-layer invariants
 *   - the per-kind shape invariants (`check`)
 *
 * Only types are imported from ir.ts: ir.ts re-exports the helpers below, so the import graph
 * has no cycle at run time.
 */
import type {
  BinaryOp,
  Dim,
  Graph,
  InputName,
  MoeActivation,
  MoeRouting,
  Node,
  NodeKind,
  NodeOf,
  StorageDType,
  UnaryOp,
  ValueId,
} from "./ir.ts";

/**
 * How a field is written in graph.json. id: a value id the node reads (an input); id?: an
 * optional input (absent when undefined); ids: a list of inputs; int: a non-negative integer;
 * num: a finite number; nums: a list of them; the rest: one of a closed set of strings.
 */
export const FIELD_TYPES = [
  "id",
  "id?",
  "ids",
  "int",
  "int?",
  "num",
  "num?",
  "str",
  "bool",
  "nums",
  "storage",
  "input",
  "unary",
  "binary",
  "moe_routing",
  "moe_activation",
] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

/** The field types a TS field type may be catalogued as (ids and sizes are both numbers). */
type Is<T, U> = [T] extends [U] ? ([U] extends [T] ? true : false) : false;
type FieldTypeFor<T> =
  Is<T, number> extends true ? "id" | "int" | "num"
  : Is<T, number | undefined> extends true ? "id?" | "int?" | "num?"
  : Is<T, boolean> extends true ? "bool"
  : Is<T, readonly number[]> extends true ? "nums" | "ids"
  : Is<T, StorageDType> extends true ? "storage"
  : Is<T, InputName> extends true ? "input"
  : Is<T, UnaryOp> extends true ? "unary"
  : Is<T, BinaryOp> extends true ? "binary"
  : Is<T, MoeRouting> extends true ? "moe_routing"
  : Is<T, MoeActivation> extends true ? "moe_activation"
  : Is<T, string> extends true ? "str"
  : never;

/** Fields every node has; the catalogue lists the others. */
type CommonField = "id" | "kind" | "shape" | "dtype" | "scope";
type OwnField<K extends NodeKind> = Exclude<keyof NodeOf<K>, CommonField>;
export type FieldsOf<K extends NodeKind> = { readonly [F in OwnField<K>]-?: FieldTypeFor<NodeOf<K>[F]> };
type StringField<K extends NodeKind> = { [F in OwnField<K>]-?: Is<NodeOf<K>[F], string> extends true ? F : never }[OwnField<K>];

/**
 * source:      per-step inputs and weights (no kernel computes them)
 * elementwise: row-local maps: row r of the output from row r of the inputs
 * reduction:   row reductions (norms), still row-local
 * gather:      rows picked by an index value (embedding, gather_rows)
 * gemm:        a GEMM library call
 * custom:      a hand-written kernel with per-step metadata or per-sequence state; opaque to
 *              fusion, never merged or dropped, and splits CUDA-graph pieces
 * opaque:      a hand-written kernel that is pure and of fixed launch shape for a given T: stays
 *              inside CUDA-graph pieces and may be merged or dropped like any value
 */
export const OP_CLASSES = ["source", "elementwise", "reduction", "gather", "gemm", "custom", "opaque"] as const;
export type OpClass = (typeof OP_CLASSES)[number];

/** How fusion sees an op class. */
export const FUSION_CLASS = {
  source: "source",
  elementwise: "fusible",
  reduction: "fusible",
  gather: "fusible",
  gemm: "gemm",
  custom: "custom",
  opaque: "opaque",
} as const satisfies Record<OpClass, string>;
export type FusionClass = (typeof FUSION_CLASS)[OpClass];

/**
 * What an op keeps across steps: kv_cache names a layer of `graph.kvLayers` (paged, grows with
 * the context); state_slots names a layer of `graph.stateLayers` (fixed size per sequence,
 * updated in place). `key` is the field holding the layer's name.
 */
export type OpStateKind = "kv_cache" | "state_slots";

/** What a per-kind check sees: the graph's nodes (every input id is an earlier node). */
export interface OpCheck {
  node(id: ValueId): Node;
  /** records a violation at the node being checked */
  fail(msg: string): void;
}

export interface OpEntry<K extends NodeKind> {
  readonly class: OpClass;
  readonly fields: FieldsOf<K>;
  readonly state?: { readonly kind: OpStateKind; readonly key: StringField<K> };
  /** the shape and dtype rules of the kind's operands */
  readonly check?: (n: NodeOf<K>, c: OpCheck) => void;
}
type Catalogue = { readonly [K in NodeKind]: OpEntry<K> };

const cols = (n: Node): Dim | undefined => n.shape[n.shape.length - 1];
const same = (a: readonly Dim[], b: readonly Dim[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const shapeText = (s: readonly Dim[]): string => `[${s.join(", ")}]`;
const sameAsInput = (n: Node & { readonly x: ValueId }, c: OpCheck): void => {
  if (!same(n.shape, c.node(n.x).shape)) c.fail("shape differs from its input's");
};

export const OPS = {
  input: { class: "source", fields: { name: "input" } },
  param: { class: "source", fields: { name: "str", storage: "storage" } },
  embedding: {
    class: "gather",
    fields: { table: "id", ids: "id" },
    check(n, c) {
      if (c.node(n.ids).dtype !== "i32") c.fail("ids must be i32");
      if (cols(n) !== cols(c.node(n.table))) c.fail("row width differs from the table's");
    },
  },
  linear: {
    class: "gemm",
    fields: { x: "id", weight: "id", bias: "id?" },
    check(n, c) {
      if (cols(c.node(n.x)) !== cols(c.node(n.weight))) c.fail("x and weight disagree on K");
      if (cols(n) !== c.node(n.weight).shape[0]) c.fail("output width differs from weight rows");
    },
  },
  rms_norm: {
    class: "reduction",
    fields: { x: "id", weight: "id", eps: "num", group: "int", weightOffset: "num" },
    check(n, c) {
      const w = cols(n);
      if (typeof w !== "number" || w % n.group !== 0) c.fail(`group ${n.group} does not divide the row`);
      if (c.node(n.weight).shape[0] !== n.group) c.fail("weight length differs from the group");
      sameAsInput(n, c);
    },
  },
  layer_norm: { class: "reduction", fields: { x: "id", weight: "id", bias: "id?", eps: "num" }, check: sameAsInput },
  binary: {
    class: "elementwise",
    fields: { op: "binary", a: "id", b: "id" },
    check(n, c) {
      const a = c.node(n.a).shape;
      const b = c.node(n.b).shape;
      if (!same(a, n.shape)) c.fail("shape differs from operand a");
      if (!same(a, b) && !(b.length === 1 && b[0] === cols(n))) c.fail(`operands ${shapeText(a)} and ${shapeText(b)} do not broadcast`);
    },
  },
  unary: { class: "elementwise", fields: { op: "unary", x: "id" }, check: sameAsInput },
  scale: { class: "elementwise", fields: { x: "id", factor: "num" }, check: sameAsInput },
  slice: {
    class: "elementwise",
    fields: { x: "id", start: "int", size: "int" },
    check(n, c) {
      if (n.start < 0 || n.start + n.size > (cols(c.node(n.x)) as number) || cols(n) !== n.size) c.fail("slice outside its input");
    },
  },
  gather_rows: {
    class: "gather",
    fields: { x: "id", indices: "id" },
    check(n, c) {
      if (c.node(n.indices).dtype !== "i32") c.fail("indices must be i32");
      if (n.shape[0] !== c.node(n.indices).shape[0]) c.fail("rows differ from the index count");
    },
  },
  rope: {
    class: "elementwise",
    fields: { x: "id", positions: "id", numHeads: "int", headDim: "int", rotaryDim: "int", neox: "bool", invFreq: "nums" },
    check: sameAsInput,
  },
  attention: {
    class: "custom",
    fields: {
      q: "id",
      k: "id",
      v: "id",
      cacheKey: "str",
      numHeads: "int",
      numKvHeads: "int",
      headDim: "int",
      scale: "num",
      slidingWindow: "int?",
      softcap: "num?",
    },
    state: { kind: "kv_cache", key: "cacheKey" },
    check(n, c) {
      if (!same(c.node(n.q).shape, n.shape)) c.fail("q shape differs from the output");
    },
  },
  moe: {
    class: "opaque",
    fields: {
      x: "id",
      router: "id",
      w13: "id",
      w2: "id",
      numExperts: "int",
      topK: "int",
      intermediateSize: "int",
      routing: "moe_routing",
      activation: "moe_activation",
    },
    check(n, c) {
      const [E, H, I] = [n.numExperts, cols(n), n.intermediateSize];
      if (!same(c.node(n.x).shape, n.shape)) c.fail("x shape differs from the output");
      if (!same(c.node(n.router).shape, [E, H!])) c.fail(`router is not [${E}, ${String(H)}]`);
      if (!same(c.node(n.w13).shape, [E, 2 * I, H!])) c.fail(`w13 is not [${E}, ${2 * I}, ${String(H)}]`);
      if (!same(c.node(n.w2).shape, [E, H!, I])) c.fail(`w2 is not [${E}, ${String(H)}, ${I}]`);
      if (!(n.topK >= 1 && n.topK <= E)) c.fail(`top-k ${n.topK} is outside 1..${E}`);
    },
  },
  short_conv: {
    class: "custom",
    fields: { x: "id", weight: "id", bias: "id?", stateKey: "str", kernelSize: "int" },
    state: { kind: "state_slots", key: "stateKey" },
    check(n, c) {
      if (!same(c.node(n.x).shape, n.shape)) c.fail("x shape differs from the output");
      if (!same(c.node(n.weight).shape, [cols(n)!, 1, n.kernelSize])) c.fail(`weight is not [${String(cols(n))}, 1, ${n.kernelSize}]`);
      if (n.bias !== undefined && !same(c.node(n.bias).shape, [cols(n)!])) c.fail("bias is not [D]");
      if (n.kernelSize < 2) c.fail(`kernel size ${n.kernelSize} leaves no conv state`);
    },
  },
  linear_attention: {
    class: "custom",
    fields: { qkv: "id", stateKey: "str", numHeads: "int", headDim: "int", slopes: "nums" },
    state: { kind: "state_slots", key: "stateKey" },
    check(n, c) {
      if (cols(c.node(n.qkv)) !== 3 * n.numHeads * n.headDim) c.fail("qkv is not [T, heads · 3 · headDim]");
      if (cols(n) !== n.numHeads * n.headDim || n.shape[0] !== c.node(n.qkv).shape[0]) c.fail("output is not [T, heads · headDim]");
      if (n.slopes.length !== n.numHeads) c.fail(`${n.slopes.length} slopes for ${n.numHeads} heads`);
    },
  },
  selective_scan: {
    class: "custom",
    fields: { u: "id", delta: "id", aLog: "id", b: "id", c: "id", d: "id", z: "id", stateKey: "str", stateSize: "int" },
    state: { kind: "state_slots", key: "stateKey" },
    check(n, c) {
      const I = cols(n);
      const N = n.stateSize;
      const rowsOk = (v: ValueId, w: Dim | undefined): boolean => same(c.node(v).shape, [n.shape[0]!, w!]);
      if (!rowsOk(n.u, I) || !rowsOk(n.delta, I) || !rowsOk(n.z, I)) c.fail("u, delta and z must have the output's shape [T, I]");
      if (!rowsOk(n.b, N) || !rowsOk(n.c, N)) c.fail(`b and c must be [T, ${N}]`);
      if (!same(c.node(n.aLog).shape, [I!, N])) c.fail(`A_log is not [${String(I)}, ${N}]`);
      if (!same(c.node(n.d).shape, [I!])) c.fail(`D is not [${String(I)}]`);
    },
  },
  ssd_scan: {
    class: "custom",
    fields: {
      x: "id",
      dt: "id",
      dtBias: "id",
      aLog: "id",
      b: "id",
      c: "id",
      d: "id",
      stateKey: "str",
      numHeads: "int",
      headDim: "int",
      numGroups: "int",
      stateSize: "int",
      dtMin: "num",
      dtMax: "num?",
    },
    state: { kind: "state_slots", key: "stateKey" },
    check(n, c) {
      const [H, P, G, N] = [n.numHeads, n.headDim, n.numGroups, n.stateSize];
      const rowsOk = (v: ValueId, w: number): boolean => same(c.node(v).shape, [n.shape[0]!, w]);
      if (cols(n) !== H * P || !rowsOk(n.x, H * P)) c.fail(`x and the output must be [T, ${H * P}]`);
      if (!rowsOk(n.dt, H)) c.fail(`dt is not [T, ${H}]`);
      if (!(G >= 1 && H % G === 0)) c.fail(`${G} groups do not divide ${H} heads`);
      if (!rowsOk(n.b, G * N) || !rowsOk(n.c, G * N)) c.fail(`b and c must be [T, ${G * N}]`);
      for (const [v, what] of [[n.dtBias, "dt_bias"], [n.aLog, "A_log"], [n.d, "D"]] as const) {
        if (!same(c.node(v).shape, [H])) c.fail(`${what} is not [${H}]`);
      }
      if (n.dtMax !== undefined && !(n.dtMax >= n.dtMin)) c.fail(`dt limits [${n.dtMin}, ${n.dtMax}] are empty`);
    },
  },
} as const satisfies Catalogue;

const CATALOGUE: Catalogue = OPS;

export function isNodeKind(k: unknown): k is NodeKind {
  return typeof k === "string" && Object.hasOwn(OPS, k);
}

/** Every node kind, in catalogue order. */
export const NODE_KINDS: readonly NodeKind[] = Object.keys(OPS).filter(isNodeKind);

// ---- classes ------------------------------------------------------------------------------

type ClassOf<K extends NodeKind> = (typeof OPS)[K]["class"];
/** The kinds of the given op classes, as a type. */
export type KindOfClass<C extends OpClass> = { [K in NodeKind]: ClassOf<K> extends C ? K : never }[NodeKind];

export function opClass(n: Node): OpClass {
  return CATALOGUE[n.kind].class;
}

function kindsOf<C extends OpClass>(...classes: readonly C[]): readonly KindOfClass<C>[] {
  const wanted: readonly OpClass[] = classes;
  return NODE_KINDS.filter((k): k is KindOfClass<C> => wanted.includes(CATALOGUE[k].class));
}

/** Kinds that are opaque to fusion and mark where a CUDA graph is split. */
export type CustomOpKind = KindOfClass<"custom">;
export const CUSTOM_OP_KINDS = kindsOf("custom");
export function isCustomOp(n: Node): n is NodeOf<CustomOpKind> {
  return CATALOGUE[n.kind].class === "custom";
}

/** Kinds that are opaque to fusion but pure, so they stay inside CUDA-graph pieces (MoE). */
export type OpaqueOpKind = KindOfClass<"opaque">;
export const OPAQUE_OP_KINDS = kindsOf("opaque");
export function isOpaqueOp(n: Node): n is NodeOf<OpaqueOpKind> {
  return CATALOGUE[n.kind].class === "opaque";
}

/** Kinds a fused kernel computes (generated code: region_values.ts, lower_region.ts). */
export type FusibleKind = KindOfClass<"elementwise" | "reduction" | "gather">;
export function isFusible(n: Node): n is NodeOf<FusibleKind> {
  return FUSION_CLASS[CATALOGUE[n.kind].class] === "fusible";
}

export function fusionClass(n: Node): FusionClass {
  return FUSION_CLASS[CATALOGUE[n.kind].class];
}

// ---- fields and inputs --------------------------------------------------------------------

/** A kind's own fields (not id, kind, shape, dtype, scope) and their JSON types. */
export function fieldsOf(kind: NodeKind): Readonly<Record<string, FieldType>> {
  return CATALOGUE[kind].fields;
}

type InputFieldType = "id" | "id?" | "ids";
interface InputField {
  readonly name: string;
  readonly type: InputFieldType;
}
const isInputType = (t: FieldType): t is InputFieldType => t === "id" || t === "id?" || t === "ids";

/** The fields of `fields` that hold value ids, in field order. */
export function inputFields(fields: Readonly<Record<string, FieldType>>): readonly InputField[] {
  const out: InputField[] = [];
  for (const [name, type] of Object.entries(fields)) if (isInputType(type)) out.push({ name, type });
  return out;
}

const INPUT_FIELDS = new Map<NodeKind, readonly InputField[]>(NODE_KINDS.map((k) => [k, inputFields(fieldsOf(k))]));
const inputFieldsOf = (kind: NodeKind): readonly InputField[] => INPUT_FIELDS.get(kind) ?? [];

/** The value ids a node reads, in field order (an absent optional input is skipped). */
export function nodeInputs(n: Node): ValueId[] {
  const record: Readonly<Record<string, unknown>> = n;
  const ids: ValueId[] = [];
  for (const { name } of inputFieldsOf(n.kind)) {
    const v = record[name];
    if (typeof v === "number") ids.push(v);
    else if (Array.isArray(v)) for (const id of v) if (typeof id === "number") ids.push(id);
  }
  return ids;
}

/** The node with every value id it reads passed through `f` (a source node is returned as is). */
export function mapInputs(n: Node, f: (id: ValueId) => ValueId): Node {
  const fields = inputFieldsOf(n.kind);
  if (fields.length === 0) return n;
  const out: Record<string, unknown> = { ...n };
  for (const { name } of fields) {
    const v = out[name];
    out[name] = typeof v === "number" ? f(v) : Array.isArray(v) ? v.map((id: unknown) => (typeof id === "number" ? f(id) : id)) : undefined;
  }
  return out as Node;
}

// ---- state and checks ---------------------------------------------------------------------

/** The layer a stateful op reads and writes: which list it is in, and its name. */
export function stateOf(n: Node): { readonly kind: OpStateKind; readonly key: string } | undefined {
  const state = CATALOGUE[n.kind].state;
  if (state === undefined) return undefined;
  const record: Readonly<Record<string, unknown>> = n;
  const key = record[state.key];
  return typeof key === "string" ? { kind: state.kind, key } : undefined;
}

/** The state key a stateful custom op reads and writes (state slots), or undefined for other nodes. */
export function stateKeyOf(n: Node): string | undefined {
  const s = stateOf(n);
  return s?.kind === "state_slots" ? s.key : undefined;
}

function checkKind<K extends NodeKind>(kind: K, n: NodeOf<K>, c: OpCheck): void {
  CATALOGUE[kind].check?.(n, c);
}

/** Runs the kind's operand rules on n (its inputs must already be known to be earlier nodes). */
export function checkOp(n: Node, c: OpCheck): void {
  checkKind(n.kind, n, c);
}

/** A graph's layer lists by the state kind they hold. */
export function stateLayerKeys(graph: Graph, kind: OpStateKind): readonly string[] {
  return kind === "kv_cache" ? graph.kvLayers.map((l) => l.cacheKey) : graph.stateLayers.map((l) => l.stateKey);
}
