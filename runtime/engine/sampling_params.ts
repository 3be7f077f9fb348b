/**
 * Sampling parameters, with the meanings OpenAI and vLLM give them, validated once when a request
 * arrives. Defaults are vLLM's SamplingParams defaults. Absent optional knobs are `undefined`
 * (no -1 for "off": an API edge that speaks vLLM's top_k = -1 maps it to undefined).
 */
import { KilnError } from "./errors.ts";

export interface SamplingParams {
  /** completions per prompt; they share the prompt's KV blocks */
  readonly n: number;
  /** 0 (below 1e-5) is greedy */
  readonly temperature: number;
  /** nucleus: keep the most likely tokens until their mass reaches topP; (0, 1] */
  readonly topP: number;
  /** keep the k most likely tokens (ties with the k-th kept); undefined = all */
  readonly topK: number | undefined;
  /** drop tokens below minP × the best token's probability; [0, 1] */
  readonly minP: number;
  /** > 0; 1 = off. Divides positive (multiplies negative) logits of tokens seen in prompt or output */
  readonly repetitionPenalty: number;
  /** [-2, 2]; subtracted once from the logit of every token already generated */
  readonly presencePenalty: number;
  /** [-2, 2]; subtracted per occurrence of the token in the generated text */
  readonly frequencyPenalty: number;
  /** token id → bias in [-100, 100] added to its logit */
  readonly logitBias: ReadonlyMap<number, number>;
  /** a seeded request samples the same tokens whatever else is in the batch */
  readonly seed: number | undefined;
  /** generation stops when the text contains one of these; the text is cut before it */
  readonly stop: readonly string[];
  /** generation stops after one of these ids (besides EOS) */
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  /** stop tokens and strings are held off until this many tokens are generated */
  readonly minTokens: number;
  readonly maxTokens: number;
  /** top-N log-probabilities per generated token (0: the chosen token's only); undefined = none */
  readonly logprobs: number | undefined;
  /** the same for each prompt token */
  readonly promptLogprobs: number | undefined;
  readonly skipSpecialTokens: boolean;
  readonly includeStopStrInOutput: boolean;
}

/** What a caller may pass: every field optional, logit_bias as a JSON-style record or a map. */
export type SamplingParamsInput = {
  readonly [K in Exclude<keyof SamplingParams, "logitBias">]?: SamplingParams[K] | undefined;
} & {
  readonly logitBias?: Readonly<Record<string, number>> | ReadonlyMap<number, number> | undefined;
};

export const SAMPLING_DEFAULTS: SamplingParams = {
  n: 1,
  temperature: 1,
  topP: 1,
  topK: undefined,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: new Map(),
  seed: undefined,
  stop: [],
  stopTokenIds: [],
  ignoreEos: false,
  minTokens: 0,
  maxTokens: 16,
  logprobs: undefined,
  promptLogprobs: undefined,
  skipSpecialTokens: true,
  includeStopStrInOutput: false,
};

/** vLLM's _SAMPLING_EPS: temperatures below this sample greedily. */
export const GREEDY_EPSILON = 1e-5;

export function isGreedy(p: Pick<SamplingParams, "temperature">): boolean {
  return p.temperature < GREEDY_EPSILON;
}

export interface SamplingLimits {
  readonly vocabSize: number;
  /** the most logprobs a request may ask for (vLLM's max_logprobs, 20) */
  readonly maxLogprobs: number;
}

