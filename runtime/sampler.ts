/**
 * Token sampling from one row of logits: greedy at temperature 0, else temperature, top-k,
 * top-p and min-p filtering, then a draw from the request's own generator.
 */
import type { Rng } from "./rng.ts";

export interface SamplingParams {
  /** 0 means greedy */
  readonly temperature: number;
  /** keep the smallest set of tokens whose probability reaches top_p (1 = off) */
  readonly topP: number;
  /** keep the k most likely tokens (undefined = off) */
  readonly topK: number | undefined;
  /** drop tokens below min_p × the best token's probability (0 = off) */
  readonly minP: number;
}

export const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: undefined, minP: 0 };

export function argmax(row: Float32Array): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < row.length; i++) {
    if (row[i]! > bestV) {
      bestV = row[i]!;
      best = i;
    }
  }
  return best;
}

/** Probabilities after temperature and filtering, as (token, prob) pairs sorted by prob desc. */
export function filteredDistribution(row: Float32Array, p: SamplingParams): { ids: number[]; probs: number[] } {
  const V = row.length;
  const ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
  const max = row[ids[0]!]!;
  let probs = ids.map((i) => Math.exp((row[i]! - max) / p.temperature));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((x) => x / sum);
  let keep = V;
  if (p.topK !== undefined && p.topK > 0) keep = Math.min(keep, p.topK);
  if (p.topP < 1) {
    let acc = 0;
    for (let i = 0; i < keep; i++) {
      acc += probs[i]!;
      if (acc >= p.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.minP > 0) {
    const floor = p.minP * probs[0]!;
    let n = 0;
    while (n < keep && probs[n]! >= floor) n++;
    keep = Math.max(1, n);
  }
  const keptIds = ids.slice(0, keep);
  const kept = probs.slice(0, keep);
  sum = kept.reduce((a, b) => a + b, 0);
  return { ids: keptIds, probs: kept.map((x) => x / sum) };
}

export function sample(row: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature === 0) return argmax(row);
  const { ids, probs } = filteredDistribution(row, p);
  const u = rng.next();
  let acc = 0;
  for (let i = 0; i < ids.length; i++) {
    acc += probs[i]!;
    if (u < acc) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}
