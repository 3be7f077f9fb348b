/**
 * The ranges a model config's values must fall in. Each bound is generous beyond any released
 * checkpoint, yet small enough that nothing sized from a value (layer lists, rotary tables, KV
 * pools) can exhaust memory or time before the checkpoint has been checked against the config.
 * A value outside its range is CONFIG_INVALID, naming the file, the field, the value and the range.
 */

/** [min, max], or (min, max] with `exclusiveMin`. NaN and ±Infinity never fall in a range. */
export interface ValueRange {
  readonly min: number;
  readonly max: number;
  readonly exclusiveMin?: boolean;
}

export function inRange(v: number, r: ValueRange): boolean {
  return (r.exclusiveMin === true ? v > r.min : v >= r.min) && v <= r.max;
}

/** "in [1, 4096]", "> 0 and finite", "finite": what a message says a value must be. */
export function describeRange(r: ValueRange): string {
  const lower = r.exclusiveMin === true ? `> ${r.min}` : `≥ ${r.min}`;
  if (r.max !== Number.MAX_VALUE) return `in ${r.exclusiveMin === true ? "(" : "["}${r.min}, ${r.max}]`;
  return r.min === -Number.MAX_VALUE ? "finite" : `${lower} and finite`;
}

/** Decoder layers (the largest released models have under 200). */
export const LAYERS = { min: 1, max: 4096 } as const satisfies ValueRange;
/** Hidden, intermediate and expert widths. */
export const WIDTH = { min: 1, max: 1 << 20 } as const satisfies ValueRange;
/** Attention (or SSM) heads and groups. */
export const HEADS = { min: 1, max: 1 << 14 } as const satisfies ValueRange;
export const HEAD_DIM = { min: 1, max: 1 << 14 } as const satisfies ValueRange;
export const VOCAB = { min: 1, max: 1 << 24 } as const satisfies ValueRange;
/**
 * Context length (max_position_embeddings, sliding windows): 16M covers the longest released
 * context (10M). Nothing is allocated from it eagerly; KV pools are sized from what a run needs.
 */
export const POSITIONS = { min: 1, max: 1 << 24 } as const satisfies ValueRange;
export const EXPERTS = { min: 1, max: 1 << 14 } as const satisfies ValueRange;
/** SSM state size (d_state). */
export const STATE_SIZE = { min: 1, max: 1 << 14 } as const satisfies ValueRange;
/** Causal conv kernel width; a kernel of 1 keeps no state, which the conv layers do not support. */
export const CONV_KERNEL = { min: 2, max: 1 << 10 } as const satisfies ValueRange;
/** Normalization epsilon. */
export const EPS = { min: 0, max: 1, exclusiveMin: true } as const satisfies ValueRange;
/** A finite positive number (rope theta, scaling factors). */
export const POSITIVE = { min: 0, max: Number.MAX_VALUE, exclusiveMin: true } as const satisfies ValueRange;
/** Any finite number (residual mixing factors). */
export const FINITE = { min: -Number.MAX_VALUE, max: Number.MAX_VALUE } as const satisfies ValueRange;
/** A small positive integer multiplier or period (expand, decoder_sparse_step, layer periods). */
export const FACTOR = { min: 1, max: 1 << 10 } as const satisfies ValueRange;

/** Valid indices of a list of `n` layers. */
export function layerIndex(n: number): ValueRange {
  return { min: 0, max: n - 1 };
}
