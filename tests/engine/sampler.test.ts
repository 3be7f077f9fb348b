/**
 * Sampling semantics on hand-made logits: the exact token sets top-k / top-p / min-p keep, the
 * logit changes penalties and logit_bias make (as vLLM and OpenAI define them), min_tokens,
 * logprob ranks, seeded reproducibility whatever the batch, and parameter validation.
 */
import { describe, expect, it } from "vitest";
import { EngineCore } from "../../runtime/engine/engine_core.ts";
import { applyLogitBias, applyPenalties } from "../../runtime/engine/logits_processors.ts";
import { positionLogprobs } from "../../runtime/engine/logprobs.ts";
import { argmax, drawToken, filterDistribution, sampleToken, type FilterParams } from "../../runtime/engine/sampler.ts";
import { resolveSamplingParams, type SamplingParamsInput } from "../../runtime/engine/sampling_params.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { Rng } from "../../runtime/engine/rng.ts";
import { addRequest, drive } from "./drive.ts";
import { FakeKvRunner, makePrompts } from "./fake_runner.ts";

const params = (p: SamplingParamsInput = {}) => resolveSamplingParams(p, { vocabSize: 8, maxLogprobs: 20 });
const logitsOf = (probs: number[]): Float32Array => Float32Array.from(probs.map(Math.log));
const kept = (row: Float32Array, p: Partial<FilterParams>): number[] =>
  [...filterDistribution(row, { temperature: 1, topK: undefined, topP: 1, minP: 0, ...p }).ids].sort((a, b) => a - b);

