/**
 * The async engine API over a fake model: streaming deltas, cancellation (AbortSignal, leaving
 * the loop, engine.abort), generateBatch, n > 1, logprobs, stats, the event loop between steps,
 * edge validation and runner failure.
 */
import { describe, expect, it } from "vitest";
import { Engine, type RequestStream } from "../../runtime/engine/engine.ts";
import type { CompletionDelta } from "../../runtime/engine/request_output.ts";
import type { SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { byteTokenizer, FakeKvRunner, makePrompts, referenceGreedy } from "./fake_runner.ts";

const V = 256;

function engine(runner = new FakeKvRunner(64, 4, V)): Engine {
  return new Engine(runner, { maxModelLen: 128, tokenizer: byteTokenizer, maxNumBatchedTokens: 32 });
}

async function drain(stream: AsyncIterable<CompletionDelta>): Promise<CompletionDelta[]> {
  const out: CompletionDelta[] = [];
  for await (const d of stream) out.push(d);
  return out;
}

describe("Engine.generate", () => {
  it("streams one delta per token, ending with finish reason, usage and metrics", async () => {
    const e = engine();
    const prompt = makePrompts(1, 10, 10, V, 1)[0]!;
    const deltas = await drain(e.generate({ prompt, params: { temperature: 0, maxTokens: 7, ignoreEos: true } }));
    expect(deltas.map((d) => d.tokenIds.length)).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(deltas.flatMap((d) => d.tokenIds)).toEqual(referenceGreedy(prompt, 7, V));
    const lastDelta = deltas[6]!;
    expect(lastDelta.finishReason).toBe("length");
    expect(lastDelta.usage).toEqual({ promptTokens: 10, completionTokens: 7, totalTokens: 17, cachedPromptTokens: 0 });
    const m = lastDelta.metrics!;
    expect(m.arrivalTime).toBeLessThanOrEqual(m.firstScheduledTime!);
    expect(m.firstScheduledTime!).toBeLessThanOrEqual(m.firstTokenTime!);
    expect(m.firstTokenTime!).toBeLessThanOrEqual(m.finishedTime);
    expect(deltas.slice(0, 6).every((d) => d.usage === undefined && d.finishReason === undefined)).toBe(true);
    const s = e.stats();
    expect([s.numRunning, s.numWaiting, s.numRequests, s.numFinishedRequests, s.generationTokens, s.promptTokens]).toEqual([0, 0, 0, 1, 7, 10]);
  });

  it("takes text prompts through the tokenizer and returns text", async () => {
    const e = engine();
    const [r] = await e.generateBatch(["Hi"], { temperature: 0, maxTokens: 5, ignoreEos: true });
    expect(r!.promptTokenIds).toEqual([72, 105]);
    const want = referenceGreedy([72, 105], 5, V);
    expect(r!.completions[0]!.tokenIds).toEqual(want);
    expect(r!.completions[0]!.text).toBe(byteTokenizer.decode(want));
  });

  it("returns batch results in prompt order, n completions each, with logprobs", async () => {
    const e = engine();
    const prompts = makePrompts(5, 3, 20, V, 2);
    const results = await e.generateBatch(prompts, { n: 2, temperature: 0.8, seed: 3, maxTokens: 6, ignoreEos: true, logprobs: 3, promptLogprobs: 2 });
    results.forEach((r, i) => {
      expect(r.promptTokenIds).toEqual(prompts[i]);
      expect(r.completions.map((c) => c.index)).toEqual([0, 1]);
      for (const c of r.completions) {
        expect(c.logprobs!.length).toBe(c.tokenIds.length);
        c.logprobs!.forEach((lp, k) => {
          expect(lp.chosen.tokenId).toBe(c.tokenIds[k]);
          expect(lp.top.map((t) => t.rank)).toEqual([1, 2, 3]);
        });
      }
      expect(r.promptLogprobs!.length).toBe(prompts[i]!.length);
      expect(r.usage.completionTokens).toBe(12);
    });
  });

  it("aborts through an AbortSignal mid-stream and returns every block", async () => {
    const runner = new FakeKvRunner(64, 4, V);
    const e = engine(runner);
    const ac = new AbortController();
    const stream = e.generate({ prompt: [1, 2, 3], params: { temperature: 0, maxTokens: 100, ignoreEos: true }, signal: ac.signal });
    const deltas: CompletionDelta[] = [];
    for await (const d of stream) {
      deltas.push(d);
      if (deltas.length === 3) ac.abort();
    }
    expect(deltas.length).toBe(4);
    expect(deltas[3]!.finishReason).toBe("abort");
    expect(deltas[3]!.usage!.completionTokens).toBe(3);
    expect(e.stats().numFreeBlocks).toBe(runner.numBlocks);
    expect(e.stats().numAbortedRequests).toBe(1);
  });

  it("aborts a request whose consumer leaves the loop, one whose signal was already aborted, and by id", async () => {
    const runner = new FakeKvRunner(64, 4, V);
    const e = engine(runner);
    const params = { temperature: 0, maxTokens: 100, ignoreEos: true };
    const s1 = e.generate({ prompt: [5, 6], params });
    for await (const d of s1) if (d.tokenIds.length > 0) break;
    const s2 = e.generate({ prompt: [7], params, signal: AbortSignal.abort() });
    expect((await drain(s2)).map((d) => d.finishReason)).toEqual(["abort"]);
    const s3 = e.generate({ prompt: [8], params: { ...params, n: 2 }, requestId: "mine" });
    await new Promise((r) => setImmediate(r));
    expect(e.abort("mine")).toBe(true);
    expect(e.abort("mine")).toBe(false);
    const d3 = await drain(s3);
    expect(d3.filter((d) => d.finishReason === "abort").map((d) => d.index).sort()).toEqual([0, 1]);
    expect(e.stats().numRequests).toBe(0);
    expect(e.stats().numFreeBlocks).toBe(runner.numBlocks);
  });

  it("gives the event loop a turn between steps", async () => {
    const log: string[] = [];
    const runner = new FakeKvRunner(64, 4, V);
    const execute = runner.execute.bind(runner);
    runner.execute = (chunks: readonly SeqChunk[]) => {
      log.push("step");
      return execute(chunks);
    };
    const e = engine(runner);
    let done = false;
    const tick = (): void => {
      log.push("tick");
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    await drain(e.generate({ prompt: [1, 2, 3], params: { temperature: 0, maxTokens: 20, ignoreEos: true } }));
    done = true;
    const steps = log.filter((x) => x === "step").length;
    expect(steps).toBe(20);
    expect(log.join(",")).not.toContain("step,step");
  });

  it("validates at the edge with typed errors", () => {
    const e = engine();
    const codeOf = (f: () => RequestStream): string | undefined => {
      try {
        f();
      } catch (err) {
        return isKilnError(err) ? err.code : "other";
      }
      return undefined;
    };
    expect(codeOf(() => e.generate({ prompt: [1], params: { topP: 2 } }))).toBe("SAMPLING_PARAMS_INVALID");
    expect(codeOf(() => e.generate({ prompt: [] }))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => e.generate({ prompt: [1], priority: 0.5 }))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => e.generate({ prompt: "x".repeat(200) }))).toBe("PROMPT_TOO_LONG");
    const noTok = new Engine(new FakeKvRunner(64, 4, V), { maxModelLen: 64 });
    expect(codeOf(() => noTok.generate({ prompt: "text" }))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => noTok.generate({ prompt: [1], params: { stop: ["x"] } }))).toBe("SAMPLING_PARAMS_INVALID");
    e.generate({ prompt: [1], requestId: "dup" });
    expect(codeOf(() => e.generate({ prompt: [1], requestId: "dup" }))).toBe("INVALID_ARGUMENT");
    e.close();
    expect(codeOf(() => e.generate({ prompt: [1] }))).toBe("ENGINE_CLOSED");
  });

  it("fails the live streams when the runner throws, and keeps serving", async () => {
    const runner = new FakeKvRunner(64, 4, V);
    const e = engine(runner);
    const execute = runner.execute.bind(runner);
    let fail = true;
    runner.execute = (chunks: readonly SeqChunk[]) => {
      if (fail) throw new Error("device lost");
      return execute(chunks);
    };
    await expect(drain(e.generate({ prompt: [1, 2] }))).rejects.toThrow("device lost");
    expect(e.stats().numFreeBlocks).toBe(runner.numBlocks);
    fail = false;
    const [r] = await e.generateBatch([[1, 2]], { temperature: 0, maxTokens: 3, ignoreEos: true });
    expect(r!.completions[0]!.tokenIds).toEqual(referenceGreedy([1, 2], 3, V));
  });
});
