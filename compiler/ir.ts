/**
 * kiln's IR: a closed set of node kinds over a flattened token batch.
 *
 * Every value is a dense row-major tensor. The leading dimension of activations is symbolic:
 * `T` is the number of tokens scheduled in a step (all sequences packed together, as vLLM does)
 * and `S` is the number of rows whose logits are wanted (usually one per sequence). Everything
 * else is a concrete size fixed at trace time, so a traced graph serves any batch.
 */

export type SymbolicDim = "T" | "S";
export type Dim = number | SymbolicDim;
export type Shape = readonly Dim[];

/** Activation dtypes (compute is f32; token ids and positions are i32). */
export type DType = "f32" | "i32";
/** How a parameter is stored in memory; compute converts to f32 on load into registers. */
export type StorageDType = "f32" | "bf16";

export type ValueId = number;

/** Per-step inputs every graph may read. */
export const INPUT_NAMES = ["input_ids", "positions", "logits_indices"] as const;
export type InputName = (typeof INPUT_NAMES)[number];

export const UNARY_OPS = ["silu", "gelu_tanh", "gelu", "relu", "tanh", "neg"] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];
export const BINARY_OPS = ["add", "mul"] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

interface Base {
  readonly id: ValueId;
  readonly shape: Shape;
  readonly dtype: DType;
  /** Checkpoint prefix of the module that built the node, for error messages and reports. */
  readonly scope: string;
}

export type Node =
  | (Base & { readonly kind: "input"; readonly name: InputName })
  | (Base & { readonly kind: "param"; readonly name: string; readonly storage: StorageDType })
  /** rows of `table` [V, H] picked by `ids` [T] → [T, H] */
  | (Base & { readonly kind: "embedding"; readonly table: ValueId; readonly ids: ValueId })
  /** x [R, K] · weight[N, K]ᵀ (+ bias [N]) → [R, N]; a GEMM library call on every backend */
  | (Base & { readonly kind: "linear"; readonly x: ValueId; readonly weight: ValueId; readonly bias: ValueId | undefined })
  /** RMS norm over contiguous groups of `group` elements of each row; y = x̂ · (w + weightOffset) */
  | (Base & {
      readonly kind: "rms_norm";
      readonly x: ValueId;
      readonly weight: ValueId;
      readonly eps: number;
      readonly group: number;
      readonly weightOffset: number;
    })
  | (Base & {
      readonly kind: "layer_norm";
      readonly x: ValueId;
      readonly weight: ValueId;
      readonly bias: ValueId | undefined;
      readonly eps: number;
    })
  /** a op b with equal shapes, or b of shape [N] broadcast over the rows of a [R, N] */
  | (Base & { readonly kind: "binary"; readonly op: BinaryOp; readonly a: ValueId; readonly b: ValueId })
  | (Base & { readonly kind: "unary"; readonly op: UnaryOp; readonly x: ValueId })
  | (Base & { readonly kind: "scale"; readonly x: ValueId; readonly factor: number })
  /** columns [start, start + size) of x [R, N] */
  | (Base & { readonly kind: "slice"; readonly x: ValueId; readonly start: number; readonly size: number })
  /** rows of x [T, H] picked by indices [S] → [S, H] */
  | (Base & { readonly kind: "gather_rows"; readonly x: ValueId; readonly indices: ValueId })
  /** rotary embedding of x [T, numHeads * headDim] at `positions` [T] */
  | (Base & {
      readonly kind: "rope";
      readonly x: ValueId;
      readonly positions: ValueId;
      readonly numHeads: number;
      readonly headDim: number;
      readonly rotaryDim: number;
      /** true: rotate halves (HF rotate_half); false: rotate interleaved pairs (GPT-J) */
      readonly neox: boolean;
      /** [rotaryDim / 2] inverse frequencies, float32 as the reference computes them */
      readonly invFreq: readonly number[];
    })
  /**
   * Custom op: paged attention. Writes k/v of the step into the layer's KV cache, then attends
   * q over the cached context of each sequence. Opaque to fusion; splits CUDA-graph pieces.
   */
  | (Base & {
      readonly kind: "attention";
      readonly q: ValueId; // [T, numHeads * headDim]
      readonly k: ValueId; // [T, numKvHeads * headDim]
      readonly v: ValueId; // [T, numKvHeads * headDim]
      /** names the layer's KV cache (the attention module's prefix) */
      readonly cacheKey: string;
      readonly numHeads: number;
      readonly numKvHeads: number;
      readonly headDim: number;
      readonly scale: number;
      readonly slidingWindow: number | undefined;
      readonly softcap: number | undefined;
    });

export type NodeKind = Node["kind"];
export type NodeOf<K extends NodeKind> = Extract<Node, { kind: K }>;

/** Kinds that are opaque to fusion and mark where a CUDA graph is split. */
export const CUSTOM_OP_KINDS = ["attention"] as const satisfies readonly NodeKind[];
export type CustomOpKind = (typeof CUSTOM_OP_KINDS)[number];
export function isCustomOp(n: Node): n is NodeOf<CustomOpKind> {
  return (CUSTOM_OP_KINDS as readonly string[]).includes(n.kind);
}

/** What one attention layer needs from the KV cache. */
export interface KvLayerSpec {
  readonly cacheKey: string;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly slidingWindow: number | undefined;
}

export interface Graph {
  /** in topological order; node i has id i */
  readonly nodes: readonly Node[];
  readonly outputs: { readonly logits: ValueId };
  readonly kvLayers: readonly KvLayerSpec[];
}

export function assertNever(x: never, what = "value"): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
}

/** The value ids a node reads, in a fixed order. */
export function nodeInputs(n: Node): ValueId[] {
  switch (n.kind) {
    case "input":
    case "param":
      return [];
    case "embedding":
      return [n.table, n.ids];
    case "linear":
      return n.bias === undefined ? [n.x, n.weight] : [n.x, n.weight, n.bias];
    case "rms_norm":
      return [n.x, n.weight];
    case "layer_norm":
      return n.bias === undefined ? [n.x, n.weight] : [n.x, n.weight, n.bias];
    case "binary":
      return [n.a, n.b];
    case "unary":
    case "scale":
    case "slice":
      return [n.x];
    case "gather_rows":
      return [n.x, n.indices];
    case "rope":
      return [n.x, n.positions];
    case "attention":
      return [n.q, n.k, n.v];
    default:
      return assertNever(n, "node kind");
  }
}

/** Concrete element count of a shape once the step's symbolic sizes are known. */
export function numel(shape: Shape, sizes: Readonly<Record<SymbolicDim, number>>): number {
  let n = 1;
  for (const d of shape) n *= typeof d === "number" ? d : sizes[d];
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}
