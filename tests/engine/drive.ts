/** Drives an EngineCore step by step, checking block conservation after every step. */
import { expect } from "vitest";
import type { EngineCore, StepResult } from "../../runtime/engine/engine_core.ts";
import { resolveSamplingParams, type SamplingParamsInput } from "../../runtime/engine/sampling_params.ts";
import type { Sequence } from "../../runtime/engine/sequence.ts";

export const greedy = (maxTokens: number, extra: SamplingParamsInput = {}): SamplingParamsInput => ({
  temperature: 0,
  maxTokens,
  ignoreEos: true,
  ...extra,
});

export function addRequest(
  core: EngineCore,
  id: string,
  prompt: readonly number[],
  params: SamplingParamsInput,
  priority = 0,
): readonly Sequence[] {
  return core.addRequest({
    requestId: id,
    promptTokenIds: prompt,
    params: resolveSamplingParams(params, { vocabSize: core.runner.vocabSize, maxLogprobs: 20 }),
    priority,
    cacheSalt: undefined,
  });
}

export interface DriveResult {
  /** sequence id → sampled tokens */
  readonly outputs: Map<string, number[]>;
  readonly steps: StepResult[];
}

/** Steps until nothing is left (and at least minSteps hooks ran); `before(i)` runs before step i. */
export function drive(
  core: EngineCore,
  hooks: { before?: (i: number) => void; maxSteps?: number; minSteps?: number } = {},
): DriveResult {
  const outputs = new Map<string, number[]>();
  const steps: StepResult[] = [];
  for (let i = 0; ; i++) {
    hooks.before?.(i);
    core.checkInvariants();
    if (!core.hasUnfinished) {
      if (i >= (hooks.minSteps ?? 0)) break;
      continue;
    }
    if (i > (hooks.maxSteps ?? 5000)) throw new Error("the engine did not finish");
    const r = core.step();
    core.checkInvariants();
    steps.push(r);
    for (const u of r.updates) {
      const list = outputs.get(u.seq.id) ?? [];
      list.push(u.tokenId);
      outputs.set(u.seq.id, list);
    }
  }
  expect(core.blocks.numFree).toBe(core.blocks.numBlocks);
  return { outputs, steps };
}
