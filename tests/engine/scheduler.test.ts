/**
 * The scheduler and block manager driven through EngineCore with a fake model: budgets, chunked
 * prefill, mixed steps, preemption order and recovery, abort in every state, and block-count
 * conservation after every step of random event sequences.
 */
import { describe, expect, it } from "vitest";
import { EngineCore, type EngineCoreOptions } from "../../runtime/engine/engine_core.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { addRequest, drive, greedy } from "./drive.ts";
import { FakeKvRunner, makePrompts, referenceGreedy } from "./fake_runner.ts";

const V = 64;

function core(runner: FakeKvRunner, opts: Partial<EngineCoreOptions> = {}): EngineCore {
  return new EngineCore(runner, { maxModelLen: 64, ...opts });
}

describe("scheduler budgets and chunking", () => {
  it("respects the token budget and maxNumSeqs and matches the reference outputs", () => {
    const runner = new FakeKvRunner(64, 4, V);
    const c = core(runner, { maxNumBatchedTokens: 32, maxNumSeqs: 6 });
    const prompts = makePrompts(20, 5, 40, V, 1);
    prompts.forEach((p, i) => addRequest(c, `r${i}`, p, greedy(3 + (i % 8))));
    const { outputs, steps } = drive(c);
    for (const s of steps) {
      const tokens = s.scheduled.chunks.reduce((n, ch) => n + ch.numNewTokens, 0);
      expect(tokens).toBe(s.scheduled.numBatchedTokens);
      expect(tokens).toBeLessThanOrEqual(32);
      expect(s.scheduled.chunks.length).toBeLessThanOrEqual(6);
    }
    expect(runner.steps.every((st) => st.reduce((n, ch) => n + ch.tokens.length, 0) <= 32)).toBe(true);
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 3 + (i % 8), V)));
  });

  it("chunks a long prompt to the budget and mixes a decode into the same step", () => {
    const runner = new FakeKvRunner(64, 4, V);
    const c = core(runner, { maxNumBatchedTokens: 16, maxModelLen: 128 });
    const short = makePrompts(1, 6, 6, V, 2)[0]!;
    const long = makePrompts(1, 45, 45, V, 3)[0]!;
    addRequest(c, "short", short, greedy(8));
    // the long prompt arrives after the short one's prefill
    const { outputs } = drive(c, { before: (i) => void (i === 1 && addRequest(c, "long", long, greedy(4))) });
    const sizes = runner.steps.slice(1).map((st) => st.map((ch) => ch.tokens.length));
    // each step: the short sequence's decode (1 token) beside a 15-token prompt chunk
    expect(sizes.slice(0, 3)).toEqual([
      [1, 15],
      [1, 15],
      [1, 15],
    ]);
    const chunkStarts = runner.steps.flat().filter((ch) => ch.tokens.length > 1 || ch.numCached < 45).map((ch) => ch.numCached);
    expect(chunkStarts).toContain(30);
    expect(runner.steps[1]![1]!.noLogits).toBe(true);
    expect(outputs.get("short")).toEqual(referenceGreedy(short, 8, V));
    expect(outputs.get("long")).toEqual(referenceGreedy(long, 4, V));
  });

  it("refuses a pool that cannot hold one maxModelLen sequence, and a budget below it without chunking", () => {
    const catchCode = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return isKilnError(e) ? e.code : "other";
      }
      return undefined;
    };
    expect(catchCode(() => core(new FakeKvRunner(4, 4, V), { maxModelLen: 32 }))).toBe("KV_EXHAUSTED");
    expect(catchCode(() => core(new FakeKvRunner(64, 4, V), { maxModelLen: 64, maxNumBatchedTokens: 32, enableChunkedPrefill: false }))).toBe(
      "INVALID_ARGUMENT",
    );
    const c = core(new FakeKvRunner(64, 4, V), { maxModelLen: 16 });
    expect(catchCode(() => addRequest(c, "x", makePrompts(1, 16, 16, V, 1)[0]!, greedy(1)))).toBe("PROMPT_TOO_LONG");
    expect(catchCode(() => addRequest(c, "y", [], greedy(1)))).toBe("INVALID_ARGUMENT");
    expect(catchCode(() => addRequest(c, "z", [V], greedy(1)))).toBe("INVALID_ARGUMENT");
  });
});

