/**
 * Lightning (linear) attention of MiniMax on the CPU (IR node `linear_attention`): per head h,
 * a running key-value state with exponential decay exp(−slope_h) per token, kept per sequence
 * and updated in place, so decode and chunked prefill continue where the last step stopped:
 *
 *   KV_t = exp(−slope_h) · KV_{t−1} + k_tᵀ v_t      // [D, D], rows by key dim
 *   o_t  = q_t · KV_t                               // [D]
 *
 * which is HF's blocked prefill (intra-block decay mask + inter-block state) and its decode
 * recurrence, written once. No softmax, no 1/√D scaling.
 *
 *   qkv [T, heads · 3D]: per head [q | k | v] (HF's reshape of qkv_proj to [.., heads, 3D])
 *   out [T, heads · D]
 *   state [heads, D, D] per sequence
 */

/** One sequence's part of a step: its rows and its KV state [heads, D, D] (a view into the pool). */
export interface LinearAttentionSeq {
  readonly start: number;
  readonly end: number;
  readonly state: Float32Array;
}

/** exp(−slope) per head, in f32 as PyTorch computes it from the f32 slopes. */
export function headDecays(slopes: readonly number[]): Float32Array {
  return Float32Array.from(slopes, (s) => Math.exp(-Math.fround(s)));
}

export function linearAttention(
  out: Float32Array,
  qkv: Float32Array,
  decays: Float32Array,
  seqs: readonly LinearAttentionSeq[],
  numHeads: number,
  D: number,
): Float32Array {
  const rowIn = numHeads * 3 * D;
  const rowOut = numHeads * D;
  for (const { start, end, state } of seqs) {
    for (let t = start; t < end; t++) {
      for (let h = 0; h < numHeads; h++) {
        const q = t * rowIn + h * 3 * D;
        const k = q + D;
        const v = q + 2 * D;
        const kv = state.subarray(h * D * D, (h + 1) * D * D);
        const decay = decays[h]!;
        for (let i = 0; i < D; i++) {
          const ki = qkv[k + i]!;
          for (let j = 0; j < D; j++) kv[i * D + j] = decay * kv[i * D + j]! + ki * qkv[v + j]!;
        }
        const o = t * rowOut + h * D;
        for (let j = 0; j < D; j++) out[o + j] = 0;
        for (let i = 0; i < D; i++) {
          const qi = qkv[q + i]!;
          for (let j = 0; j < D; j++) out[o + j] = out[o + j]! + qi * kv[i * D + j]!;
        }
      }
    }
  }
  return out;
}
