/**
 * Prefix caching, n > 1 block sharing and sliding-window block freeing, through EngineCore with
 * the fake KV runner (whose output goes wrong if a block is shared or freed wrongly).
 */
import { describe, expect, it } from "vitest";
import { EngineCore } from "../../runtime/engine/engine_core.ts";
import { addRequest, drive, greedy } from "./drive.ts";
import { FakeKvRunner, makePrompts, referenceGreedy } from "./fake_runner.ts";

const V = 64;

describe("prefix caching", () => {
  it("serves a repeated prefix from the cache and counts queries and hits", () => {
    const runner = new FakeKvRunner(32, 4, V);
    const core = new EngineCore(runner, { maxModelLen: 64 });
    const shared = makePrompts(1, 18, 18, V, 1)[0]!;
    addRequest(core, "a", shared, greedy(4));
    drive(core);
    const b = [...shared, 5, 6, 7];
    addRequest(core, "b", b, greedy(4));
    const { outputs, steps } = drive(core);
    expect(steps[0]!.scheduled.chunks[0]!.numNewTokens).toBe(b.length - 16); // 4 full blocks hit
    expect(core.stats().prefixCacheQueries).toBe(shared.length + b.length);
    expect(core.stats().prefixCacheHits).toBe(16);
    expect(outputs.get("b")).toEqual(referenceGreedy(b, 4, V));
  });

  it("recomputes prompts that ask for prompt logprobs", () => {
    const core = new EngineCore(new FakeKvRunner(32, 4, V), { maxModelLen: 64 });
    const p = makePrompts(1, 18, 18, V, 2)[0]!;
    addRequest(core, "a", p, greedy(2));
    drive(core);
    addRequest(core, "b", p, greedy(2, { promptLogprobs: 1 }));
    const { steps } = drive(core);
    expect(steps[0]!.scheduled.chunks[0]!.numNewTokens).toBe(p.length);
    const lps = steps[0]!.updates[0]!.promptLogprobs!;
    expect(lps.length).toBe(p.length);
    expect(lps[0]).toBeUndefined();
    lps.slice(1).forEach((lp, i) => expect(lp!.chosen.tokenId).toBe(p[i + 1]));
  });
});

describe("n > 1", () => {
  it("runs the siblings on the leader's prompt blocks", () => {
    const runner = new FakeKvRunner(32, 4, V);
    const core = new EngineCore(runner, { maxModelLen: 64 });
    const p = makePrompts(1, 30, 30, V, 3)[0]!;
    const seqs = addRequest(core, "r", p, { n: 3, temperature: 1, seed: 11, maxTokens: 6, ignoreEos: true });
    let peak = 0;
    const { outputs, steps } = drive(core, { before: () => void (peak = Math.max(peak, core.blocks.numBlocks - core.blocks.numFree)) });
    expect(steps[0]!.scheduled.chunks.map((c) => c.seq.id)).toEqual(["r#0"]);
    expect(steps[1]!.scheduled.chunks.map((c) => [c.seq.id, c.numNewTokens])).toEqual([
      ["r#0", 1],
      ["r#1", 2], // 7 full blocks (28 tokens) from the cache, the last 2 recomputed
      ["r#2", 2],
    ]);
    expect(core.stats().prefixCacheHits).toBe(2 * 28);
    // 7 prompt blocks shared; each sibling adds its own tail blocks
    expect(peak).toBeLessThan(3 * 9);
    expect(seqs.map((s) => outputs.get(s.id)!.length)).toEqual([6, 6, 6]);
    // seeds seed + i: the siblings draw differently
    expect(new Set(seqs.map((s) => outputs.get(s.id)!.join(","))).size).toBeGreaterThan(1);
  });
});

describe("sliding windows", () => {
  it("frees blocks outside the window and still attends to exactly the window", () => {
    const window = 8;
    const runner = new FakeKvRunner(24, 4, V, window);
    const core = new EngineCore(runner, { maxModelLen: 96, maxNumBatchedTokens: 16, attentionWindow: window });
    const prompts = makePrompts(3, 20, 40, V, 4);
    prompts.forEach((p, i) => addRequest(core, `r${i}`, p, greedy(40)));
    let mostHeld = 0;
    const { outputs } = drive(core, {
      before: () => {
        for (const s of core.liveSequences()) mostHeld = Math.max(mostHeld, s.blocks.length);
      },
    });
    // window + a 16-token chunk spans at most ceil((8 + 16) / 4) + 1 blocks
    expect(mostHeld).toBeLessThanOrEqual(7);
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 40, V, window)));
  });
});