describe("preemption", () => {
  // 8 blocks of 4 = 32 slots; three 7-token prompts fill 6 blocks, and decoding outgrows the pool
  const prompts = makePrompts(3, 7, 7, V, 5);

  it("preempts the newest running sequence first (fcfs) and the preempted ones finish correctly", () => {
    const c = core(new FakeKvRunner(8, 4, V), { maxModelLen: 32 });
    prompts.forEach((p, i) => addRequest(c, `r${i}`, p, greedy(12)));
    const { outputs, steps } = drive(c);
    const order = steps.flatMap((s) => s.scheduled.preempted.map((q) => q.id));
    expect(order.slice(0, 2)).toEqual(["r2", "r1"]);
    expect(c.stats().numPreemptions).toBeGreaterThanOrEqual(2);
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 12, V)));
  });

  it("preempts the lowest priority (latest on ties) under the priority policy", () => {
    const c = core(new FakeKvRunner(8, 4, V), { maxModelLen: 32, policy: "priority" });
    const priorities = [2, 0, 1];
    prompts.forEach((p, i) => addRequest(c, `r${i}`, p, greedy(12), priorities[i]));
    const { outputs, steps } = drive(c);
    const first = steps.find((s) => s.scheduled.preempted.length > 0)!;
    expect(first.scheduled.preempted[0]!.id).toBe("r0");
    // admission follows priority: r1, r2, r0
    expect(steps[0]!.scheduled.chunks.map((ch) => ch.seq.id)).toEqual(["r1", "r2", "r0"]);
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 12, V)));
  });

  it("does the same without prefix caching (full recompute)", () => {
    const c = core(new FakeKvRunner(8, 4, V), { maxModelLen: 32, enablePrefixCaching: false });
    prompts.forEach((p, i) => addRequest(c, `r${i}`, p, greedy(12)));
    const { outputs } = drive(c);
    expect(c.stats().numPreemptions).toBeGreaterThan(0);
    expect(c.stats().prefixCacheHits).toBe(0);
    prompts.forEach((p, i) => expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 12, V)));
  });
});

describe("abort", () => {
  const prompts = makePrompts(4, 5, 30, V, 9);
  const scenario = (): EngineCore => {
    const c = core(new FakeKvRunner(12, 4, V), { maxModelLen: 48, maxNumBatchedTokens: 12 });
    prompts.forEach((p, i) => addRequest(c, `r${i}`, p, greedy(10)));
    return c;
  };
  const total = drive(scenario()).steps.length;

  it("returns every block whatever state the request is in, and the others finish unchanged", () => {
    const states = new Set<string>();
    for (let victim = 0; victim < prompts.length; victim++) {
      for (let at = 0; at <= total; at++) {
        const c = scenario();
        const { outputs } = drive(c, {
          before: (i) => {
            if (i !== at) return;
            const seq = c.liveSequences().find((s) => s.id === `r${victim}`);
            const state = seq === undefined ? "finished" : seq.status === "running" && seq.numComputed < seq.numPromptTokens ? "prefilling" : seq.status;
            states.add(state);
            expect(c.abortRequest(`r${victim}`)).toBe(seq !== undefined);
          },
        });
        prompts.forEach((p, i) => {
          if (i !== victim) expect(outputs.get(`r${i}`)).toEqual(referenceGreedy(p, 10, V));
        });
      }
    }
    expect([...states].sort()).toEqual(["finished", "preempted", "prefilling", "running", "waiting"]);
  });
});

describe("random event sequences", () => {
  it("conserves blocks after every step and finishes every request correctly", () => {
    let x = 12345;
    const rand = (n: number): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return (x >>> 8) % n;
    };
    for (const caching of [true, false]) {
      const c = core(new FakeKvRunner(20, 4, V), { maxModelLen: 48, maxNumBatchedTokens: 20, maxNumSeqs: 5, enablePrefixCaching: caching });
      const shared = makePrompts(1, 12, 12, V, 77)[0]!;
      const expected = new Map<string, number[]>();
      const aborted = new Set<string>();
      let next = 0;
      const { outputs } = drive(c, {
        maxSteps: 2000,
        minSteps: 300,
        before: (i) => {
          if (i < 300 && rand(3) === 0) {
            const id = `q${next++}`;
            const own = makePrompts(1, 1, 20, V, next)[0]!;
            const prompt = rand(2) === 0 ? [...shared, ...own] : own;
            const maxTokens = 1 + rand(14);
            addRequest(c, id, prompt, greedy(maxTokens));
            expected.set(id, referenceGreedy(prompt, maxTokens, V));
          }
          if (rand(10) === 0) {
            const live = c.liveSequences();
            const victim = live[rand(Math.max(1, live.length))];
            if (victim) {
              c.abortRequest(victim.requestId);
              aborted.add(victim.requestId);
            }
          }
        },
      });
      expect(next).toBeGreaterThan(50);
      if (caching) expect(c.stats().prefixCacheHits).toBeGreaterThan(0);
      expect(c.stats().numPreemptions).toBeGreaterThan(0);
      for (const [id, want] of expected) {
        if (!aborted.has(id)) expect(outputs.get(id)).toEqual(want);
      }
    }
  });
});
