/**
 * Sampling on the device, timed alone on S rows of V logits: greedy as the executor queues it
 * (the split argmax) against one block a row (kiln_argmax_rows, the plain baseline), and
 * kiln_sample_rows with temperature 0.8 / top-p 0.95 and with temperature 0.8 / top-k 50. The
 * logits are peaked like a language model's (a few hundred plausible tokens over a long tail), so
 * top-p keeps a realistic share of the vocabulary.
 */
import type { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { argmaxBlocks, argmaxPartsBytes, launchArgmax } from "../../runtime/backends/cuda/argmax_plan.ts";
import { packSamplingRows, type DeviceSamplingRow } from "../../runtime/engine/device_sampling.ts";

export interface SamplingTiming {
  readonly mode: string;
  readonly rows: number;
  readonly vocab: number;
  /** device time of one call over all rows, averaged over the repetitions */
  readonly msPerCall: number;
}

function row(temperature: number, topK: number, topP: number): DeviceSamplingRow {
  return { greedy: false, temperature, topK, topP, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, adjustments: [], u: 0.37, mask: undefined };
}

/** [S, V] logits: a long tail around -4, a few hundred tokens a row raised by up to 12. */
function peakedLogits(S: number, V: number): Float32Array {
  const out = new Float32Array(S * V);
  let s = 12345 >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = 0; i < out.length; i++) out[i] = -4 + 2 * (next() + next() + next() - 1.5);
  for (let r = 0; r < S; r++) for (let k = 0; k < 300; k++) out[r * V + Math.floor(next() * V)] = 12 * next();
  return out;
}

export function samplingTimings(b: CudaBackend, S: number, V: number, reps: number): SamplingTiming[] {
  const dev = b.device;
  const logits = dev.alloc(S * V * 4);
  const out = dev.alloc(S * 4);
  const parts = dev.alloc(argmaxPartsBytes(S));
  const params: bigint[] = [];
  const time = (launch: () => void): number => {
    launch(); // warm-up
    dev.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) launch();
    dev.synchronize();
    return (performance.now() - t0) / reps;
  };
  try {
    dev.upload(logits, peakedLogits(S, V));
    const results: SamplingTiming[] = [];
    const add = (mode: string, ms: number): void => {
      results.push({ mode, rows: S, vocab: V, msPerCall: ms });
    };
    const B = argmaxBlocks(S, V, dev.info.multiprocessors);
    add(`greedy, ${B} block${B === 1 ? "" : "s"} a row`, time(() => launchArgmax(b.kernels, out, parts, logits, S, V, B)));
    add("greedy, one block a row (baseline)", time(() => launchArgmax(b.kernels, out, parts, logits, S, V, 1)));
    for (const [mode, r] of [
      ["temperature 0.8, top-p 0.95", row(0.8, 0, 0.95)],
      ["temperature 0.8, top-k 50", row(0.8, 50, 1)],
    ] as const) {
      const words = packSamplingRows(Array.from({ length: S }, () => r), V);
      const p = dev.alloc(words.byteLength);
      params.push(p);
      dev.upload(p, words);
      add(mode, time(() => b.kernels.launch("kiln_sample_rows", [S, 1, 1], [256, 1, 1], [out, logits, p, S, V])));
    }
    return results;
  } finally {
    dev.synchronize();
    for (const p of [logits, out, parts, ...params]) dev.free(p);
  }
}
