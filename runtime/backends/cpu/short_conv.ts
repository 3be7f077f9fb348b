/**
 * The short convolution of LFM2's gated conv layers on the CPU (IR node `short_conv`): a causal
 * depthwise convolution of kernel size L over each sequence's tokens, continuing from the
 * sequence's conv state, which holds its last L − 1 inputs and is updated in place.
 *
 *   in_s  = [state_s (L−1 rows); x[rows of s]]            // [L−1 + n_s, D]
 *   out[t, c] = bias[c] + Σ_j w[c, j] · in_s[t + j, c]    // j = 0..L−1, t local to s
 *   state_s ← the last L−1 rows of in_s
 *
 * A zeroed state is the zero padding of a sequence's first chunk, so a prompt prefilled in
 * chunks gives the same result as in one step.
 */

/** One sequence's part of a step: its rows and its conv state [L − 1, D] (a view into the pool). */
export interface ConvSeq {
  readonly start: number;
  readonly end: number;
  readonly state: Float32Array;
}

/** x, out [T, D]; weight [D, L] (PyTorch's Conv1d [D, 1, L] has the same memory); bias [D] or undefined. */
export function shortConv(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array | undefined,
  seqs: readonly ConvSeq[],
  D: number,
  L: number,
): Float32Array {
  const keep = L - 1;
  for (const { start, end, state } of seqs) {
    const n = end - start;
    // the window's rows, oldest first: state rows then the new inputs
    const row = (i: number): Float32Array => (i < keep ? state.subarray(i * D, (i + 1) * D) : x.subarray((start + i - keep) * D, (start + i - keep + 1) * D));
    for (let t = 0; t < n; t++) {
      const o = (start + t) * D;
      for (let c = 0; c < D; c++) out[o + c] = bias === undefined ? 0 : bias[c]!;
      for (let j = 0; j < L; j++) {
        const r = row(t + j);
        for (let c = 0; c < D; c++) out[o + c] = out[o + c]! + weight[c * L + j]! * r[c]!;
      }
    }
    // the new state: the last L − 1 rows of [state; x_s], read before any is overwritten
    const next = new Float32Array(keep * D);
    for (let i = 0; i < keep; i++) next.set(row(n + i), i * D);
    state.set(next);
  }
  return out;
}
