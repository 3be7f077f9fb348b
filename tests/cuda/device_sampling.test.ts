// Sampling on the device end to end through the CPU emulator of libcuda: an engine on backend
// "cuda" gives, for a mix of greedy, seeded top-k/top-p/min-p, penalties, logit_bias and
// min_tokens requests, exactly the tokens the same engine gives when it samples on the host, and
// it downloads no logits for steps where no request asks for logprobs.
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { registerCudaBackend, type CudaRegistration } from "../../runtime/backends/cuda/register.ts";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import type { SamplingParamsInput } from "../../runtime/engine/sampling_params.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";

const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));


beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: CUBIN_CACHE });
}, 120_000);

afterEach(() => vi.restoreAllMocks());

const PROMPTS = [Array.from({ length: 21 }, (_, i) => 5 + ((i * 37) % 900)), Array.from({ length: 6 }, (_, i) => 300 + 11 * i), [9, 8, 7]];

const MIXES: readonly SamplingParamsInput[] = [
  { temperature: 0, maxTokens: 7, ignoreEos: true },
  { temperature: 0.8, topK: 20, topP: 0.9, minP: 0.02, seed: 11, maxTokens: 7 },
  { temperature: 1, seed: 12, maxTokens: 7, repetitionPenalty: 1.4, presencePenalty: 0.5, frequencyPenalty: 0.3 },
  { temperature: 0.7, seed: 13, maxTokens: 7, logitBias: { 2: 4, 17: 3, 600: -5 }, minTokens: 4 },
  { temperature: 0, maxTokens: 7, repetitionPenalty: 1.3, logitBias: { 40: 2.5 }, minTokens: 3 },
  { temperature: 1.3, topP: 0.5, seed: 14, maxTokens: 7, n: 2 },
];

/** Every mix on every prompt, all at once (so steps batch them); token ids in a fixed order. */
async function generateAll(deviceSampling: boolean, extra: SamplingParamsInput = {}): Promise<number[][]> {
  const cuda: CudaRegistration = registerCudaBackend({ deviceSampling });
  const { engine, runner } = await createEngine({ backend: "cuda", maxModelLen: 128, kvCacheBytes: 64 * 98304 });
  try {
    const results = await Promise.all(MIXES.map((p) => engine.generateBatch(PROMPTS, { ...p, ...extra })));
    return results.flatMap((r) => r.flatMap((req) => req.completions.map((c) => [...c.tokenIds])));
  } finally {
    engine.close();
    runner.dispose();
    cuda.dispose();
  }
}

describe("device sampling on the emulated device", () => {
  it("gives the host sampler's tokens for every kind of request, without downloading logits", async () => {
    const run = vi.spyOn(CudaExecutor.prototype, "run");
    const device = await generateAll(true);
    expect(run).not.toHaveBeenCalled();
    const host = await generateAll(false);
    expect(run).toHaveBeenCalled();
    expect(device).toEqual(host);
    expect(device.every((t) => t.length > 0)).toBe(true);
    // the seeded mixes sample something other than the greedy pick
    expect(new Set(device.map((t) => t.join(","))).size).toBeGreaterThan(PROMPTS.length);
  }, 600_000);

  it("aborts while a step is on the device: the others generate as alone, every block comes back", async () => {
    const cuda = registerCudaBackend();
    const { engine, runner } = await createEngine({ backend: "cuda", maxModelLen: 128, kvCacheBytes: 64 * 98304 });
    try {
      const params = { temperature: 0, maxTokens: 8, ignoreEos: true };
      const alone = await Promise.all(PROMPTS.map(async (p) => (await engine.generateBatch([p], params))[0]!.completions[0]!.tokenIds));
      // each doomed request is aborted from its own consumer after its second token, which runs
      // while the step after it is queued on the device
      const runs = PROMPTS.flatMap((p, k) => [
        { prompt: p, doomed: false, k },
        { prompt: p, doomed: true, k },
      ]);
      const got = await Promise.all(
        runs.map(async (r) => {
          const controller = new AbortController();
          const tokens: number[] = [];
          let finish: string | undefined;
          for await (const d of engine.generate({ prompt: r.prompt, params, signal: controller.signal })) {
            tokens.push(...d.tokenIds);
            if (d.finishReason !== undefined) finish = d.finishReason;
            if (r.doomed && tokens.length >= 2 && finish === undefined) controller.abort();
          }
          return { ...r, tokens, finish };
        }),
      );
      for (const g of got) {
        if (g.doomed) {
          expect(g.finish).toBe("abort");
          expect(g.tokens).toEqual(alone[g.k]!.slice(0, g.tokens.length));
        } else {
          expect(g.finish).toBe("length");
          expect(g.tokens).toEqual(alone[g.k]);
        }
      }
      engine.core.checkInvariants();
      expect(engine.stats().numFreeBlocks).toBe(engine.stats().numBlocks);
    } finally {
      engine.close();
      runner.dispose();
      cuda.dispose();
    }
  }, 300_000);

  it("steps with logprobs take the logits to the host", async () => {
    const run = vi.spyOn(CudaExecutor.prototype, "run");
    const cuda = registerCudaBackend();
    const { engine, runner } = await createEngine({ backend: "cuda", maxModelLen: 128, kvCacheBytes: 64 * 98304 });
    try {
      const [plain] = await engine.generateBatch([PROMPTS[1]!], { temperature: 0, maxTokens: 3, ignoreEos: true });
      expect(run).not.toHaveBeenCalled();
      const [withLogprobs] = await engine.generateBatch([PROMPTS[1]!], { temperature: 0, maxTokens: 3, ignoreEos: true, logprobs: 2 });
      expect(run).toHaveBeenCalledTimes(3);
      expect(withLogprobs!.completions[0]!.tokenIds).toEqual(plain!.completions[0]!.tokenIds);
    } finally {
      engine.close();
      runner.dispose();
      cuda.dispose();
    }
  }, 300_000);
});
