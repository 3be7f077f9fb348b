/**
 * kiln's IR: a closed set of node kinds over a flattened token batch.
 *
 * Every value is a dense row-major tensor. The leading dimension of activations is symbolic:
 * `T` is the number of tokens scheduled in a step (all sequences packed together, as vLLM does)
 * and `S` is the number of rows whose logits are wanted (usually one per sequence). Everything
 * else is a concrete size fixed at trace time, so a traced graph serves any batch.
 *
 * The node types live here; what each kind's fields are in graph.json, which of them are inputs,
 * its class (fusible, GEMM, custom op, ...) and the state it keeps live in the op catalogue
 * (ops.ts), which is tied to this union: a new kind does not compile until it is catalogued.
 */
import type { Dtype, FloatDtype } from "./dtype.ts";

export type SymbolicDim = "T" | "S";
export type Dim = number | SymbolicDim;
export type Shape = readonly Dim[];

/** Activation dtypes (compute is f32; token ids and positions are i32): a subset of compiler/dtype.ts's. */
export type DType = Extract<Dtype, "f32" | "i32">;
/** How a parameter is stored in memory as loaded; compute converts to f32 on load into registers. */
export type StorageDType = Extract<FloatDtype, "f32" | "bf16">;

export type ValueId = number;

/** Per-step inputs every graph may read. */
export const INPUT_NAMES = ["input_ids", "positions", "logits_indices"] as const;
export type InputName = (typeof INPUT_NAMES)[number];

export const UNARY_OPS = ["silu", "gelu_tanh", "gelu", "relu", "tanh", "neg", "sigmoid"] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];
export const BINARY_OPS = ["add", "mul"] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

/**
 * How a MoE router's logits become the weights of the chosen experts:
 *   softmax_topk:        p = softmax(logits); keep the top-k p as they are (Jamba)
 *   softmax_topk_renorm: p = softmax(logits); keep the top-k p, divided by their sum
 *                        (Mixtral, MiniMax, Qwen3-MoE with norm_topk_prob)
 */
export const MOE_ROUTINGS = ["softmax_topk", "softmax_topk_renorm"] as const;
export type MoeRouting = (typeof MOE_ROUTINGS)[number];
/** An expert is down(act(gate) * up); the activation of its gate. */
export const MOE_ACTIVATIONS = ["silu"] as const;
export type MoeActivation = (typeof MOE_ACTIVATIONS)[number];

