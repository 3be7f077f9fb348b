/** POST /v1/chat/completions: the model's chat template, then generation, whole or streamed. */
import type { FastifyInstance } from "fastify";
import type { PositionLogprobs } from "../engine/logprobs.ts";
import { isKilnError } from "../errors.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, tokenText, type ServerContext } from "./context.ts";
import { readBody, refuseUnsupportedOutput, unsupported } from "./request_fields.ts";
import { chatLogprobs, openaiFinish, openaiUsage, promptLogprobsOut, responseId, unixNow } from "./openai_format.ts";
import { RequestRunner } from "./request_runner.ts";
import { chatParams } from "./request_params.ts";
import { ChatCompletionRequest, type ChatMessage } from "./schemas.ts";
import { SseWriter } from "./sse.ts";
import { requestedGrammar } from "./structured_output.ts";
import type { z } from "zod";

type Message = z.infer<typeof ChatMessage>;

/** A message's text; parts the model cannot read and tool-call history are refused by name. */
function messageText(m: Message, i: number): string {
  if ((m.tool_calls?.length ?? 0) > 0 || m.role === "tool") {
    throw unsupported(`messages.${i}`, "tool-call history (assistant tool_calls, tool messages) is not supported yet");
  }
  if (typeof m.content === "string") return m.content;
  if (m.content == null) return "";
  return m.content
    .map((p, j) => {
      if (p.type === "text" && "text" in p && typeof p.text === "string") return p.text;
      throw unsupported(`messages.${i}.content.${j}`, `content parts of type '${p.type}' are not supported: this model reads text only`);
    })
    .join("");
}

/**
 * Renders the conversation with the model's template and tokenizes it (the template places any
 * BOS). The messages' text is held to the prompt bound before the template runs.
 */
export async function chatPromptIds(ctx: ServerContext, messages: readonly Message[], addGenerationPrompt: boolean): Promise<number[]> {
  const flat = messages.map((m, i) => ({ role: m.role, content: messageText(m, i) }));
  ctx.prompts.checkLength(
    flat.reduce((n, m) => n + m.content.length, 0),
    "messages",
  );
  let rendered: string;
  try {
    rendered = ctx.tokenizer.applyChatTemplate(flat, { addGenerationPrompt });
  } catch (e) {
    if (isKilnError(e)) throw ApiError.badRequest(e.message, "messages", e.code);
    throw e;
  }
  return ctx.prompts.encode(rendered, { addSpecialTokens: false, param: "messages" });
}

export function registerChat(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/chat/completions", async (request, reply) => {
    const body = readBody(ChatCompletionRequest, request.body, ctx.unknownFields, "/v1/chat/completions");
    refuseUnsupportedOutput(body);
    checkModel(ctx, body.model);
    admit(ctx, 1);
    const ids = await chatPromptIds(ctx, body.messages, body.add_generation_prompt ?? true);
    const params = chatParams(body, ids.length, ctx.maxModelLen, ctx.defaults);
    const grammar = requestedGrammar(body, ctx.compactJson);
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
          if (delta.text === "" && delta.finishReason === undefined && lps === null) continue;
          sse.send({
            ...base,
            choices: [
              {
                index: delta.index,
                delta: delta.text === "" ? {} : { content: delta.text },
                logprobs: lps,
                finish_reason: openaiFinish(delta.finishReason),
                stop_reason: delta.stopReason ?? null,
              },
            ],
            ...running,
          });
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
        .map(([index, a]) => ({
          index,
          message: { role: "assistant", content: a.text },
          logprobs: body.logprobs ? chatLogprobs(a.ids, a.lps, text) : null,
          finish_reason: a.finish ?? null,
          stop_reason: a.stop ?? null,
        })),
      usage,
      ...(body.prompt_logprobs == null ? {} : { prompt_logprobs: promptLogprobsOut(promptLps ?? [], text) }),
    };
  });
}
