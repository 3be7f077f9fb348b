/**
 * One request's failure is its own: a row of logits with no distribution (NaN, +inf), a hostile
 * repetition penalty, a device-sampled id outside the vocabulary or a tokenizer that throws on one
 * request's token end that request with a typed error; the others in the batch go on with the
 * tokens they would have had alone, and every KV block returns.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../runtime/engine/engine.ts";
import type { CompletionDelta } from "../../runtime/engine/request_output.ts";
import { sampleToken } from "../../runtime/engine/sampler.ts";
import { resolveSamplingParams } from "../../runtime/engine/sampling_params.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import type { SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { Rng } from "../../runtime/engine/rng.ts";
import { byteTokenizer, FakeKvRunner, makePrompts, referenceGreedy } from "./fake_runner.ts";

const V = 256;

async function outcome(stream: AsyncIterable<CompletionDelta>): Promise<{ tokens: number[]; error: unknown }> {
  const tokens: number[] = [];
  try {
    for await (const d of stream) tokens.push(...d.tokenIds);
  } catch (error) {
    return { tokens, error };
  }
  return { tokens, error: undefined };
}

/** A runner whose rows for sequences starting with `poison` are NaN from the first decode on. */
class PoisonRunner extends FakeKvRunner {
  constructor(private readonly poison: number) {
    super(64, 4, V);
  }
  override execute(chunks: readonly SeqChunk[]): Float32Array {
    const out = super.execute(chunks);
    let row = 0;
    for (const c of chunks) {
      const rows = c.allLogits === true ? c.tokens.length : c.noLogits === true ? 0 : 1;
      const poisoned = this.slots[c.blockTable[0]! * this.blockSize] === this.poison && c.numCached > 0;
      if (poisoned) out.fill(NaN, (row + rows - 1) * V, (row + rows) * V);
      row += rows;
    }
    return out;
  }
}

describe("a request that fails alone", () => {
  it("a NaN logits row fails that request with SAMPLING_FAILED; the others finish as alone", async () => {
    const prompts = makePrompts(4, 6, 10, V, 3).map((p, i) => (i === 1 ? [200, ...p] : p.map((t) => (t === 200 ? 201 : t))));
    const runner = new PoisonRunner(200);
    const engine = new Engine(runner, { maxModelLen: 64, tokenizer: byteTokenizer, maxNumBatchedTokens: 64 });
    const results = await Promise.all(
      prompts.map((prompt) => outcome(engine.generate({ prompt, params: { temperature: 0, maxTokens: 6, ignoreEos: true } }))),
    );
    expect(isKilnError(results[1]!.error, "SAMPLING_FAILED")).toBe(true);
    results.forEach((r, i) => {
      if (i !== 1) expect(r).toEqual({ tokens: referenceGreedy(prompts[i]!, 6, V), error: undefined });
    });
    const s = engine.stats();
    expect(s.numFreeBlocks).toBe(s.numBlocks);
    expect(s.numFailedRequests).toBe(1);
    expect(s.numRequests).toBe(0);
    // the engine still serves
    const again = await outcome(engine.generate({ prompt: prompts[0]!, params: { temperature: 0, maxTokens: 3, ignoreEos: true } }));
    expect(again.tokens).toEqual(referenceGreedy(prompts[0]!, 3, V));
  });

  it("a tokenizer that throws on one request's token fails that request only", async () => {
    const prompts = makePrompts(3, 5, 8, V, 4);
    const bad = referenceGreedy(prompts[2]!, 1, V)[0]!;
    const throwing = {
      ...byteTokenizer,
      decode: (ids: readonly number[]) => {
        if (ids.includes(bad)) throw new Error("decoder broke");
        return byteTokenizer.decode(ids);
      },
    };
    const e2 = new Engine(new FakeKvRunner(64, 4, V), { maxModelLen: 64, tokenizer: throwing, maxNumBatchedTokens: 64 });
    const results = await Promise.all(
      prompts.map((prompt) => outcome(e2.generate({ prompt, params: { temperature: 0, maxTokens: 4, ignoreEos: true } }))),
    );
    expect((results[2]!.error as Error).message).toBe("decoder broke");
    for (const i of [0, 1]) {
      const want = referenceGreedy(prompts[i]!, 4, V);
      if (!want.includes(bad)) expect(results[i]).toEqual({ tokens: want, error: undefined });
    }
    expect(e2.stats().numFreeBlocks).toBe(e2.stats().numBlocks);
  });

  it("a device-sampled id outside the vocabulary fails that request only", async () => {
    const prompts = makePrompts(2, 5, 8, V, 5);
    const runner = new FakeKvRunner(64, 4, V);
    let calls = 0;
    const withDevice = Object.assign(runner, {
      launchSample: (chunks: readonly SeqChunk[]) => {
        const logits = runner.execute(chunks);
        calls++;
        return () => {
          const ids = new Int32Array(chunks.length);
          chunks.forEach((_, r) => {
            let best = 0;
            for (let v = 1; v < V; v++) if (logits[r * V + v]! > logits[r * V + best]!) best = v;
            ids[r] = best;
          });
          if (calls === 2) ids[0] = V + 7; // a broken kernel
          return ids;
        };
      },
    });
    const engine = new Engine(withDevice, { maxModelLen: 64, tokenizer: byteTokenizer, maxNumBatchedTokens: 64 });
    const results = await Promise.all(
      prompts.map((prompt) => outcome(engine.generate({ prompt, params: { temperature: 0, maxTokens: 4, ignoreEos: true } }))),
    );
    expect(isKilnError(results[0]!.error, "SAMPLING_FAILED")).toBe(true);
    expect(results[1]).toEqual({ tokens: referenceGreedy(prompts[1]!, 4, V), error: undefined });
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numBlocks);
  });
});

describe("the sampler under hostile penalties", () => {
  const ctx = (params: ReturnType<typeof resolveSamplingParams>, seen: number[]) => ({
    params,
    stopTokenIds: new Set<number>(),
    numOutputTokens: 1,
    rng: new Rng(1),
    promptTokens: () => new Set(seen),
    outputCounts: new Map<number, number>(),
  });

  it("a repetition penalty of 1e-300 keeps every logit finite and still draws a token", () => {
    const row = Float32Array.from({ length: 32 }, (_, i) => (i % 5) - 2);
    for (const temperature of [0, 0.7, 1]) {
      const params = resolveSamplingParams({ repetitionPenalty: 1e-300, temperature, topP: 0.9, topK: 8 }, { vocabSize: 32, maxLogprobs: 20 });
      const t = sampleToken(row, ctx(params, [1, 3, 4, 8]));
      expect(Number.isInteger(t) && t >= 0 && t < 32).toBe(true);
      // 3, 4 and 8 have positive logits: divided by 1e-300 they are all held at the largest f32,
      // and greedy takes the lowest id among them
      if (temperature === 0) expect(t).toBe(3);
    }
  });

  it("a row that is NaN or +inf is a SAMPLING_FAILED error, never a made-up token", () => {
    const params = resolveSamplingParams({ temperature: 1 }, { vocabSize: 8, maxLogprobs: 20 });
    for (const bad of [NaN, Infinity]) {
      const row = new Float32Array(8).fill(0.5);
      row[3] = bad;
      expect(() => sampleToken(row, ctx(params, []))).toThrow(expect.objectContaining({ code: "SAMPLING_FAILED" }));
    }
    // -inf is a masked token, not a failure
    const row = new Float32Array(8).fill(-Infinity);
    row[5] = 0;
    expect(sampleToken(row, ctx(params, []))).toBe(5);
  });
});
