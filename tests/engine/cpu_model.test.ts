/**
 * The engine on the real CPU model. Greedy output invariance on the embedded fortune model: 64
 * concurrent requests of mixed lengths give, token for token, what each gives alone — also with
 * a KV pool small enough to force preemption, and with a shared prefix served from the cache.
 * Against Hugging Face references: the fortune model's greedy text, and the sliding-window
 * fixture's greedy tokens with blocks freed behind the window.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { Engine, type EngineOptions } from "../../runtime/engine/engine.ts";
import type { RequestResult } from "../../runtime/engine/request_output.ts";
import { greedyTokens } from "../../runtime/engine/greedy.ts";
import { DEFAULT_MODEL_DIR, loadModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { makePrompts } from "./fake_runner.ts";

const fortune = await loadModel(DEFAULT_MODEL_DIR);
const V = fortune.model.vocabSize;
const runnerWith = (numBlocks: number): ModelRunner => ModelRunner.forGraph(fortune.graph, fortune.weights, V, { numBlocks, blockSize: 16 });
const bigRunner = runnerWith(512);

// 64 prompts of 5..60 tokens (ids above the specials), 8..24 output tokens
const prompts = makePrompts(64, 5, 60, V - 3, 2024).map((p) => p.map((t) => t + 3));
const maxTokens = prompts.map((_, i) => 8 + ((i * 7) % 17));

function engineOn(runner: ModelRunner, opts: Partial<EngineOptions> = {}): Engine {
  return new Engine(runner, { maxModelLen: 128, maxNumBatchedTokens: 256, ...opts });
}

async function runConcurrently(engine: Engine, ps: readonly (readonly number[])[]): Promise<number[][]> {
  const results = await Promise.all(
    ps.map((prompt, i) => engine.generateBatch([prompt], { temperature: 0, maxTokens: maxTokens[i]!, ignoreEos: true })),
  );
  return results.map((r) => tokensOf(r[0]!));
}

const tokensOf = (r: RequestResult): number[] => [...r.completions[0]!.tokenIds];

async function runAlone(ps: readonly (readonly number[])[]): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < ps.length; i++) {
    // a fresh engine without prefix caching: nothing but the request itself
    const [r] = await engineOn(bigRunner, { enablePrefixCaching: false }).generateBatch([ps[i]!], {
      temperature: 0,
      maxTokens: maxTokens[i]!,
      ignoreEos: true,
    });
    out.push(tokensOf(r!));
  }
  return out;
}

const alone = await runAlone(prompts);

describe("greedy output invariance on the fortune model", () => {
  it("64 concurrent requests of mixed lengths give the same tokens as each alone", async () => {
    const engine = engineOn(bigRunner, { enablePrefixCaching: false });
    expect(await runConcurrently(engine, prompts)).toEqual(alone);
    expect(engine.stats().numFreeBlocks).toBe(512);
  });

  it("the same when the KV pool is small enough to preempt", async () => {
    // 16 blocks of 16 = 256 slots for ~64 × 50 tokens: sequences are preempted and recomputed
    const engine = engineOn(runnerWith(16), { enablePrefixCaching: false, maxNumBatchedTokens: 128 });
    expect(await runConcurrently(engine, prompts)).toEqual(alone);
    expect(engine.stats().numPreemptions).toBeGreaterThan(0);
    expect(engine.stats().numFreeBlocks).toBe(16);
  });

  it("the same with a shared prefix served from the prefix cache", async () => {
    const shared = makePrompts(1, 40, 40, V - 3, 7)[0]!.map((t) => t + 3);
    const withPrefix = prompts.map((p) => [...shared, ...p.slice(0, 20)]);
    const want = await runAlone(withPrefix);
    const engine = engineOn(bigRunner, { maxNumBatchedTokens: 128 });
    expect(await runConcurrently(engine, withPrefix)).toEqual(want);
    const s = engine.stats();
    // 2 full blocks of the 40-token prefix, for (nearly) every request but the first few
    expect(s.prefixCacheHits).toBeGreaterThanOrEqual(32 * 50);
    expect(s.prefixCacheHits).toBeLessThanOrEqual(s.prefixCacheQueries);
  });
});

describe("batch invariance of the logits themselves", () => {
  // Known gap, reported to the lead: the native GEMM has three regimes (M = 1 GEMV, M < 8 tiles,
  // M ≥ 8 packed panels) that sum in different orders, so a row's logits differ in the last bits
  // (~1e-5) with the step's token count. Greedy tokens above agree on this model, but bit-for-bit
  // invariance needs a batch-invariant GEMM (kernels/cpu). Drop `.fails` once it is.
  it.fails("a decode row's logits are bit-identical alone and in a batch", () => {
    const runner = runnerWith(64);
    const prompt = prompts[0]!;
    const decodeRow = (others: number): Float32Array => {
      runner.execute([{ tokens: prompt, numCached: 0, blockTable: [0, 1, 2, 3] }]);
      const extra = Array.from({ length: others }, (_, j) => ({ tokens: [100 + j], numCached: 0, blockTable: [10 + j] }));
      return runner.execute([{ tokens: [42], numCached: prompt.length, blockTable: [0, 1, 2, 3] }, ...extra]).slice(0, V);
    };
    const alone = decodeRow(0);
    expect(decodeRow(3)).toEqual(alone);
    expect(decodeRow(11)).toEqual(alone);
  });
});

describe("against Hugging Face references", () => {
  it("reproduces the fortune model's greedy reference text, all prompts in one batch", async () => {
    const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
      prompt: string;
      greedy: string;
    }[];
    const { engine } = await createEngine({ numBlocks: 64 });
    const results = await engine.generateBatch(
      refs.map((r) => r.prompt),
      { temperature: 0, maxTokens: 24, ignoreEos: true, skipSpecialTokens: false },
    );
    expect(results.map((r) => r.completions[0]!.text)).toEqual(refs.map((r) => r.greedy));
  });

  it("gives the sliding-window model's greedy tokens with blocks freed behind the window", async () => {
    const dir = new URL("../fixtures/mistral-swa", import.meta.url).pathname;
    const { engine, runner, model } = await createEngine({ modelDir: dir, numBlocks: 64, blockSize: 4, maxNumBatchedTokens: 16 });
    expect(engine.core.scheduler.config.attentionWindow).toBe(8);
    const ref = SafetensorsFile.open(`${dir}/reference.safetensors`);
    const refPrompts = [0, 1, 2].map((k) => Array.from(ref.readI32(`prompt_${k}`)));
    const refTokens = [0, 1, 2].map((k) => Array.from(ref.readI32(`greedy_tokens_${k}`)));
    ref.close();
    let mostHeld = 0;
    const poll = setInterval(() => {
      for (const s of engine.core.liveSequences()) mostHeld = Math.max(mostHeld, s.blocks.length);
    }, 0);
    const results = await engine.generateBatch(refPrompts, { temperature: 0, maxTokens: 8, ignoreEos: true });
    expect(results.map(tokensOf)).toEqual(refTokens);
    // longer: 60 tokens past the prompt, against each prompt run alone with every block kept (no window)
    const long = await engine.generateBatch(refPrompts, { temperature: 0, maxTokens: 60, ignoreEos: true });
    clearInterval(poll);
    const single = ModelRunner.forGraph(model.graph, model.weights, model.model.vocabSize, { numBlocks: 32, blockSize: 4 });
    expect(long.map(tokensOf)).toEqual(greedyTokens(single, refPrompts, 60));
    expect(mostHeld).toBeGreaterThan(0);
    expect(mostHeld).toBeLessThanOrEqual(8); // a 16-token chunk + the 8-token window, in blocks of 4
    expect(engine.stats().numFreeBlocks).toBe(runner.numBlocks);
  });
});
