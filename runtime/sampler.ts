/**
 * Token sampling from one row of logits for the single-sequence path (`kiln run`, golden
 * checks): greedy at temperature 0, else temperature, min-p, top-k and top-p, then a draw from
 * the request's own generator. The semantics are the engine's (runtime/engine/sampler.ts).
 */
import { argmax, drawFromLogits, filterDistribution } from "./engine/sampler.ts";
import { isGreedy } from "./engine/sampling_params.ts";
import type { Rng } from "./rng.ts";

export { argmax };

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

/** The tokens sampling may pick and their probabilities after temperature and filtering. */
export function filteredDistribution(row: Float32Array, p: SamplingParams): { ids: number[]; probs: number[] } {
  const d = filterDistribution(row, p);
  return { ids: [...d.ids], probs: [...d.probs] };
}

export function sample(row: Float32Array, p: SamplingParams, rng: Rng): number {
  if (isGreedy(p)) return argmax(row);
  return drawFromLogits(row, p, rng.next());
}
