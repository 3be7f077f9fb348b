/**
 * What the engine needs from a model: run one step over the scheduled chunks and hand back the
 * wanted logits. ModelRunner (any backend) satisfies it; the pure tests use fakes.
 */
import type { DeviceSamplingRow } from "./device_sampling.ts";
import type { SeqChunk } from "../backends/kv_cache.ts";
import type { StatePool } from "./state_slots.ts";

export interface StepRunner {
  /** KV pool size, in blocks of `blockSize` token slots */
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  /** per-sequence state slots for Mamba-like layers; absent for attention-only models */
  readonly statePool?: StatePool | undefined;
  /**
   * logits [S, vocab], row-major: for each chunk in order, one row per token when it asks for
   * `allLogits`, none when `noLogits`, else one row (its last token).
   */
  execute(chunks: readonly SeqChunk[]): Float32Array;
  /**
   * Queues the step like `execute` with each logits row sampled on the device with rows[s], and
   * returns at once; the collector it returns waits for the device and gives the token ids.
   * Absent where sampling stays on the host.
   */
  readonly launchSample?: ((chunks: readonly SeqChunk[], rows: readonly DeviceSamplingRow[]) => () => Int32Array) | undefined;
}

/** Rows of logits a chunk gets back (see StepRunner.execute). */
export function logitRows(chunk: SeqChunk): number {
  if (chunk.allLogits) return chunk.tokens.length;
  return chunk.noLogits ? 0 : 1;
}
