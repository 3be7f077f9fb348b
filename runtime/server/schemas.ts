/**
 * Request bodies of the OpenAI-compatible API, as zod schemas: one definition gives both the
 * validation and the TypeScript types. OpenAI's names, plus vLLM's sampling extras. As in vLLM,
 * a field the server does not know is dropped with a logged warning (clients add fields freely:
 * `store`, `metadata`, `service_tier`, …), and `model` may be left out. Fields whose meaning the
 * server cannot honour yet are refused by name instead (see `unsupportedFields`), so a client
 * never silently gets unconstrained output where it asked for a constraint.
 */
import { z } from "zod";

const nonNegInt = z.number().int().min(0);

/** Sampling fields shared by completions and chat completions. */
const samplingFields = {
  model: z.string().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z
    .object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() })
    .nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string().regex(/^\d+$/, "logit_bias keys are token ids"), z.number().min(-100).max(100)).nullish(),
  seed: z.number().int().nullish(),
  user: z.string().nullish(),
  // vLLM extras
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  ignore_eos: z.boolean().nullish(),
  min_tokens: nonNegInt.nullish(),
  stop_token_ids: z.array(nonNegInt).nullish(),
  skip_special_tokens: z.boolean().nullish(),
  include_stop_str_in_output: z.boolean().nullish(),
  prompt_logprobs: z.number().int().min(0).max(20).nullish(),
  // structured outputs (structured_output.ts)
  response_format: z.object({ type: z.string(), json_schema: z.unknown().optional() }).loose().nullish(),
  guided_json: z.unknown().optional(),
  guided_regex: z.string().nullish(),
  guided_choice: z.array(z.string()).min(1).nullish(),
  guided_grammar: z.string().nullish(),
  structured_outputs: z.record(z.string(), z.unknown()).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
} as const;

const tokenIds = z.array(nonNegInt).min(1);

export const CompletionRequest = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  // 0 with echo: the prompt alone
  max_tokens: z.number().int().min(0).nullish(),
  logprobs: z.number().int().min(0).max(20).nullish(),
  echo: z.boolean().nullish(),
  best_of: z.number().int().min(1).nullish(),
  suffix: z.unknown().optional(),
  // completions have no tool calling: only the no-op forms pass (request_fields.ts)
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

const textPart = z.object({ type: z.literal("text"), text: z.string() });

/** A content part of a kind the models here cannot read (images, audio, files): refused with a clear error. */
const otherPart = z.object({ type: z.string() }).loose();

/** A call the assistant made, as the client replays it: arguments are the JSON text the server returned. */
export const ToolCall = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

export const ChatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(z.union([textPart, otherPart])), z.null()]).optional(),
  name: z.string().optional(),
  tool_calls: z.array(ToolCall).nullish(),
  tool_call_id: z.string().nullish(),
});

/** A function the model may call; `parameters` is its arguments' JSON schema. */
export const Tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().min(1).max(256),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});
export type Tool = z.infer<typeof Tool>;

export const ToolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string().min(1) }) }),
]);
export type ToolChoice = z.infer<typeof ToolChoice>;

/** Extra variables for the chat template (Qwen3's `enable_thinking`, …), as vLLM's chat_template_kwargs. */
const chatTemplateKwargs = z.record(z.string(), z.unknown()).nullish();

export const ChatCompletionRequest = z.object({
  ...samplingFields,
  messages: z.array(ChatMessage).min(1),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  tools: z.array(Tool).nullish(),
  tool_choice: ToolChoice.nullish(),
  // vLLM extras for chat
  add_generation_prompt: z.boolean().nullish(),
  chat_template_kwargs: chatTemplateKwargs,
  echo: z.boolean().nullish(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const TokenizeRequest = z.union([
  z.object({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish() }),
  z.object({
    model: z.string().nullish(),
    messages: z.array(ChatMessage).min(1),
    tools: z.array(Tool).nullish(),
    chat_template_kwargs: chatTemplateKwargs,
    add_generation_prompt: z.boolean().nullish(),
    add_special_tokens: z.boolean().nullish(),
  }),
]);
export type TokenizeRequest = z.infer<typeof TokenizeRequest>;

export const DetokenizeRequest = z.object({ model: z.string().nullish(), tokens: z.array(nonNegInt) });
export type DetokenizeRequest = z.infer<typeof DetokenizeRequest>;
