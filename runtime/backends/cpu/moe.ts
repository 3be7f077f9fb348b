/**
 * The fused-experts op on the CPU (IR node `moe`): route, then run each expert's gated MLP over
 * the rows routed to it with the native GEMM, and add the weighted results back per token.
 *
 *   logits  [T, E]  = x · routerᵀ
 *   route   [T, K]  = top-k experts of softmax(logits) and their weights (per the routing rule)
 *   per expert e with rows R_e (tokens that chose it):
 *     xe  [n_e, H]  = x[R_e]
 *     gu  [n_e, 2I] = xe · w13[e]ᵀ          // gate | up
 *     h   [n_e, I]  = act(gate) · up
 *     y   [n_e, H]  = h · w2[e]ᵀ
 *     out[R_e]     += weight · y
 *
 * Experts are visited in index order and each token's contributions added in that order, as HF's
 * reference loop does. The routing itself (routeTokens) is shared with the CUDA kernel's twin.
 */
import type { MoeActivation, MoeRouting, NodeOf } from "../../../compiler/ir.ts";
import type { WeightData } from "../../../models/dsl/parameter.ts";
import type { NativeKernels } from "./native.ts";

export interface MoeDims {
  readonly hidden: number; // H
  readonly numExperts: number; // E
  readonly topK: number; // K
  readonly intermediate: number; // I
  readonly routing: MoeRouting;
  readonly activation: MoeActivation;
}

export function moeDims(n: NodeOf<"moe">): MoeDims {
  const hidden = n.shape[n.shape.length - 1];
  if (typeof hidden !== "number") throw new Error(`moe node ${n.id} has a symbolic hidden size`);
  return { hidden, numExperts: n.numExperts, topK: n.topK, intermediate: n.intermediateSize, routing: n.routing, activation: n.activation };
}

/** A program buffer holding a weight, with its storage made explicit. */
export function weightData(b: Float32Array | Uint16Array | Int32Array): WeightData {
  if (b instanceof Float32Array) return { dtype: "f32", data: b };
  if (b instanceof Uint16Array) return { dtype: "bf16", data: b };
  throw new Error("an i32 buffer is not a weight");
}

/** Each token's chosen experts and their weights, [T, K] each, best expert first. */
export interface Routes {
  readonly experts: Int32Array;
  readonly weights: Float32Array;
}

/**
 * Top-k routing of router logits [T, E] in f32, as PyTorch computes it: softmax over the experts,
 * the k largest probabilities (ties to the lower index), renormalized to sum 1 when asked.
 */
export function routeTokens(logits: Float32Array, T: number, E: number, K: number, routing: MoeRouting): Routes {
  const experts = new Int32Array(T * K);
  const weights = new Float32Array(T * K);
  const p = new Float64Array(E);
  const taken = new Uint8Array(E);
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * E, (t + 1) * E);
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, row[e]!);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += p[e] = Math.exp(row[e]! - max);
    for (let e = 0; e < E; e++) p[e] = Math.fround(p[e]! / sum);
    taken.fill(0);
    let chosen = 0;
    for (let k = 0; k < K; k++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (taken[e] === 0 && (best < 0 || p[e]! > p[best]!)) best = e;
      taken[best] = 1;
      experts[t * K + k] = best;
      weights[t * K + k] = p[best]!;
      chosen += p[best]!;
    }
    if (routing === "softmax_topk_renorm") for (let k = 0; k < K; k++) weights[t * K + k] = weights[t * K + k]! / chosen;
  }
  return { experts, weights };
}

/** The gate's activation, by the node's `activation`. */
const ACTIVATIONS = {
  silu: (g: number): number => g / (1 + Math.exp(-g)),
} as const satisfies Record<MoeActivation, (g: number) => number>;

function gemm(native: NativeKernels, out: Float32Array, x: Float32Array, w: WeightData, wOffset: number, M: number, N: number, K: number): void {
  if (w.dtype === "f32") native.gemmF32(out, x, w.data.subarray(wOffset, wOffset + N * K), null, M, N, K);
  else native.gemmBf16(out, x, w.data.subarray(wOffset, wOffset + N * K), null, M, N, K);
}

/** out [T, H] = fused experts of x [T, H]; router [E, H], w13 [E, 2I, H], w2 [E, H, I]. */
export function fusedExperts(
  native: NativeKernels,
  out: Float32Array,
  x: Float32Array,
  router: WeightData,
  w13: WeightData,
  w2: WeightData,
  d: MoeDims,
): Float32Array {
  const { hidden: H, numExperts: E, topK: K, intermediate: I } = d;
  const T = x.length / H;
  out.fill(0);
  if (T === 0) return out;
  const logits = new Float32Array(T * E);
  gemm(native, logits, x, router, 0, T, E, H);
  const routes = routeTokens(logits, T, E, K, d.routing);

  // rows of each expert, in token order: a counting sort of the (token, k) pairs by expert
  const count = new Int32Array(E + 1);
  for (const e of routes.experts) count[e + 1]!++;
  for (let e = 0; e < E; e++) count[e + 1]! += count[e]!;
  const pairOf = new Int32Array(T * K); // pair index t·K + k, grouped by expert
  const fill = count.slice(0, E);
  for (let i = 0; i < T * K; i++) pairOf[fill[routes.experts[i]!]!++] = i;

  const maxRows = Math.max(...Array.from({ length: E }, (_, e) => count[e + 1]! - count[e]!));
  const xe = new Float32Array(maxRows * H);
  const gu = new Float32Array(maxRows * 2 * I);
  const h = new Float32Array(maxRows * I);
  const y = new Float32Array(maxRows * H);
  const act = ACTIVATIONS[d.activation];
  for (let e = 0; e < E; e++) {
    const n = count[e + 1]! - count[e]!;
    if (n === 0) continue;
    const pairs = pairOf.subarray(count[e], count[e + 1]);
    for (let r = 0; r < n; r++) {
      const t = Math.floor(pairs[r]! / K);
      xe.set(x.subarray(t * H, (t + 1) * H), r * H);
    }
    gemm(native, gu.subarray(0, n * 2 * I), xe.subarray(0, n * H), w13, e * 2 * I * H, n, 2 * I, H);
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < I; j++) {
        h[r * I + j] = act(gu[r * 2 * I + j]!) * gu[r * 2 * I + I + j]!;
      }
    }
    gemm(native, y.subarray(0, n * H), h.subarray(0, n * I), w2, e * H * I, n, H, I);
    for (let r = 0; r < n; r++) {
      const pair = pairs[r]!;
      const t = Math.floor(pair / K);
      const wgt = routes.weights[pair]!;
      for (let j = 0; j < H; j++) out[t * H + j] = out[t * H + j]! + wgt * y[r * H + j]!;
    }
  }
  return out;
}
