/**
 * Generation for one sequence at a time, straight over the model runner: the path `kiln run`
 * and the golden checks use. (The batching engine schedules many sequences over the same runner.)
 */
import { BlockPool, ensureBlocks } from "./block_pool.ts";
import { KilnError } from "./errors.ts";
import type { ModelRunner } from "./model_runner.ts";
import { Rng } from "./rng.ts";
import { sample, type SamplingParams } from "./sampler.ts";

export interface GenerateOptions {
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  readonly seed: number;
  /** generation ends after emitting one of these (unless empty) */
  readonly stopTokenIds: readonly number[];
  /** context limit: prompt + generated tokens */
  readonly maxModelLen: number;
}

export type FinishReason = "stop" | "length";

/**
 * KV blocks one generation can fill: the prompt plus maxTokens, capped by the context window.
 * Sizing from the window alone would allocate for max_position_embeddings tokens (millions, for
 * long-context configs) to generate a handful.
 */
export function blocksForGeneration(promptTokens: number, maxTokens: number, maxModelLen: number, blockSize: number): number {
  return Math.max(1, Math.ceil(Math.min(promptTokens + maxTokens, maxModelLen) / blockSize));
}

export interface GenerateResult {
  readonly tokens: number[];
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
}

export function generate(
  runner: ModelRunner,
  prompt: readonly number[],
  opts: GenerateOptions,
  onToken: (id: number) => void = () => {},
): GenerateResult {
  if (prompt.length === 0) throw new KilnError("INVALID_ARGUMENT", "the prompt is empty");
  if (prompt.length >= opts.maxModelLen) {
    throw new KilnError("PROMPT_TOO_LONG", `the prompt has ${prompt.length} tokens; the context window is ${opts.maxModelLen}`);
  }
  const pool = new BlockPool(runner.numBlocks);
  const table: number[] = [];
  const rng = new Rng(opts.seed);
  const tokens: number[] = [];
  let finishReason: FinishReason = "length";
  // models with mamba-like layers carry the sequence's state in a slot, from a zeroed one
  const states = runner.statePool;
  const slot = states?.allocate();
  if (slot !== undefined) states!.reset(slot);
  try {
    let chunk: readonly number[] = prompt;
    let numCached = 0;
    while (tokens.length < opts.maxTokens) {
      ensureBlocks(pool, table, numCached + chunk.length, runner.blockSize);
      const logits = runner.execute([{ tokens: chunk, numCached, blockTable: table, ...(slot === undefined ? {} : { stateSlot: slot }) }]);
      numCached += chunk.length;
      const next = sample(logits, opts.sampling, rng);
      tokens.push(next);
      onToken(next);
      if (opts.stopTokenIds.includes(next)) {
        finishReason = "stop";
        break;
      }
      if (prompt.length + tokens.length >= opts.maxModelLen) break; // vLLM's limit: prompt + output ≤ max_model_len
      chunk = [next];
    }
  } finally {
    pool.release(table);
    if (slot !== undefined) states!.free(slot);
  }
  return { tokens, finishReason, promptTokens: prompt.length };
}
