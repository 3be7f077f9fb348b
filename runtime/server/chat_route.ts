/** POST /v1/chat/completions: the model's chat template, then generation, whole or streamed. */
import type { FastifyInstance } from "fastify";
import type { PositionLogprobs } from "../engine/logprobs.ts";
import { isKilnError } from "../engine/errors.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, tokenText, type ServerContext } from "./context.ts";
import { readBody } from "./request_fields.ts";
import { chatLogprobs, openaiFinish, openaiUsage, promptLogprobsOut, responseId, unixNow } from "./openai_format.ts";
import { RequestRunner } from "./request_runner.ts";
import { chatParams } from "./request_params.ts";
import { templateMessages, templateTools } from "./chat_messages.ts";
import { ChatCompletionRequest, type ChatMessage, type Tool } from "./schemas.ts";
import { SseWriter } from "./sse.ts";
import { requestedGrammar, type StructuredOutputFields } from "./structured_output.ts";
import { toolCallDeltas, toolFinishReason, toolOutput, ToolStream } from "./tool_call_output.ts";
import { toolMode, type ToolMode } from "./tool_choice.ts";
import type { GrammarSpec } from "../engine/grammar/grammar_spec.ts";
import type { z } from "zod";

type Message = z.infer<typeof ChatMessage>;

/** What the prompt is rendered from: the conversation, the tools and extra template variables. */
export interface ChatPromptFields {
  readonly messages: readonly Message[];
  readonly tools?: readonly Tool[] | null | undefined;
  readonly chat_template_kwargs?: Readonly<Record<string, unknown>> | null | undefined;
}

/**
 * Renders the conversation with the model's template and tokenizes it (the template places any
 * BOS). The messages' text is held to the prompt bound before the template runs.
 */
export async function chatPromptIds(ctx: ServerContext, body: ChatPromptFields, addGenerationPrompt: boolean): Promise<number[]> {
  const messages = templateMessages(body.messages);
  ctx.prompts.checkLength(
    messages.reduce((n, m) => n + m.content.length, 0),
    "messages",
  );
  let rendered: string;
  try {
    rendered = ctx.tokenizer.applyChatTemplate(messages, {
      addGenerationPrompt,
      tools: templateTools(body.tools),
      kwargs: body.chat_template_kwargs ?? undefined,
    });
  } catch (e) {
    if (isKilnError(e)) throw ApiError.badRequest(e.message, "messages", e.code);
    throw e;
  }
  return ctx.prompts.encode(rendered, { addSpecialTokens: false, param: "messages" });
}

/** The one output constraint of a request: a structured-output grammar or a forced tool call, not both. */
export function outputGrammar(body: StructuredOutputFields, mode: ToolMode, compact: boolean): GrammarSpec | undefined {
  const structured = requestedGrammar(body, compact);
  if (mode.kind !== "required" && mode.kind !== "named") return structured;
  if (structured !== undefined) throw ApiError.badRequest("a forced tool call cannot be combined with a structured output format", "tool_choice", "invalid_value");
  const g = mode.grammar;
  return compact && g.kind === "json_schema" ? { ...g, anyWhitespace: false } : g;
}

