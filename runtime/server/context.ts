/** What every route needs: the engine, the tokenizer, limits and metrics. */
import type { Engine } from "../engine/engine.ts";
import type { GenerationDefaults } from "../io/generation_config.ts";
import type { KilnTokenizer } from "../io/tokenizer.ts";
import { ApiError } from "./api_error.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { PromptTokenizer } from "./prompt_tokenizer.ts";
import type { UnknownFieldLog } from "./request_fields.ts";
import type { StructuredOutputs } from "./structured_output.ts";
import type { ToolParser } from "./tool_parsers/tool_parser.ts";

export interface ServerContext {
  readonly engine: Engine;
  readonly tokenizer: KilnTokenizer;
  /** prompt text → ids, bounded and off the event loop when long */
  readonly prompts: PromptTokenizer;
  readonly servedModelName: string;
  readonly maxModelLen: number;
  readonly defaults: GenerationDefaults;
  readonly metrics: ServerMetrics;
  /** response_format / guided_* → a token constraint per sequence */
  readonly structured: StructuredOutputs;
  /** JSON outputs in the compact layout (no free whitespace between tokens) */
  readonly compactJson: boolean;
  /** the tool-call parser "auto" tool choice reads outputs with; undefined unless --enable-auto-tool-choice */
  readonly autoToolParser: ToolParser | undefined;
  /** unknown request fields, each reported once */
  readonly unknownFields: UnknownFieldLog;
  /** running + queued engine requests allowed before new ones get 503 */
  readonly maxPendingRequests: number;
}


export function checkModel(ctx: ServerContext, model: string | null | undefined): void {
  if (model != null && model !== ctx.servedModelName) {
    throw new ApiError(404, `The model \`${model}\` does not exist.`, "NotFoundError", "model", "model_not_found");
  }
}

/**
 * Refuses work past the pending-request bound: 503 with Retry-After while the server is busy, but
 * 400 for a request that could never fit (more prompts than the bound itself), which a client
 * must not retry. Runs before any tokenizing.
 */
export function admit(ctx: ServerContext, numRequests: number): void {
  if (numRequests > ctx.maxPendingRequests) {
    throw ApiError.badRequest(
      `The request has ${numRequests} prompts; this server takes at most ${ctx.maxPendingRequests} at once (--max-pending-requests).`,
      "prompt",
      "too_many_prompts",
    );
  }
  const pending = ctx.engine.stats().numRequests;
  if (pending + numRequests > ctx.maxPendingRequests) {
    throw new ApiError(
      503,
      `The server is at capacity (${pending} requests pending, limit ${ctx.maxPendingRequests}); retry shortly.`,
      "server_overloaded",
      null,
      "overloaded",
    );
  }
}

/** Decoded text of one token, as logprobs report it. */
export function tokenText(ctx: ServerContext): (id: number) => string {
  return (id) => ctx.tokenizer.decode([id], { skipSpecialTokens: false });
}
