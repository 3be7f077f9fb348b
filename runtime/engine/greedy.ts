/**
 * Greedy continuations of token-id prompts on the engine core, synchronously: each prompt is a
 * request run alone to its end (no batching, no prefix cache, the whole prompt in one chunk), so a
 * prompt's tokens never depend on the other prompts. For tests and benches that compare two
 * models or two backends token for token; `kiln run` and `kiln serve` use the Engine itself.
 *
 *   const tokens = greedyTokens(runner, [[5, 17, 301, 44]], 10); // [[…10 ids]]
 */
import { EngineCore } from "./engine_core.ts";
import { resolveSamplingParams } from "./sampling_params.ts";
import type { StepRunner } from "./step_runner.ts";

export interface GreedyOptions {
  /** context window: prompt + output (default: what the runner's KV pool holds, numBlocks × blockSize) */
  readonly maxModelLen?: number;
  /** ids that end a continuation after they are emitted (default none: each gets maxTokens tokens) */
  readonly stopTokenIds?: readonly number[];
}

/** The greedy tokens after each prompt, [prompts][≤ maxTokens]; a continuation stops early at maxModelLen or a stop id. */
export function greedyTokens(runner: StepRunner, prompts: readonly (readonly number[])[], maxTokens: number, opts: GreedyOptions = {}): number[][] {
  const maxModelLen = opts.maxModelLen ?? runner.numBlocks * runner.blockSize;
  const core = new EngineCore(runner, { maxModelLen, maxNumBatchedTokens: maxModelLen, maxNumSeqs: 1, enablePrefixCaching: false });
  const params = resolveSamplingParams(
    { temperature: 0, maxTokens, ignoreEos: true, stopTokenIds: opts.stopTokenIds },
    { vocabSize: runner.vocabSize, maxLogprobs: 0 },
  );
  return prompts.map((prompt, i) => {
    const requestId = `greedy-${i}`;
    core.addRequest({ requestId, promptTokenIds: prompt, params, priority: 0, cacheSalt: undefined });
    const tokens: number[] = [];
    while (core.hasUnfinished) {
      const step = core.step();
      const failure = step.failures[0];
      if (failure !== undefined) throw failure.error;
      for (const u of step.updates) tokens.push(u.tokenId);
    }
    return tokens;
  });
}
