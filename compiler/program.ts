/**
 * A compiled program: what a backend executes for one step, in order. Self-describing, so a
 * backend needs nothing else: every buffer with its role, storage type and symbolic shape;
 * every kernel in lowered form (rendered to C or CUDA C from it); every step with the buffers
 * it binds; and the pieces for piecewise CUDA-graph capture.
 *
 *   steps:   kernel  embedding_rms_norm_f32  rows T   args [input_ids, embed table, w, y0, y1]
 *            gemm    x [T, 64] · w[192, 64]ᵀ → [T, 192]
 *            kernel  rope_kv_write_f32       rows T   args [qkv, positions, ..., k_cache, v_cache]
 *            attention (custom op: reads q and the caches)
 *            ...
 *
 * A kernel takes `rows` (the size of its row space this step) and then its params in order;
 * it runs one row per block (CUDA) or per loop iteration (C).
 */
import type { Dim, InputName, KvLayerSpec, MoeActivation, MoeRouting, StateLayerSpec, ValueId } from "./ir.ts";
import type { LoweredKernel, ParamShape } from "./kernel_ir.ts";
import type { Piece } from "./passes/partition.ts";
import type { Dtype, FloatDtype, KvDtype } from "./dtype.ts";

/** Per-step i32 inputs: the graph's inputs plus the KV slot of each token. */
export type ProgramInput = InputName | "slot_mapping";

export type BufferRole =
  | { readonly kind: "input"; readonly name: ProgramInput }
  | { readonly kind: "param"; readonly name: string }
  /** the value of an IR node, produced by one step */
  | { readonly kind: "activation"; readonly node: ValueId }
  | { readonly kind: "kv_cache"; readonly cacheKey: string; readonly which: "k" | "v" };

export interface BufferSpec {
  readonly id: number;
  readonly role: BufferRole;
  readonly elem: Dtype;
  readonly shape: ParamShape;
}

export type Step =
  | {
      readonly kind: "kernel";
      readonly kernel: string;
      readonly rows: Dim;
      /** buffer ids, parallel to the kernel's params */
      readonly args: readonly number[];
      /** the IR nodes it computes */
      readonly nodes: readonly ValueId[];
    }
  | {
      /** out [rows, n] = x [rows, k] · w [n, k]ᵀ (+ bias [n]); cuBLASLt on the GPU */
      readonly kind: "gemm";
      readonly node: ValueId;
      readonly x: number;
      readonly w: number;
      readonly bias: number | undefined;
      readonly out: number;
      readonly rows: Dim;
      readonly n: number;
      readonly k: number;
    }
  | {
      /** paged attention over the caches, which an earlier kernel already wrote this step's k/v into */
      readonly kind: "attention";
      readonly node: ValueId;
      readonly q: number;
      readonly out: number;
      readonly kCache: number;
      readonly vCache: number;
      readonly cacheKey: string;
      readonly numHeads: number;
      readonly numKvHeads: number;
      readonly headDim: number;
      readonly scale: number;
      readonly slidingWindow: number | undefined;
      readonly softcap: number | undefined;
    }
  | {
      /** fused experts (IR `moe`): out [rows, hidden] from x, router [E, H], w13 [E, 2I, H], w2 [E, H, I] */
      readonly kind: "moe";
      readonly node: ValueId;
      readonly x: number;
      readonly router: number;
      readonly w13: number;
      readonly w2: number;
      readonly out: number;
      readonly rows: Dim;
      readonly hidden: number;
      readonly numExperts: number;
      readonly topK: number;
      readonly intermediateSize: number;
      readonly routing: MoeRouting;
      readonly activation: MoeActivation;
    }
  | {
      /** causal depthwise conv over x [rows, dim], continuing from each sequence's conv state */
      readonly kind: "short_conv";
      readonly node: ValueId;
      readonly x: number;
      readonly weight: number; // [dim, 1, kernelSize]
      readonly bias: number | undefined;
      readonly out: number;
      readonly stateKey: string;
      readonly dim: number;
      readonly kernelSize: number;
    }
  | {
      /** lightning attention over qkv [rows, heads · 3 · headDim], continuing from each sequence's KV state */
      readonly kind: "linear_attention";
      readonly node: ValueId;
      readonly qkv: number;
      readonly out: number;
      readonly stateKey: string;
      readonly numHeads: number;
      readonly headDim: number;
      readonly slopes: readonly number[];
    }
  | {
      /** Mamba-1 selective scan (IR `selective_scan`), continuing from each sequence's SSM state [dim, stateSize] */
      readonly kind: "selective_scan";
      readonly node: ValueId;
      readonly u: number;
      readonly delta: number;
      readonly aLog: number;
      readonly b: number;
      readonly c: number;
      readonly d: number;
      readonly z: number;
      readonly out: number;
      readonly stateKey: string;
      readonly dim: number;
      readonly stateSize: number;
    }
  | {
      /** Mamba-2 SSD scan (IR `ssd_scan`), continuing from each sequence's SSM state [heads, headDim, stateSize] */
      readonly kind: "ssd_scan";
      readonly node: ValueId;
      readonly x: number;
      readonly dt: number;
      readonly dtBias: number;
      readonly aLog: number;
      readonly b: number;
      readonly c: number;
      readonly d: number;
      readonly out: number;
      readonly stateKey: string;
      readonly numHeads: number;
      readonly headDim: number;
      readonly numGroups: number;
      readonly stateSize: number;
      readonly dtMin: number;
      readonly dtMax: number | undefined;
    };

/** A per-step input whose entries index something and must stay below a bound. */
export interface InputBound {
  readonly input: ProgramInput;
  readonly below: Dim;
  readonly what: string;
}

export type Target = { readonly kind: "cpu" } | { readonly kind: "cuda"; readonly arch: string };

export interface ProgramOptions {
  readonly target: Target;
  /**
   * storage of the weight matrices (GEMM weights and embedding tables) on CUDA; other parameters
   * (norms, biases, convolution and scan weights) and every activation are f32 there, the logits
   * too. On the CPU activations and caches are f32 and weights keep the storage the graph's
   * params declare.
   */
  readonly dtype: FloatDtype;
  /** storage of the KV cache on CUDA when it differs from `dtype` (vLLM's kv_cache_dtype; fp8 is e4m3, scales 1.0) */
  readonly kvDtype?: KvDtype;
  /** decode batch sizes CUDA graphs are captured for; empty: none (vLLM's enforce_eager) */
  readonly captureSizes?: readonly number[];
}

export interface Program {
  readonly options: ProgramOptions;
  readonly buffers: readonly BufferSpec[];
  readonly kernels: readonly LoweredKernel[];
  readonly steps: readonly Step[];
  readonly pieces: readonly Piece[];
  /** buffer of the logits [S, vocab], f32 */
  readonly logits: number;
  readonly kvLayers: readonly KvLayerSpec[];
  /** mamba-like layers' per-sequence state, held in the backend's state slots */
  readonly stateLayers: readonly StateLayerSpec[];
  readonly inputBounds: readonly InputBound[];
}

/** How the program stores each parameter, by name (its param buffers' element types). */
export function paramDtypes(program: Program): Map<string, FloatDtype> {
  const out = new Map<string, FloatDtype>();
  for (const b of program.buffers) if (b.role.kind === "param" && b.elem !== "i32" && b.elem !== "fp8") out.set(b.role.name, b.elem);
  return out;
}

export function formatTarget(t: Target): string {
  return t.kind === "cpu" ? "cpu" : `cuda:${t.arch}`;
}