describe("filtering", () => {
  const row = logitsOf([0.1, 0.4, 0.2, 0.3]);

  it("top-k keeps the k most likely, ties with the k-th included", () => {
    expect(kept(row, { topK: 1 })).toEqual([1]);
    expect(kept(row, { topK: 2 })).toEqual([1, 3]);
    expect(kept(row, { topK: 4 })).toEqual([0, 1, 2, 3]);
    expect(kept(Float32Array.from([3, 2, 2, 1]), { topK: 2 })).toEqual([0, 1, 2]);
  });

  it("top-p keeps the most likely tokens until their mass reaches p", () => {
    expect(kept(row, { topP: 0.3 })).toEqual([1]);
    expect(kept(row, { topP: 0.5 })).toEqual([1, 3]);
    expect(kept(row, { topP: 0.65 })).toEqual([1, 3]);
    expect(kept(row, { topP: 0.75 })).toEqual([1, 2, 3]);
    expect(kept(row, { topP: 0.95 })).toEqual([0, 1, 2, 3]);
  });

  it("min-p keeps tokens at least minP times as likely as the best", () => {
    expect(kept(row, { minP: 0.45 })).toEqual([1, 2, 3]);
    expect(kept(row, { minP: 0.6 })).toEqual([1, 3]);
    expect(kept(row, { minP: 1 })).toEqual([1]);
  });

  it("applies min-p, then top-k, then top-p over what is left, renormalising each time", () => {
    // top-k 3 leaves {1: .4, 3: .3, 2: .2} → renormalised .444, .333, .222; top-p .75 stops before token 2
    expect(kept(row, { topK: 3, topP: 0.75 })).toEqual([1, 3]);
    // min-p .6 leaves {1, 3}; top-p .5 of (.571, .429) keeps token 1 only
    expect(kept(row, { minP: 0.6, topP: 0.5 })).toEqual([1]);
    const d = filterDistribution(row, { temperature: 1, topK: 2, topP: 1, minP: 0 });
    expect(d.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(d.probs[d.ids.indexOf(1)]).toBeCloseTo(0.4 / 0.7, 6);
  });

  it("matches a plain sort-everything filter on large random vocabularies", () => {
    const rng = new Rng(9);
    const naive = (row: Float32Array, p: FilterParams): number[] => {
      const max = Math.max(...row);
      const e = Array.from(row, (x) => Math.exp((x - max) / p.temperature));
      let ids = e.map((_, i) => i).filter((i) => e[i]! > 0 && e[i]! >= p.minP);
      ids.sort((a, b) => e[b]! - e[a]! || a - b);
      if (p.topK !== undefined && p.topK < ids.length) ids = ids.filter((i) => e[i]! >= e[ids[p.topK! - 1]!]!);
      const mass = ids.reduce((s, i) => s + e[i]!, 0);
      let before = 0;
      let keep = 0;
      while (keep < ids.length && before < p.topP * mass) before += e[ids[keep++]!]!;
      return ids.slice(0, Math.max(1, keep)).sort((a, b) => a - b);
    };
    for (let trial = 0; trial < 20; trial++) {
      const row = Float32Array.from({ length: 3000 }, () => rng.next() * (1 + (trial % 4)));
      const p: FilterParams = {
        temperature: 0.5 + (trial % 3) * 0.5,
        topK: trial % 2 === 0 ? undefined : 50 + trial * 37,
        topP: [1, 0.9, 0.5, 0.99][trial % 4]!,
        minP: trial % 5 === 0 ? 0.2 : 0,
      };
      expect(kept(row, p)).toEqual(naive(row, p));
    }
  });

  it("temperature scales the logits before the softmax", () => {
    const d = filterDistribution(Float32Array.from([2, 0]), { temperature: 2, topK: undefined, topP: 1, minP: 0 });
    expect(d.probs[d.ids.indexOf(0)]).toBeCloseTo(Math.exp(1) / (Math.exp(1) + 1), 6);
  });

  it("draws by cumulative probability", () => {
    const d = { ids: [5, 2, 7], probs: [0.5, 0.3, 0.2] };
    expect([0, 0.49, 0.5, 0.79, 0.8, 0.999].map((u) => drawToken(d, u))).toEqual([5, 5, 2, 2, 7, 7]);
  });

  it("greedy is argmax, the lowest id winning ties (as torch.argmax); -inf rows give 0", () => {
    expect(argmax(Float32Array.from([0.5, 2, -1, 2]))).toBe(1);
    expect(argmax(Float32Array.from([-Infinity, -Infinity]))).toBe(0);
    const seqCtx = { promptTokens: () => new Set<number>(), outputCounts: new Map<number, number>(), stopTokenIds: new Set<number>(), numOutputTokens: 0, rng: new Rng(1) };
    expect(sampleToken(Float32Array.from([0.5, 2, -1, 2, 0, 0, 0, 0]), { ...seqCtx, params: params({ temperature: 0 }) })).toBe(1);
  });
});

describe("logit adjustments", () => {
  const ctx = (prompt: number[], out: [number, number][]) => ({
    promptTokens: () => new Set(prompt),
    outputCounts: new Map(out),
  });

  it("repetition divides positive and multiplies negative logits of seen tokens; frequency and presence subtract", () => {
    const row = Float32Array.from([2, -2, 1, 0.5]);
    applyPenalties(row, params({ repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 }), ctx([0], [[1, 2], [2, 1]]));
    // 0: prompt only → 2 / 2; 1: out ×2 → -2·2 - 0.5·2 - 0.25; 2: out ×1 → 1/2 - 0.5 - 0.25; 3: unseen
    expect([...row]).toEqual([1, -5.25, -0.25, 0.5]);
  });

  it("frequency and presence ignore the prompt; negative values encourage repetition", () => {
    const row = Float32Array.from([0, 0, 0]);
    applyPenalties(row, params({ frequencyPenalty: -1, presencePenalty: 1 }), ctx([0, 1], [[1, 3]]));
    expect([...row]).toEqual([0, 2, 0]);
  });

  it("logit_bias adds to the logits and steers greedy decoding", () => {
    const row = Float32Array.from([1, 2, 3]);
    applyLogitBias(row, new Map([[0, 5], [2, -100]]));
    expect([...row]).toEqual([6, 2, -97]);
    const raw = Float32Array.from([1, 2, 3, 0, 0, 0, 0, 0]);
    const seqCtx = { ...ctx([], []), stopTokenIds: new Set<number>(), numOutputTokens: 0, rng: new Rng(1) };
    expect(sampleToken(raw, { ...seqCtx, params: params({ temperature: 0 }) })).toBe(2);
    expect(sampleToken(raw, { ...seqCtx, params: params({ temperature: 0, logitBias: { "4": 10 } }) })).toBe(4);
    expect([...raw]).toEqual([1, 2, 3, 0, 0, 0, 0, 0]); // the runner's row is untouched
  });

  it("min_tokens keeps the stop tokens out until enough tokens are generated", () => {
    const raw = Float32Array.from([0, 0, 9, 0, 0, 0, 0, 1]);
    const base = { ...ctx([], []), stopTokenIds: new Set([2]), rng: new Rng(1), params: params({ temperature: 0, minTokens: 3 }) };
    expect(sampleToken(raw, { ...base, numOutputTokens: 2 })).toBe(7);
    expect(sampleToken(raw, { ...base, numOutputTokens: 3 })).toBe(2);
  });
});

describe("logprobs", () => {
  it("gives the chosen token's logprob and rank and the top N with ranks 1..N", () => {
    const row = logitsOf([0.1, 0.4, 0.2, 0.3]);
    const lp = positionLogprobs(row, 2, 2);
    expect(lp.chosen.tokenId).toBe(2);
    expect(lp.chosen.logprob).toBeCloseTo(Math.log(0.2), 6);
    expect(lp.chosen.rank).toBe(3);
    expect(lp.top.map((t) => [t.tokenId, t.rank])).toEqual([
      [1, 1],
      [3, 2],
    ]);
    expect(lp.top[0]!.logprob).toBeCloseTo(Math.log(0.4), 6);
    expect(positionLogprobs(row, 1, 0).top).toEqual([]);
  });
});

describe("seeded sampling", () => {
  it("reproduces a seeded request exactly, alone or in any batch", () => {
    const V = 64;
    const prompt = makePrompts(1, 12, 12, V, 1)[0]!;
    const run = (others: number): number[] => {
      const core = new EngineCore(new FakeKvRunner(64, 4, V), { maxModelLen: 64, maxNumBatchedTokens: 16 });
      makePrompts(others, 3, 20, V, others).forEach((p, i) => addRequest(core, `o${i}`, p, { temperature: 1, maxTokens: 10, ignoreEos: true }));
      addRequest(core, "seeded", prompt, { temperature: 1.5, topP: 0.99, seed: 1234, maxTokens: 16, ignoreEos: true });
      return drive(core).outputs.get("seeded")!;
    };
    const alone = run(0);
    expect(run(5)).toEqual(alone);
    expect(run(11)).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(3); // it really sampled
  });
});

describe("parameter validation", () => {
  const code = (p: SamplingParamsInput): string | undefined => {
    try {
      params(p);
    } catch (e) {
      return isKilnError(e) ? `${e.code}: ${e.message}` : "other";
    }
    return undefined;
  };

  it("rejects out-of-range values with SAMPLING_PARAMS_INVALID and a message naming the field", () => {
    const cases: [SamplingParamsInput, string][] = [
      [{ temperature: -1 }, "temperature"],
      [{ topP: 0 }, "topP"],
      [{ topK: 0 }, "topK"],
      [{ minP: 1.5 }, "minP"],
      [{ repetitionPenalty: 0 }, "repetitionPenalty"],
      [{ presencePenalty: 3 }, "presencePenalty"],
      [{ frequencyPenalty: -2.5 }, "frequencyPenalty"],
      [{ maxTokens: 0 }, "maxTokens"],
      [{ minTokens: 5, maxTokens: 4 }, "minTokens"],
      [{ n: 0 }, "n"],
      [{ logprobs: 21 }, "logprobs"],
      [{ stop: [""] }, "stop"],
      [{ stopTokenIds: [8] }, "stopTokenIds"],
      [{ logitBias: { "99": 1 } }, "logitBias"],
      [{ logitBias: { "1": 101 } }, "logitBias"],
      [{ seed: 1.5 }, "seed"],
    ];
    for (const [p, field] of cases) expect(code(p)).toMatch(new RegExp(`^SAMPLING_PARAMS_INVALID: ${field}`));
    expect(code({ temperature: 0.7, topK: 5, topP: 0.9, logitBias: { "3": -100 }, stop: ["\n"] })).toBeUndefined();
  });
});
