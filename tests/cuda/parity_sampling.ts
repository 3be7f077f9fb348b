/**
 * Parity cases of the device sampler (kiln_sample_rows): random rows of awkward vocab sizes, each
 * feature on and off, with ties and -inf entries, against its CPU twin (cpu_twins_sampling.ts)
 * and against the host sampler (sampleToken) for the same uniform. Token ids must be equal.
 *
 * The kernel sums in another order than the host, so the two can differ only where a cumulative
 * sum lands within rounding of a cut (the top_p mass, the draw's target); random f32 logits and
 * uniforms make that improbable, and the tie groups here are cut by id on both sides alike.
 */
import { packSamplingRows, samplingRow } from "../../runtime/engine/device_sampling.ts";
import type { Rng } from "../../runtime/engine/rng.ts";
import { sampleToken, type SamplingContext } from "../../runtime/engine/sampler.ts";
import { SAMPLING_DEFAULTS, type SamplingParams } from "../../runtime/engine/sampling_params.ts";
import type { TokenConstraint } from "../../runtime/engine/token_constraint.ts";
import { sampleRows } from "./cpu_twins_sampling.ts";
import { compare, randomF32, rng, type ParityCase, type ParityResult } from "./parity_support.ts";

export interface SamplingBatch {
  readonly V: number;
  readonly logits: Float32Array;
  /** one per row; each draws a fixed uniform */
  readonly contexts: readonly SamplingContext[];
}

/** A context whose generator always returns u. */
function context(params: Partial<SamplingParams>, r: () => number, V: number, u: number, numOutputTokens: number): SamplingContext {
  const p: SamplingParams = { ...SAMPLING_DEFAULTS, ...params };
  const prompt = new Set(Array.from({ length: 6 }, () => Math.floor(r() * V)));
  const outputCounts = new Map<number, number>();
  for (let k = 0; k < numOutputTokens; k++) {
    const id = Math.floor(r() * V);
    outputCounts.set(id, (outputCounts.get(id) ?? 0) + 1);
  }
  return {
    params: p,
    stopTokenIds: new Set([0, Math.floor(r() * V), V - 1]),
    numOutputTokens,
    rng: { next: () => u } as unknown as Rng,
    promptTokens: () => prompt,
    outputCounts,
  };
}

/** The parameter mixes every batch runs: each feature alone, all together, greedy. */
function paramMixes(V: number, r: () => number): Partial<SamplingParams>[] {
  const bias = new Map<number, number>([
    [Math.floor(r() * V), 3.5],
    [Math.floor(r() * V), -2.25],
    [V - 2, 0.1],
  ]);
  return [
    { temperature: 0 },
    { temperature: 0, repetitionPenalty: 1.3, logitBias: bias, minTokens: 4 },
    { temperature: 1 },
    { temperature: 0.7 },
    { temperature: 0.8, topK: 5 },
    { temperature: 1.2, topK: Math.max(1, Math.floor(V / 3)) },
    { temperature: 0.9, topP: 0.8 },
    { temperature: 1, topP: 0.35 },
    { temperature: 1, minP: 0.2 },
    { temperature: 0.6, logitBias: bias },
    { temperature: 1, repetitionPenalty: 1.5, presencePenalty: 0.4, frequencyPenalty: 0.3 },
    { temperature: 1, minTokens: 10 },
    { temperature: 0.5, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, frequencyPenalty: 0.2, logitBias: bias, minTokens: 3 },
    { temperature: 1.5, topK: 1 },
    { temperature: 2, topP: 0.999 },
    // a hostile penalty: penalised logits are held at the largest f32, never +inf
    { temperature: 0, repetitionPenalty: 1e-300 },
    { temperature: 0.8, topP: 0.9, repetitionPenalty: 1e-300 },
  ];
}

/** A mask over ~1/3 of V's tokens (bit set = allowed), `keep` always allowed; words past V's last bit are noise. */
function randomMask(V: number, r: () => number, keep: number): Int32Array {
  const mask = new Int32Array(Math.ceil(V / 32));
  for (let w = 0; w < mask.length; w++) mask[w] = (Math.floor(r() * 2 ** 32) & Math.floor(r() * 2 ** 32)) | 0;
  mask[keep >> 5]! |= 1 << (keep & 31);
  return mask;
}

/** A token constraint that only masks (the engine's accept and stop are not exercised here). */
function maskConstraint(mask: Int32Array): TokenConstraint {
  return {
    maskLogits: (row) => {
      for (let i = 0; i < row.length; i++) if (!((mask[i >> 5]! >>> (i & 31)) & 1)) row[i] = -Infinity;
    },
    deviceBitmask: () => mask,
    acceptToken: () => true,
    terminated: false,
    dispose: () => {},
  };
}

/** Rows of vocab V: every parameter mix at a few uniforms, with ties, -inf entries, and a row of nothing but -inf. */
export function samplingBatch(V: number, seed: number): SamplingBatch {
  const r = rng(seed);
  const contexts: SamplingContext[] = [];
  const rows: Float32Array[] = [];
  for (const mix of paramMixes(V, r)) {
    for (const u of [r(), r(), 0.999999]) {
      const row = randomF32(V, r, 4);
      // a tie group at the top and one in the middle, and -inf entries
      const top = Math.floor(r() * V);
      row[top] = 6;
      row[(top + 7) % V] = 6;
      row[(top + 3) % V] = 6;
      for (let k = 0; k < 5; k++) row[Math.floor(r() * V)] = 1.5;
      for (let k = 0; k < 4; k++) row[Math.floor(r() * V)] = -Infinity;
      rows.push(row);
      const ctx = context(mix, r, V, u, Math.floor(r() * 8));
      // every third row also carries a structured-output mask over about a third of the tokens
      contexts.push(contexts.length % 3 === 2 ? { ...ctx, constraint: maskConstraint(randomMask(V, r, top)) } : ctx);
    }
  }
  rows.push(new Float32Array(V).fill(-Infinity));
  contexts.push(context({ temperature: 1, topP: 0.5 }, r, V, 0.5, 0));
  const logits = new Float32Array(rows.length * V);
  rows.forEach((row, s) => logits.set(row, s * V));
  return { V, logits, contexts };
}

/** The host sampler's picks. */
export function hostPicks(b: SamplingBatch): Int32Array {
  return Int32Array.from(b.contexts, (ctx, s) => sampleToken(b.logits.subarray(s * b.V, (s + 1) * b.V), ctx));
}

export function samplingParams(b: SamplingBatch): Int32Array {
  return packSamplingRows(
    b.contexts.map((ctx) => samplingRow(ctx)),
    b.V,
  );
}

export function samplingCases(): ParityCase[] {
  return [77, 1000, 4099].map((V, k): ParityCase => {
    const name = `sample rows V=${V} (penalties, bias, min_tokens, top-k/p, min-p, ties, -inf)`;
    return {
      name,
      run: (b, s): ParityResult => {
        const batch = samplingBatch(V, 70 + k);
        const S = batch.contexts.length;
        const params = samplingParams(batch);
        const out = s.outI32(S);
        b.kernels.launch("kiln_sample_rows", [S, 1, 1], [256, 1, 1], [out, s.f32(batch.logits), s.i32(params), S, V]);
        const got = s.readI32(out, S);
        const vsTwin = compare(name, got, sampleRows(batch.logits, params, S, V), 0);
        const vsHost = compare(name, got, hostPicks(batch), 0);
        const maxErr = Math.max(vsTwin.maxErr, vsHost.maxErr);
        return { name, maxErr, tol: 0, ok: maxErr === 0 };
      },
    };
  });
}
