/**
 * Per-sequence state slots with a test-double model whose output depends on its state: slots are
 * allocated and zeroed on start, carried across prefill chunks, freed on finish / abort /
 * preemption, and bound how many sequences run.
 */
import { describe, expect, it } from "vitest";
import { EngineCore } from "../../runtime/engine/engine_core.ts";
import { StateSlots } from "../../runtime/engine/state_slots.ts";
import { addRequest, drive, greedy } from "./drive.ts";
import { FakeStateRunner, makePrompts, referenceStateGreedy } from "./fake_runner.ts";

const V = 64;

describe("StateSlots", () => {
  it("hands out, zeroes and takes back fixed-size slots", () => {
    const pool = new StateSlots([{ name: "conv", shape: [3, 2], dtype: "f32" }, { name: "ssm", shape: [4], dtype: "bf16" }], 2);
    const a = pool.allocate()!;
    const b = pool.allocate()!;
    expect([a, b]).toEqual([0, 1]);
    expect(pool.allocate()).toBeUndefined();
    const conv = pool.view(a, "conv");
    expect(conv.length).toBe(6);
    expect(pool.view(b, "ssm")).toBeInstanceOf(Uint16Array);
    conv.fill(3);
    pool.view(b, "conv").fill(5);
    pool.reset(a);
    expect([...pool.view(a, "conv")]).toEqual([0, 0, 0, 0, 0, 0]);
    expect([...pool.view(b, "conv")]).toEqual([5, 5, 5, 5, 5, 5]);
    pool.free(a);
    expect(pool.numFree).toBe(1);
    expect(() => pool.view(a, "conv")).toThrow(/not allocated/);
    expect(() => pool.free(a)).toThrow(/not allocated/);
  });
});

describe("the engine with stateful layers", () => {
  it("carries state across chunks, resets it for each sequence and never runs more sequences than slots", () => {
    const runner = new FakeStateRunner(64, 4, 3, V);
    const core = new EngineCore(runner, { maxModelLen: 64, maxNumBatchedTokens: 8 });
    const prompts = makePrompts(8, 3, 30, V, 4);
    prompts.forEach((p, i) => addRequest(core, `r${i}`, p, greedy(6)));
    const { outputs, steps } = drive(core);
    expect(Math.max(...steps.map((s) => s.scheduled.chunks.length))).toBe(3);
    expect(runner.steps.some((st) => st.some((c) => c.numCached > 0 && c.tokens.length > 1))).toBe(true); // chunked prefill happened
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceStateGreedy(p, 6, V)));
    expect(runner.statePool.numFree).toBe(3);
  });

  it("restarts a preempted sequence from a fresh state and frees slots on abort", () => {
    // 8 blocks of 4: the three sequences outgrow the KV pool and get preempted
    const runner = new FakeStateRunner(8, 4, 4, V);
    const core = new EngineCore(runner, { maxModelLen: 32 });
    const prompts = makePrompts(4, 7, 7, V, 6);
    prompts.forEach((p, i) => addRequest(core, `r${i}`, p, greedy(12)));
    const { outputs } = drive(core, {
      before: (i) => {
        if (i === 3) core.abortRequest("r3");
      },
    });
    expect(core.stats().numPreemptions).toBeGreaterThan(0);
    prompts.slice(0, 3).forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceStateGreedy(p, 12, V)));
    expect(runner.statePool.numFree).toBe(4);
  });

  it("does not take prefix-cache hits for stateful models (the state at the prefix is not kept)", () => {
    const runner = new FakeStateRunner(64, 4, 2, V);
    const core = new EngineCore(runner, { maxModelLen: 64 });
    const p = makePrompts(1, 20, 20, V, 8)[0]!;
    addRequest(core, "a", p, greedy(3));
    drive(core);
    addRequest(core, "b", p, greedy(3));
    const { outputs } = drive(core);
    expect(core.stats().prefixCacheHits).toBe(0);
    expect(outputs.get("b")).toEqual(referenceStateGreedy(p, 3, V));
  });
});
