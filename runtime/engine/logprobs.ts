/**
 * Log-probabilities for a position: the chosen token's and the top N, with ranks, computed from
 * the raw model logits (vLLM V1's default "raw_logprobs": before penalties, bias and temperature).
 * Rank is 1-based: the number of tokens at least as likely as this one.
 */

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
  readonly rank: number;
}

export interface PositionLogprobs {
  /** the sampled token (or, for prompt logprobs, the prompt's actual next token) */
  readonly chosen: TokenLogprob;
  /** the N most likely tokens, ranks 1..N (may include the chosen one) */
  readonly top: readonly TokenLogprob[];
}

/** log_softmax(row) in f64. */
export function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]! - lse;
  return out;
}

export function positionLogprobs(row: Float32Array, chosen: number, topN: number): PositionLogprobs {
  const lp = logSoftmax(row);
  const c = lp[chosen]!;
  let rank = 0;
  for (let i = 0; i < lp.length; i++) if (lp[i]! >= c) rank++;
  return { chosen: { tokenId: chosen, logprob: c, rank }, top: topLogprobs(lp, topN) };
}

/** The n largest entries, most likely first (lower id first on ties), in one pass with a small sorted list. */
function topLogprobs(lp: Float64Array, n: number): TokenLogprob[] {
  const best: number[] = []; // token ids, sorted by descending lp
  if (n > 0) {
    for (let i = 0; i < lp.length; i++) {
      const v = lp[i]!;
      if (best.length === n && v <= lp[best[n - 1]!]!) continue;
      let at = best.length;
      while (at > 0 && lp[best[at - 1]!]! < v) at--;
      best.splice(at, 0, i);
      if (best.length > n) best.pop();
    }
  }
  return best.map((tokenId, i) => ({ tokenId, logprob: lp[tokenId]!, rank: i + 1 }));
}
