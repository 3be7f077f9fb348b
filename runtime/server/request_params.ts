/**
 * OpenAI request fields → the engine's sampling parameters, with the model's
 * generation_config.json supplying defaults the request leaves out (as vLLM does), and the
 * context-window checks that turn an oversize request into a 400 stating both lengths.
 */
import type { SamplingParamsInput } from "../engine/sampling_params.ts";
import type { GenerationDefaults } from "../io/generation_config.ts";
import { ApiError } from "./api_error.ts";
import type { ChatCompletionRequest, CompletionRequest } from "./schemas.ts";

type Common = CompletionRequest | ChatCompletionRequest;

const opt = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

function commonParams(body: Common, defaults: GenerationDefaults): SamplingParamsInput {
  const stop = opt(body.stop);
  const topK = opt(body.top_k);
  return {
    n: opt(body.n),
    temperature: opt(body.temperature) ?? defaults.temperature,
    topP: opt(body.top_p) ?? defaults.topP,
    // vLLM's API spells "no top-k" as -1 or 0
    topK: topK === undefined ? defaults.topK : topK <= 0 ? undefined : topK,
    minP: opt(body.min_p),
    repetitionPenalty: opt(body.repetition_penalty) ?? defaults.repetitionPenalty,
    presencePenalty: opt(body.presence_penalty),
    frequencyPenalty: opt(body.frequency_penalty),
    logitBias: opt(body.logit_bias),
    seed: opt(body.seed),
    stop: stop === undefined ? undefined : typeof stop === "string" ? [stop] : stop,
    stopTokenIds: opt(body.stop_token_ids),
    ignoreEos: opt(body.ignore_eos),
    minTokens: opt(body.min_tokens),
    skipSpecialTokens: opt(body.skip_special_tokens),
    includeStopStrInOutput: opt(body.include_stop_str_in_output),
  };
}

/** Room left for output; a prompt that leaves none is refused, naming both lengths. */
function outputBudget(promptLen: number, maxModelLen: number, requested: number | undefined, param: string): number {
  if (promptLen >= maxModelLen) {
    throw ApiError.badRequest(
      `This model's maximum context length is ${maxModelLen} tokens. However, your prompt has ${promptLen} tokens, ` +
        `which leaves no room for output. Please shorten the prompt.`,
      "prompt",
      "context_length_exceeded",
    );
  }
  if (requested !== undefined && promptLen + requested > maxModelLen) {
    throw ApiError.badRequest(
      `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${promptLen + requested} tokens ` +
        `(${promptLen} in the prompt, ${requested} for the completion). Please reduce the prompt or ${param}.`,
      param,
      "context_length_exceeded",
    );
  }
  return requested ?? maxModelLen - promptLen;
}

export function completionParams(
  body: CompletionRequest,
  promptLen: number,
  maxModelLen: number,
  defaults: GenerationDefaults,
): SamplingParamsInput {
  if (body.best_of != null && body.best_of !== (body.n ?? 1)) {
    throw ApiError.badRequest("best_of different from n is not supported", "best_of", "unsupported");
  }
  const requested = opt(body.max_tokens);
  if (requested === 0 && body.echo !== true) throw ApiError.badRequest("max_tokens may be 0 only with echo (the prompt alone)", "max_tokens", "invalid_value");
  // OpenAI's completions default is 16 tokens; max_tokens 0 with echo runs the prompt and one
  // token, which the route drops (the prompt's logprobs need the prefill)
  const maxTokens = outputBudget(promptLen, maxModelLen, requested === 0 ? 1 : (requested ?? Math.min(16, maxModelLen - promptLen)), "max_tokens");
  const logprobs = opt(body.logprobs);
  const echoed = body.echo && logprobs !== undefined ? logprobs : undefined;
  const asked = opt(body.prompt_logprobs);
  return {
    ...commonParams(body, defaults),
    maxTokens,
    logprobs,
    promptLogprobs: echoed === undefined ? asked : Math.max(echoed, asked ?? 0),
  };
}

export function chatParams(body: ChatCompletionRequest, promptLen: number, maxModelLen: number, defaults: GenerationDefaults): SamplingParamsInput {
  const requested = opt(body.max_completion_tokens) ?? opt(body.max_tokens) ?? defaults.maxNewTokens;
  const param = body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = outputBudget(promptLen, maxModelLen, requested === undefined ? undefined : Math.min(requested, Number.MAX_SAFE_INTEGER), param);
  if (body.top_logprobs != null && !body.logprobs) {
    throw ApiError.badRequest("top_logprobs needs logprobs set to true", "top_logprobs", "invalid_value");
  }
  return {
    ...commonParams(body, defaults),
    maxTokens,
    logprobs: body.logprobs ? (opt(body.top_logprobs) ?? 0) : undefined,
    promptLogprobs: opt(body.prompt_logprobs),
  };
}
