/**
 * Sampling on the device: what one row of logits needs (its sampling parameters, the sparse
 * logit adjustments and the uniform draw) and its packing into the i32 words the CUDA kernel
 * kiln_sample_rows reads (kernels/cuda/sampling.cu documents the layout). The result equals
 * runtime/engine/sampler.ts's sampleToken for the same draw.
 */
import { hasPenalties } from "./logits_processors.ts";
import type { SamplingContext } from "./sampler.ts";
import { isGreedy } from "./sampling_params.ts";

/** One token the adjustments touch, in sampler.ts's order: mask, bias, then penalties. */
export interface TokenAdjustment {
  readonly id: number;
  /** min_tokens not reached and a stop token: -inf */
  readonly masked: boolean;
  readonly bias: number | undefined;
  /** in the prompt (repetition penalty only) */
  readonly inPrompt: boolean;
  /** times in the output so far (0 when no penalty applies) */
  readonly count: number;
}

export interface DeviceSamplingRow {
  readonly greedy: boolean;
  readonly temperature: number;
  /** 0: no top_k */
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  readonly frequencyPenalty: number;
  readonly presencePenalty: number;
  /** distinct token ids */
  readonly adjustments: readonly TokenAdjustment[];
  /** the uniform in [0, 1) the draw uses (0 when greedy) */
  readonly u: number;
  /** a structured-output constraint's allowed tokens (bit set = allowed), applied first */
  readonly mask: Int32Array | undefined;
}

export const SAMPLING_HEADER_WORDS = 20;
export const SAMPLING_ENTRY_WORDS = 5;

interface MutableAdjustment {
  id: number;
  masked: boolean;
  bias: number | undefined;
  inPrompt: boolean;
  count: number;
}

/**
 * The row sampleToken would sample with, drawing the uniform from the sequence's generator
 * exactly when sampleToken would (not for greedy rows).
 */
export function samplingRow(ctx: SamplingContext): DeviceSamplingRow {
  const p = ctx.params;
  const masking = ctx.numOutputTokens < p.minTokens;
  const penalties = hasPenalties(p);
  // most rows adjust nothing: no map, no closures (this runs for every row of every step)
  const adjustments = masking || penalties || p.logitBias.size > 0 ? rowAdjustments(ctx, masking, penalties) : NO_ADJUSTMENTS;
  const greedy = isGreedy(p);
  return {
    greedy,
    temperature: p.temperature,
    topK: Math.min(p.topK ?? 0, 2 ** 31 - 1),
    topP: p.topP,
    minP: p.minP,
    repetitionPenalty: p.repetitionPenalty,
    frequencyPenalty: p.frequencyPenalty,
    presencePenalty: p.presencePenalty,
    adjustments,
    // the mask before the draw: the host fills it when it would mask the row (sampleToken)
    mask: ctx.constraint?.deviceBitmask?.(),
    u: greedy ? 0 : ctx.rng.next(),
  };
}

const NO_ADJUSTMENTS: readonly MutableAdjustment[] = [];

function rowAdjustments(ctx: SamplingContext, masking: boolean, penalties: boolean): MutableAdjustment[] {
  const p = ctx.params;
  const touched = new Map<number, MutableAdjustment>();
  const at = (id: number): MutableAdjustment => {
    let a = touched.get(id);
    if (a === undefined) touched.set(id, (a = { id, masked: false, bias: undefined, inPrompt: false, count: 0 }));
    return a;
  };
  if (masking) for (const id of ctx.stopTokenIds) at(id).masked = true;
  for (const [id, b] of p.logitBias) at(id).bias = b;
  if (penalties) {
    if (p.repetitionPenalty !== 1) for (const id of ctx.promptTokens()) at(id).inPrompt = true;
    for (const [id, count] of ctx.outputCounts) at(id).count = count;
  }
  return [...touched.values()];
}

/** The rows as kiln_sample_rows's params words; adjustments outside [0, vocab) are dropped (the host ignores them too). */
export function packSamplingRows(rows: readonly DeviceSamplingRow[], vocab: number): Int32Array {
  const inRange = rows.map((r) => r.adjustments.filter((a) => Number.isInteger(a.id) && a.id >= 0 && a.id < vocab));
  const maskWords = Math.ceil(vocab / 32);
  const words =
    rows.length * SAMPLING_HEADER_WORDS +
    inRange.reduce((n, a) => n + a.length * SAMPLING_ENTRY_WORDS, 0) +
    rows.reduce((n, r) => n + (r.mask === undefined ? 0 : maskWords), 0);
  const out = new Int32Array(words);
  const view = new DataView(out.buffer);
  const f64 = (word: number, v: number): void => view.setFloat64(word * 4, v, true);
  let entry = rows.length * SAMPLING_HEADER_WORDS;
  rows.forEach((r, s) => {
    const h = s * SAMPLING_HEADER_WORDS;
    const adj = inRange[s]!;
    out[h] = entry;
    out[h + 1] = adj.length;
    const penalties = r.frequencyPenalty !== 0 || r.presencePenalty !== 0;
    out[h + 2] = (r.greedy ? 1 : 0) | (r.repetitionPenalty !== 1 ? 2 : 0) | (penalties ? 4 : 0) | (r.mask !== undefined ? 8 : 0);
    out[h + 3] = r.topK;
    f64(h + 4, r.temperature);
    f64(h + 6, r.minP);
    f64(h + 8, r.topP);
    f64(h + 10, r.repetitionPenalty);
    f64(h + 12, r.frequencyPenalty);
    f64(h + 14, r.presencePenalty);
    f64(h + 16, r.u);
    for (const a of adj) {
      out[entry] = a.id;
      out[entry + 1] = a.count;
      out[entry + 2] = (a.masked ? 1 : 0) | (a.inPrompt ? 2 : 0) | (a.bias !== undefined ? 4 : 0);
      f64(entry + 3, a.bias ?? 0);
      entry += SAMPLING_ENTRY_WORDS;
    }
  });
  // the masks after every entry, each ceil(vocab / 32) words; words past the mask are disallowed
  rows.forEach((r, s) => {
    if (r.mask === undefined) return;
    out[s * SAMPLING_HEADER_WORDS + 18] = entry;
    out.set(r.mask.subarray(0, Math.min(r.mask.length, maskWords)), entry);
    entry += maskWords;
  });
  return out;
}
