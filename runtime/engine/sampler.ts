/**
 * Drawing one token from one row of logits, as vLLM V1's sampler does: the logit adjustments
 * (logits_processors.ts), then greedy argmax at temperature 0, else temperature → min_p → top_k →
 * top_p → a draw from the sequence's own generator. A row's result depends only on the row and
 * the sequence's own state, never on the rest of the batch, so seeded requests reproduce exactly.
 *
 * This runs once per generated token in JS, so it avoids sorting the vocabulary: top-k is a
 * quickselect, and top-p sorts only the smallest head of the distribution that holds its mass.
 * The CUDA backend's kiln_sample_rows (kernels/cuda/sampling.cu) samples the same way on the device.
 */
import { KilnError } from "./errors.ts";
import type { Rng } from "./rng.ts";
import { applyLogitBias, applyMinTokens, applyPenalties, hasPenalties, type PenaltyContext } from "./logits_processors.ts";
import { isGreedy, type SamplingParams } from "./sampling_params.ts";
import type { TokenConstraint } from "./token_constraint.ts";

/** The tokens left after filtering and their renormalised probabilities. */
export interface Distribution {
  readonly ids: readonly number[];
  readonly probs: readonly number[];
}

export type FilterParams = Pick<SamplingParams, "temperature" | "topK" | "topP" | "minP">;

/** Kept token ids with their unnormalised weights [n], in draw order. */
interface Filtered {
  readonly ids: Int32Array;
  readonly weights: Float64Array;
  readonly total: number;
}

/** Index of the largest logit; the lowest id wins ties (as torch.argmax). */
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

/**
 * softmax(row / T), then: min_p keeps p ≥ minP · p_max; top_k keeps the k most likely (ties with
 * the k-th included, as vLLM's threshold mask); top_p keeps, in order of probability, every token
 * whose more likely predecessors hold less than topP of the mass left. Each filter renormalises
 * over what the previous one kept. Tokens of probability 0 (-inf logits) are never kept.
 */
export function filterDistribution(row: Float32Array, p: FilterParams): Distribution {
  const f = filter(row, p);
  return { ids: Array.from(f.ids), probs: Array.from(f.weights, (w) => w / f.total) };
}

/** The token at cumulative probability u ∈ [0, 1) in the distribution's order. */
export function drawToken(d: Distribution, u: number): number {
  let acc = 0;
  for (let i = 0; i < d.ids.length; i++) {
    acc += d.probs[i]!;
    if (u < acc) return d.ids[i]!;
  }
  return d.ids[d.ids.length - 1]!;
}

/** Filters the row and draws at cumulative probability u ∈ [0, 1). */
export function drawFromLogits(row: Float32Array, p: FilterParams, u: number): number {
  const f = filter(row, p);
  const target = u * f.total;
  let acc = 0;
  for (let i = 0; i < f.ids.length; i++) {
    acc += f.weights[i]!;
    if (target < acc) return f.ids[i]!;
  }
  return f.ids[f.ids.length - 1]!;
}

/** What sampling one sequence's next token looks at besides the logits. */
export interface SamplingContext extends PenaltyContext {
  readonly params: SamplingParams;
  /** EOS (unless ignoreEos) and the request's stop token ids */
  readonly stopTokenIds: ReadonlySet<number>;
  readonly numOutputTokens: number;
  readonly rng: Rng;
  /** a structured-output constraint: it masks the row before anything else */
  readonly constraint?: TokenConstraint | undefined;
}

/** Samples from a raw logits row [vocab]; the row itself is left untouched. */
export function sampleToken(raw: Float32Array, ctx: SamplingContext): number {
  const p = ctx.params;
  const row = Float32Array.from(raw);
  ctx.constraint?.maskLogits(row);
  applyMinTokens(row, ctx.stopTokenIds, ctx.numOutputTokens, p.minTokens);
  if (p.logitBias.size > 0) applyLogitBias(row, p.logitBias);
  if (hasPenalties(p)) applyPenalties(row, p, ctx);
  checkSampleable(row);
  if (isGreedy(p)) return argmax(row);
  return drawFromLogits(row, p, ctx.rng.next());
}

/**
 * A row with a NaN or +inf logit has no distribution to draw from (softmax is NaN everywhere):
 * the model produced it, so the request fails with SAMPLING_FAILED rather than getting a
 * made-up token. -inf (a masked token) is fine.
 */
function checkSampleable(row: Float32Array): void {
  for (let i = 0; i < row.length; i++) {
    const x = row[i]!;
    if (x !== x || x === Infinity) throw new KilnError("SAMPLING_FAILED", `the logits hold ${x} at token ${i}: there is no distribution to sample from`);
  }
}

function filter(row: Float32Array, p: FilterParams): Filtered {
  const V = row.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity) return { ids: Int32Array.of(argmax(row)), weights: Float64Array.of(1), total: 1 };
  const e = new Float64Array(V); // unnormalised probabilities, e[argmax] = 1
  for (let i = 0; i < V; i++) e[i] = Math.exp((row[i]! - max) / p.temperature);
  // min_p relative to the best token: p_i ≥ minP · p_max ⇔ e_i ≥ minP, since e_max = 1
  const all = new Int32Array(V);
  let n = 0;
  for (let i = 0; i < V; i++) if (e[i]! > 0 && e[i]! >= p.minP) all[n++] = i;
  let ids: Int32Array = all.subarray(0, n);
  if (p.topK !== undefined && p.topK >= 1 && p.topK < ids.length) ids = atLeast(ids, e, kthLargest(gather(ids, e), p.topK));
  if (p.topP < 1) ids = nucleus(ids, e, p.topP);
  const weights = gather(ids, e);
  let total = 0;
  for (const w of weights) total += w;
  return { ids, weights, total };
}

/**
 * Top-p over `ids`: the most likely tokens, sorted, while the mass before each is under topP of
 * the whole. Only a head of the distribution is sorted: the k most likely for growing k, until
 * that head alone holds the needed mass.
 */
function nucleus(ids: Int32Array, e: Float64Array, topP: number): Int32Array {
  let mass = 0;
  for (const i of ids) mass += e[i]!;
  const need = topP * mass;
  for (let k = 64; ; k *= 4) {
    const head = k >= ids.length ? Int32Array.from(ids) : atLeast(ids, e, kthLargest(gather(ids, e), k));
    let headMass = 0;
    for (const i of head) headMass += e[i]!;
    if (head.length < ids.length && headMass < need) continue;
    head.sort((a, b) => e[b]! - e[a]! || a - b);
    let before = 0;
    let keep = 0;
    while (keep < head.length && before < need) before += e[head[keep++]!]!;
    return head.subarray(0, Math.max(1, keep));
  }
}

function gather(ids: Int32Array, e: Float64Array): Float64Array {
  const out = new Float64Array(ids.length);
  for (let j = 0; j < ids.length; j++) out[j] = e[ids[j]!]!;
  return out;
}

/** The ids whose weight is at least `threshold`, in their order. */
function atLeast(ids: Int32Array, e: Float64Array, threshold: number): Int32Array {
  return ids.filter((i) => e[i]! >= threshold);
}

/** k-th largest of xs (1 ≤ k ≤ xs.length) by quickselect, reordering xs. */
function kthLargest(xs: Float64Array, k: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = xs[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (xs[i]! > pivot) i++;
      while (xs[j]! < pivot) j--;
      if (i <= j) {
        const t = xs[i]!;
        xs[i] = xs[j]!;
        xs[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return xs[target]!;
}