export function registerChat(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/chat/completions", async (request, reply) => {
    const body = readBody(ChatCompletionRequest, request.body, ctx.unknownFields, "/v1/chat/completions");
    const mode = toolMode(body, ctx.autoToolParser);
    checkModel(ctx, body.model);
    admit(ctx, 1);
    const ids = await chatPromptIds(ctx, body, body.add_generation_prompt ?? true);
    const params = chatParams(body, ids.length, ctx.maxModelLen, ctx.defaults);
    const grammar = outputGrammar(body, mode, ctx.compactJson);
    const constraint = grammar === undefined ? undefined : await ctx.structured.constraint(grammar);
    const id = responseId("chatcmpl");
    const runner = new RequestRunner(ctx.engine, ctx.metrics);
    runner.start([ids], [params], `${id}-${request.id}`, constraint);
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) runner.abort();
    });
    const text = tokenText(ctx);
    const created = unixNow();

    if (body.stream) {
      const base = { id, object: "chat.completion.chunk", created, model: ctx.servedModelName };
      const sse = new SseWriter(reply.raw);
      reply.hijack();
      sse.open();
      const started = new Set<number>();
      const streams = new Map<number, ToolStream>();
      let usage: ReturnType<typeof openaiUsage> | undefined;
      const continuous = body.stream_options?.include_usage === true && body.stream_options.continuous_usage_stats === true;
      let generated = 0;
      try {
        for await (const { delta } of runner.deltas()) {
          generated += delta.tokenIds.length;
          const running = continuous ? { usage: { prompt_tokens: ids.length, completion_tokens: generated, total_tokens: ids.length + generated } } : {};
          if (!started.has(delta.index)) {
            started.add(delta.index);
            sse.send({
              ...base,
              choices: [{ index: delta.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
              ...(delta.promptLogprobs && body.prompt_logprobs != null ? { prompt_logprobs: promptLogprobsOut(delta.promptLogprobs, text) } : {}),
              ...running,
            });
          }
          if (delta.usage) usage = openaiUsage(delta.usage);
          const lps = body.logprobs && delta.tokenIds.length > 0 ? chatLogprobs(delta.tokenIds, delta.logprobs ?? [], text) : null;
          let stream = streams.get(delta.index);
          if (!stream) streams.set(delta.index, (stream = new ToolStream(mode)));
          const content = stream.push(delta.text);
          const finish = openaiFinish(delta.finishReason);
          const choice = (d: unknown, lp: typeof lps, f: typeof finish | "tool_calls"): unknown => ({
            index: delta.index,
            delta: d,
            logprobs: lp,
            finish_reason: f,
            stop_reason: f === null ? null : (delta.stopReason ?? null),
          });
          if (finish !== null && mode.kind !== "none") {
            // the held text is read for calls now: remaining content first, then each call, then the finish
            const end = stream.finish();
            const rest = content + end.content;
            if (rest !== "" || lps !== null) sse.send({ ...base, choices: [choice(rest === "" ? {} : { content: rest }, lps, null)], ...running });
            for (const d of toolCallDeltas(end.output.calls)) sse.send({ ...base, choices: [choice(d, null, null)], ...running });
            sse.send({ ...base, choices: [choice({}, null, toolFinishReason(mode, end.output, finish))], ...running });
            continue;
          }
          if (content === "" && finish === null && lps === null) continue;
          sse.send({ ...base, choices: [choice(content === "" ? {} : { content }, lps, finish)], ...running });
        }
      } catch (e) {
        // the status line is gone: the failure travels as an event, as vLLM sends it
        sse.fail(toApiError(e));
        return;
      }
      if (body.stream_options?.include_usage && usage) sse.send({ ...base, choices: [], usage });
      sse.done();
      return;
    }

    const acc = new Map<number, { text: string; ids: number[]; lps: PositionLogprobs[]; finish?: ReturnType<typeof openaiFinish>; stop?: string | number }>();
    let usage: ReturnType<typeof openaiUsage> | undefined;
    let promptLps: readonly (PositionLogprobs | undefined)[] | undefined;
    for await (const { delta } of runner.deltas()) {
      if (delta.promptLogprobs) promptLps = delta.promptLogprobs;
      let a = acc.get(delta.index);
      if (!a) acc.set(delta.index, (a = { text: "", ids: [], lps: [] }));
      a.text += delta.text;
      a.ids.push(...delta.tokenIds);
      if (delta.logprobs) a.lps.push(...delta.logprobs);
      if (delta.finishReason !== undefined) a.finish = openaiFinish(delta.finishReason);
      if (delta.stopReason !== undefined) a.stop = delta.stopReason;
      if (delta.usage) usage = openaiUsage(delta.usage);
    }
    if (reply.raw.destroyed) return reply;
    return {
      id,
      object: "chat.completion",
      created,
      model: ctx.servedModelName,
      choices: [...acc.entries()]
        .sort(([x], [y]) => x - y)
        .map(([index, a]) => {
          const out = toolOutput(mode, a.text);
          return {
            index,
            message: { role: "assistant", content: out.content ?? null, ...(out.calls.length > 0 ? { tool_calls: out.calls } : {}) },
            logprobs: body.logprobs ? chatLogprobs(a.ids, a.lps, text) : null,
            finish_reason: toolFinishReason(mode, out, a.finish ?? null),
            stop_reason: a.stop ?? null,
          };
        }),
      usage,
      ...(body.prompt_logprobs == null ? {} : { prompt_logprobs: promptLogprobsOut(promptLps ?? [], text) }),
    };
  });
}