/** (a type, not an interface, so a node is also a plain record the op catalogue can read by field name) */
type Base = {
  readonly id: ValueId;
  readonly shape: Shape;
  readonly dtype: DType;
  /** Checkpoint prefix of the module that built the node, for error messages and reports. */
  readonly scope: string;
};

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
    })
  /**
   * Custom op: fused experts (sparse MoE). Router logits x · routerᵀ [T, E]; each token's top-k
   * experts weighted by `routing`; out = Σ_k weight_k · down_e(act(gate_e(x)) · up_e(x)).
   * Opaque to fusion; pure (no state), so it runs inside CUDA-graph pieces.
   */
  | (Base & {
      readonly kind: "moe";
      readonly x: ValueId; // [T, H]
      readonly router: ValueId; // [E, H]
      readonly w13: ValueId; // [E, 2I, H]: per expert, gate rows [0, I) then up rows [I, 2I)
      readonly w2: ValueId; // [E, H, I]
      readonly numExperts: number;
      readonly topK: number;
      readonly intermediateSize: number;
      readonly routing: MoeRouting;
      readonly activation: MoeActivation;
    })
  /**
   * Custom op: the causal depthwise convolution of a gated short-conv layer (LFM2), kernel size L.
   * Each sequence's conv state, its last L − 1 inputs [L − 1, D], is read and updated in place
   * (a mamba-like layer: fixed-size per-sequence state, named by `stateKey`). Splits pieces.
   */
  | (Base & {
      readonly kind: "short_conv";
      readonly x: ValueId; // [T, D]
      readonly weight: ValueId; // [D, 1, L] (PyTorch's depthwise Conv1d layout)
      readonly bias: ValueId | undefined; // [D]
      readonly stateKey: string;
      readonly kernelSize: number;
    })
  /**
   * Custom op: lightning (linear) attention with per-head exponential decay (MiniMax). Per head,
   * KV_t = exp(−slope) · KV_{t−1} + k_tᵀ v_t and o_t = q_t · KV_t; each sequence's KV state
   * [numHeads, headDim, headDim] is updated in place (named by `stateKey`). Splits pieces.
   */
  | (Base & {
      readonly kind: "linear_attention";
      readonly qkv: ValueId; // [T, numHeads * 3 * headDim]: per head [q | k | v]
      readonly stateKey: string;
      readonly numHeads: number;
      readonly headDim: number;
      /** [numHeads] decay rates, float32 as the reference computes them */
      readonly slopes: readonly number[];
    })
  /**
   * Custom op: Mamba-1's selective scan. Per channel i of I and state index n of N, with
   * Δ = softplus(delta[t, i]) and A = −exp(aLog):
   *   h[i, n] ← exp(Δ · A[i, n]) · h[i, n] + Δ · b[t, n] · u[t, i]
   *   out[t, i] = (Σ_n h[i, n] · c[t, n] + d[i] · u[t, i]) · silu(z[t, i])
   * Each sequence's SSM state h [I, N] is updated in place (named by `stateKey`). Splits pieces.
   */
  | (Base & {
      readonly kind: "selective_scan";
      readonly u: ValueId; // [T, I] (the conv's output after its activation)
      readonly delta: ValueId; // [T, I] before softplus (dt_proj's output, bias included)
      readonly aLog: ValueId; // [I, N]
      readonly b: ValueId; // [T, N]
      readonly c: ValueId; // [T, N]
      readonly d: ValueId; // [I]
      readonly z: ValueId; // [T, I] the gate
      readonly stateKey: string;
      readonly stateSize: number;
    })
  /**
   * Custom op: Mamba-2's state-space dual (SSD) scan, over H heads of P channels and G groups of
   * B/C (head h uses group h / (H / G)). Per head, with Δ = clamp(softplus(dt[t, h] + dtBias[h]),
   * dtMin, dtMax) and A = −exp(aLog[h]), a scalar decay per head and step:
   *   h[h, p, n] ← exp(Δ · A) · h[h, p, n] + Δ · x[t, h, p] · b[t, g, n]
   *   out[t, h, p] = Σ_n h[h, p, n] · c[t, g, n] + d[h] · x[t, h, p]
   * Each sequence's SSM state [H, P, N] is updated in place (named by `stateKey`). The gate and
   * the gated norm that follow are ordinary nodes. Splits pieces.
   */
  | (Base & {
      readonly kind: "ssd_scan";
      readonly x: ValueId; // [T, H · P]
      readonly dt: ValueId; // [T, H] before the bias and softplus
      readonly dtBias: ValueId; // [H]
      readonly aLog: ValueId; // [H]
      readonly b: ValueId; // [T, G · N]
      readonly c: ValueId; // [T, G · N]
      readonly d: ValueId; // [H]
      readonly stateKey: string;
      readonly numHeads: number;
      readonly headDim: number;
      readonly numGroups: number;
      readonly stateSize: number;
      readonly dtMin: number;
      /** undefined: no upper limit */
      readonly dtMax: number | undefined;
    });

export type NodeKind = Node["kind"];
export type NodeOf<K extends NodeKind> = Extract<Node, { kind: K }>;

/**
 * What each kind's fields, inputs, class and state are lives in one place, the op catalogue
 * (ops.ts); these helpers derive from it and are re-exported here for the IR's users.
 */
export {
  CUSTOM_OP_KINDS,
  isCustomOp,
  isOpaqueOp,
  nodeInputs,
  OPAQUE_OP_KINDS,
  stateKeyOf,
  type CustomOpKind,
  type OpaqueOpKind,
} from "./ops.ts";

/** What one attention layer needs from the KV cache. */
export interface KvLayerSpec {
  readonly cacheKey: string;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly slidingWindow: number | undefined;
}

/** One tensor a mamba-like layer keeps per sequence. */
export interface StateTensorSpec {
  /** unique within its layer, e.g. "conv", "ssm", "kv" */
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: "f32" | "bf16";
}

/**
 * What one mamba-like layer keeps per sequence, computed from the config (vLLM's
 * get_state_shape / get_state_dtype): fixed-size tensors updated in place every step, held in
 * the runtime's state slots (one slot per running sequence).
 */
export interface StateLayerSpec {
  /** names the layer's state; its custom op carries the same key */
  readonly stateKey: string;
  readonly tensors: readonly StateTensorSpec[];
}

export interface Graph {
  /** in topological order; node i has id i */
  readonly nodes: readonly Node[];
  readonly outputs: { readonly logits: ValueId };
  readonly kvLayers: readonly KvLayerSpec[];
  /** mamba-like layers' per-sequence state; empty for attention-only models */
  readonly stateLayers: readonly StateLayerSpec[];
}

export function assertNever(x: never, what = "value"): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
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
