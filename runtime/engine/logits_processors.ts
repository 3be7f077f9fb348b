/**
 * The logit adjustments applied before sampling, in vLLM V1's order: min_tokens masking, then
 * logit_bias, then the repetition / frequency / presence penalties. Each works in place on one
 * row of logits [vocab] (f32, as vLLM computes them). Greedy decoding takes the argmax after them.
 */
import type { SamplingParams } from "./sampling_params.ts";

/** While fewer than minTokens tokens are out, the stop tokens (EOS included) cannot be drawn. */
export function applyMinTokens(row: Float32Array, stopTokenIds: ReadonlySet<number>, numOutput: number, minTokens: number): void {
  if (numOutput >= minTokens) return;
  for (const id of stopTokenIds) row[id] = -Infinity;
}

export function applyLogitBias(row: Float32Array, bias: ReadonlyMap<number, number>): void {
  for (const [id, b] of bias) row[id] = row[id]! + b;
}

/** What the penalties look at: the prompt's distinct tokens and the output's token counts. */
export interface PenaltyContext {
  readonly promptTokens: () => ReadonlySet<number>;
  readonly outputCounts: ReadonlyMap<number, number>;
}

export function hasPenalties(p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
}

/** The largest finite f32. */
export const F32_MAX = 3.4028234663852886e38;

/**
 * A penalised finite logit stays finite: a tiny repetition penalty (1e-300) would otherwise divide
 * it to +inf, and softmax over an infinite logit is NaN. An infinite logit (a masked token) keeps
 * its value. The CUDA sampler holds values the same way.
 */
function holdFinite(x: number, y: number): number {
  if (!Number.isFinite(x) || Math.abs(y) <= F32_MAX) return y;
  return y > 0 ? F32_MAX : -F32_MAX;
}

/**
 * repetition (HF / vLLM, CTRL paper): a token seen in prompt or output has a positive logit
 * divided by the penalty, a negative one multiplied; frequency: logit -= penalty × count in the
 * output; presence: logit -= penalty once if the token is in the output (OpenAI's definition).
 */
export function applyPenalties(row: Float32Array, p: SamplingParams, ctx: PenaltyContext): void {
  if (p.repetitionPenalty !== 1) {
    const r = p.repetitionPenalty;
    const penalise = (id: number): void => {
      const x = row[id]!;
      row[id] = holdFinite(x, x > 0 ? x / r : x * r);
    };
    const prompt = ctx.promptTokens();
    for (const id of prompt) penalise(id);
    for (const id of ctx.outputCounts.keys()) if (!prompt.has(id)) penalise(id);
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    for (const [id, count] of ctx.outputCounts) {
      // two f32 subtractions, as vLLM applies them
      row[id] = row[id]! - p.frequencyPenalty * count;
      row[id] = row[id] - p.presencePenalty;
    }
  }
}
