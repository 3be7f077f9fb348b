/**
 * The engine's limits, validated once when it is built: defaults filled in, and a KV pool that
 * can hold at least one sequence of maxModelLen tokens (else that sequence would preempt itself
 * forever).
 */
import { KilnError } from "./errors.ts";
import type { SchedulerConfig } from "./scheduler.ts";
import type { SchedulingPolicy } from "./waiting_queue.ts";

export interface EngineCoreOptions {
  /** context limit: prompt + output tokens */
  readonly maxModelLen: number;
  /** token budget per step (default 512: a CPU step stays well under a second) */
  readonly maxNumBatchedTokens?: number;
  /** default 256 */
  readonly maxNumSeqs?: number;
  readonly policy?: SchedulingPolicy;
  /** default true */
  readonly enablePrefixCaching?: boolean;
  /** default true */
  readonly enableChunkedPrefill?: boolean;
  /** set when every attention layer uses this sliding window */
  readonly attentionWindow?: number;
  /** ids that end generation unless a request sets ignoreEos */
  readonly eosTokenIds?: readonly number[];
}

export interface EngineConfig {
  readonly maxModelLen: number;
  readonly enablePrefixCaching: boolean;
  readonly scheduler: SchedulerConfig;
}

export const DEFAULT_MAX_NUM_BATCHED_TOKENS = 512;
export const DEFAULT_MAX_NUM_SEQS = 256;

/** KV blocks one sequence of maxModelLen tokens holds at most (with a sliding window: the window plus one chunk). */
export function blocksForOneSequence(maxModelLen: number, blockSize: number, attentionWindow: number | undefined, maxNumBatchedTokens: number): number {
  const full = Math.ceil(maxModelLen / blockSize);
  return attentionWindow === undefined ? full : Math.min(full, Math.ceil((attentionWindow + maxNumBatchedTokens) / blockSize) + 1);
}

export function resolveEngineConfig(opts: EngineCoreOptions, numBlocks: number, blockSize: number): EngineConfig {
  const maxNumBatchedTokens = opts.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS;
  const maxNumSeqs = opts.maxNumSeqs ?? DEFAULT_MAX_NUM_SEQS;
  const chunked = opts.enableChunkedPrefill ?? true;
  const positive = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v < 1) throw new KilnError("INVALID_ARGUMENT", `${name} must be a positive integer (got ${v})`);
  };
  positive("maxModelLen", opts.maxModelLen);
  positive("maxNumBatchedTokens", maxNumBatchedTokens);
  positive("maxNumSeqs", maxNumSeqs);
  if (opts.attentionWindow !== undefined) positive("attentionWindow", opts.attentionWindow);
  if (!chunked && maxNumBatchedTokens < opts.maxModelLen) {
    throw new KilnError(
      "INVALID_ARGUMENT",
      `without chunked prefill maxNumBatchedTokens (${maxNumBatchedTokens}) must be at least maxModelLen (${opts.maxModelLen})`,
    );
  }
  const need = blocksForOneSequence(opts.maxModelLen, blockSize, opts.attentionWindow, maxNumBatchedTokens);
  if (numBlocks < need) {
    throw new KilnError(
      "KV_EXHAUSTED",
      `the KV pool (${numBlocks} blocks of ${blockSize}) cannot hold one sequence of maxModelLen ${opts.maxModelLen} tokens (${need} blocks): give it more memory or lower maxModelLen`,
    );
  }
  return {
    maxModelLen: opts.maxModelLen,
    enablePrefixCaching: opts.enablePrefixCaching ?? true,
    scheduler: { maxNumBatchedTokens, maxNumSeqs, policy: opts.policy ?? "fcfs", enableChunkedPrefill: chunked, attentionWindow: opts.attentionWindow },
  };
}
