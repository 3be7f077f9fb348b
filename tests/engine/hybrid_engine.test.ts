/**
 * The MoE and hybrid fixtures (LFM2: short convs + attention; MiniMax: lightning + full attention
 * + MoE; Qwen3-MoE) in the batching engine: mixed concurrent requests, prefilled in small chunks
 * beside each other's decode steps, give token for token what each gives alone — also with a KV
 * pool small enough to preempt — and finishing, aborting and preempting requests returns every
 * state slot.
 */
import { describe, expect, it } from "vitest";
import { createEngine, type CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { Engine } from "../../runtime/engine/engine.ts";
import type { RequestResult } from "../../runtime/engine/request_output.ts";
import { fixturesWhere } from "../fixtures/index.ts";
import { makePrompts } from "./fake_runner.ts";

const prompts = makePrompts(10, 3, 45, 500, 77).map((p) => p.map((t) => t + 5));
const maxTokens = prompts.map((_, i) => 3 + ((i * 5) % 9));
const tokensOf = (r: RequestResult): number[] => [...r.completions[0]!.tokenIds];

function engineOn(created: CreatedEngine, maxNumBatchedTokens: number, maxModelLen = 128): Engine {
  return new Engine(created.runner, { maxModelLen, maxNumBatchedTokens, enablePrefixCaching: false });
}

async function runAll(engine: Engine): Promise<number[][]> {
  const results = await Promise.all(prompts.map((p, i) => engine.generateBatch([p], { temperature: 0, maxTokens: maxTokens[i]!, ignoreEos: true })));
  return results.map((r) => tokensOf(r[0]!));
}

/** every state slot is free and every KV block back in the pool */
function expectAllReturned(created: CreatedEngine, engine: Engine): void {
  engine.core.checkInvariants();
  const pool = created.runner.statePool;
  if (pool !== undefined) expect(pool.numFree).toBe(pool.numSlots);
  expect(engine.stats().numFreeBlocks).toBe(engine.stats().numBlocks);
}

for (const f of fixturesWhere((x) => x.stateLayers || x.moe)) {
  describe(`${f.name} in the batching engine`, async () => {
    const big = await createEngine({ modelDir: f.dir, numBlocks: 64, blockSize: 8, maxModelLen: 128 });
    const alone: number[][] = [];
    for (let i = 0; i < prompts.length; i++) {
      const [r] = await engineOn(big, 256).generateBatch([prompts[i]!], { temperature: 0, maxTokens: maxTokens[i]!, ignoreEos: true });
      alone.push(tokensOf(r!));
    }

    it(f.stateLayers ? "declares per-sequence state slots" : "has no per-sequence state", () => {
      expect(big.runner.statePool === undefined).toBe(!f.stateLayers);
    });

    it("concurrent requests, prefilled in chunks of at most 16 tokens, give the tokens of each alone", async () => {
      const engine = engineOn(big, 16);
      expect(await runAll(engine)).toEqual(alone);
      expect(engine.stats().steps).toBeGreaterThan(prompts.length);
      expectAllReturned(big, engine);
    });

    it("the same when the KV pool is small enough to preempt; preempted sequences give back their slots", async () => {
      const small = await createEngine({ modelDir: f.dir, numBlocks: 8, blockSize: 8, maxModelLen: 64 });
      const engine = engineOn(small, 32, 64);
      expect(await runAll(engine)).toEqual(alone);
      expect(engine.stats().numPreemptions).toBeGreaterThan(0);
      expectAllReturned(small, engine);
    });

    it("aborted requests give back their slots and blocks at once; the others are unaffected", async () => {
      const engine = engineOn(big, 16);
      const streams = prompts.map((p, i) => engine.generate({ prompt: p, params: { temperature: 0, maxTokens: maxTokens[i]!, ignoreEos: true } }));
      const collect = async (i: number): Promise<number[] | "aborted"> => {
        const tokens: number[] = [];
        for await (const d of streams[i]!) {
          tokens.push(...d.tokenIds);
          if (i % 3 === 0 && tokens.length >= 1) engine.abort(streams[i]!.requestId);
          if (d.finishReason === "abort") return "aborted";
        }
        return tokens;
      };
      const got = await Promise.all(prompts.map((_, i) => collect(i)));
      got.forEach((g, i) => {
        if (i % 3 === 0) expect(g).toBe("aborted");
        else expect(g).toEqual(alone[i]);
      });
      expectAllReturned(big, engine);
    });
  });
}