export function resolveSamplingParams(input: SamplingParamsInput | undefined, limits: SamplingLimits): SamplingParams {
  const d = SAMPLING_DEFAULTS;
  const i = input ?? {};
  const tokenId = (field: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= limits.vocabSize) fail(field, `a token id in 0..${limits.vocabSize - 1}`, v);
    return v;
  };
  const logprobCount = (field: string, v: unknown): number | undefined => {
    if (v === undefined) return undefined;
    const want = `an integer in 0..${limits.maxLogprobs}`;
    if (int(field, v, 0, want) > limits.maxLogprobs) fail(field, want, v);
    return int(field, v, 0, want);
  };

  const maxTokens = i.maxTokens === undefined ? d.maxTokens : int("maxTokens", i.maxTokens, 1, "an integer ≥ 1");
  const minTokens = i.minTokens === undefined ? d.minTokens : int("minTokens", i.minTokens, 0, "an integer ≥ 0");
  if (minTokens > maxTokens) fail("minTokens", `at most maxTokens (${maxTokens})`, minTokens);
  const stop: unknown = i.stop ?? d.stop;
  if (!Array.isArray(stop) || !stop.every((s): s is string => typeof s === "string" && s.length > 0)) fail("stop", "a list of non-empty strings", stop);

  return {
    n: i.n === undefined ? d.n : int("n", i.n, 1, "an integer ≥ 1"),
    temperature: i.temperature === undefined ? d.temperature : num("temperature", i.temperature, 0, Infinity, "a number ≥ 0"),
    topP: i.topP === undefined ? d.topP : topP(i.topP),
    topK: i.topK === undefined ? d.topK : int("topK", i.topK, 1, "an integer ≥ 1 (leave it out to keep all tokens)"),
    minP: i.minP === undefined ? d.minP : num("minP", i.minP, 0, 1, "a number in [0, 1]"),
    repetitionPenalty: i.repetitionPenalty === undefined ? d.repetitionPenalty : positive("repetitionPenalty", i.repetitionPenalty),
    presencePenalty: i.presencePenalty === undefined ? d.presencePenalty : num("presencePenalty", i.presencePenalty, -2, 2, "a number in [-2, 2]"),
    frequencyPenalty:
      i.frequencyPenalty === undefined ? d.frequencyPenalty : num("frequencyPenalty", i.frequencyPenalty, -2, 2, "a number in [-2, 2]"),
    logitBias: logitBias(i.logitBias, tokenId),
    seed: i.seed === undefined ? d.seed : int("seed", i.seed, Number.MIN_SAFE_INTEGER, "an integer"),
    stop,
    stopTokenIds: (i.stopTokenIds ?? d.stopTokenIds).map((t) => tokenId("stopTokenIds", t)),
    ignoreEos: i.ignoreEos === undefined ? d.ignoreEos : bool("ignoreEos", i.ignoreEos),
    minTokens,
    maxTokens,
    logprobs: logprobCount("logprobs", i.logprobs),
    promptLogprobs: logprobCount("promptLogprobs", i.promptLogprobs),
    skipSpecialTokens: i.skipSpecialTokens === undefined ? d.skipSpecialTokens : bool("skipSpecialTokens", i.skipSpecialTokens),
    includeStopStrInOutput:
      i.includeStopStrInOutput === undefined ? d.includeStopStrInOutput : bool("includeStopStrInOutput", i.includeStopStrInOutput),
  };
}

function fail(field: string, want: string, got: unknown): never {
  throw new KilnError("SAMPLING_PARAMS_INVALID", `${field} must be ${want}, got ${JSON.stringify(got) ?? String(got)}`);
}

function num(field: string, v: unknown, lo: number, hi: number, want: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi) fail(field, want, v);
  return v;
}

function int(field: string, v: unknown, lo: number, want: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < lo) fail(field, want, v);
  return v;
}

function bool(field: string, v: unknown): boolean {
  if (typeof v !== "boolean") fail(field, "true or false", v);
  return v;
}

function topP(v: unknown): number {
  if (typeof v !== "number" || !(v > 0 && v <= 1)) fail("topP", "a number in (0, 1]", v);
  return v;
}

function positive(field: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) fail(field, "a number > 0", v);
  return v;
}

function logitBias(v: SamplingParamsInput["logitBias"], tokenId: (field: string, v: unknown) => number): ReadonlyMap<number, number> {
  if (v === undefined) return SAMPLING_DEFAULTS.logitBias;
  const entries: [unknown, unknown][] = v instanceof Map ? [...v.entries()] : Object.entries(v);
  const out = new Map<number, number>();
  for (const [k, b] of entries) {
    // JSON object keys are strings ("50256"): accept decimal integer strings only
    const id = typeof k === "string" && /^\d+$/.test(k) ? Number(k) : k;
    out.set(tokenId("logitBias key", id), num(`logitBias[${String(k)}]`, b, -100, 100, "a number in [-100, 100]"));
  }
  return out;
}
