/**
 * POST /v1/responses: OpenAI's Responses API for text in and text out, whole or streamed as its
 * typed events, on the chat machinery (the model's chat template, the engine, structured outputs
 * for `text.format`). Nothing is stored: `previous_response_id` is refused and `store` is
 * ignored, as vLLM does without a response store. Function tools are not served here yet.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { SamplingParamsInput } from "../engine/sampling_params.ts";
import { isKilnError } from "../errors.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, type ServerContext } from "./context.ts";
import { RequestRunner } from "./request_runner.ts";
import { readBody, unsupported } from "./request_fields.ts";
import { SseWriter } from "./sse.ts";
import { requestedGrammar } from "./structured_output.ts";

const inputText = z.object({ type: z.enum(["input_text", "output_text", "text"]), text: z.string() });
const inputMessage = z.object({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(z.union([inputText, z.object({ type: z.string() }).loose()]))]),
});

const ResponsesRequest = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(z.union([inputMessage, z.object({ type: z.string() }).loose()])).min(1)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  text: z.object({ format: z.object({ type: z.string(), schema: z.unknown().optional(), name: z.string().optional(), strict: z.boolean().nullish() }).loose().optional() }).loose().nullish(),
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  parallel_tool_calls: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().nullish(),
});
type ResponsesRequest = z.infer<typeof ResponsesRequest>;

/** The conversation the request describes: instructions as the system turn, then the input. */
function conversation(body: ResponsesRequest): { role: string; content: string }[] {
  const out: { role: string; content: string }[] = [];
  if (body.instructions != null) out.push({ role: "system", content: body.instructions });
  if (typeof body.input === "string") return [...out, { role: "user", content: body.input }];
  body.input.forEach((item, i) => {
    const parsed = inputMessage.safeParse(item);
    if (!parsed.success) throw unsupported(`input.${i}`, `input items of type '${String(item.type)}' are not supported; send messages`);
    const m = parsed.data;
    const content =
      typeof m.content === "string"
        ? m.content
        : m.content
            .map((p, j) => {
              if ("text" in p && typeof p.text === "string") return p.text;
              throw unsupported(`input.${i}.content.${j}`, `content parts of type '${p.type}' are not supported: this model reads text only`);
            })
            .join("");
    out.push({ role: m.role === "developer" ? "system" : m.role, content });
  });
  return out;
}

/** text.format → the same grammar request shape chat uses. */
function formatOf(body: ResponsesRequest): { type: string; json_schema?: unknown } | undefined {
  const f = body.text?.format;
  if (f === undefined || f.type === "text") return undefined;
  if (f.type === "json_schema") return { type: "json_schema", json_schema: { name: f.name, schema: f.schema, strict: f.strict } };
  return { type: f.type };
}

export function registerResponses(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/responses", async (request, reply) => {
    const body = readBody(ResponsesRequest, request.body, ctx.unknownFields, "/v1/responses");
    checkModel(ctx, body.model);
    if (body.previous_response_id != null) throw unsupported("previous_response_id", "previous_response_id needs stored responses, which this server does not keep");
    if ((body.tools?.length ?? 0) > 0) throw unsupported("tools", "tools are not supported on /v1/responses yet");
    admit(ctx, 1);
    const messages = conversation(body);
    ctx.prompts.checkLength(
      messages.reduce((n, m) => n + m.content.length, 0),
      "input",
    );
    let rendered: string;
    try {
      rendered = ctx.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    } catch (e) {
      if (isKilnError(e)) throw ApiError.badRequest(e.message, "input", e.code);
      throw e;
    }
    const ids = await ctx.prompts.encode(rendered, { addSpecialTokens: false, param: "input" });
    if (ids.length >= ctx.maxModelLen) {
      throw ApiError.badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens; the input has ${ids.length}.`, "input", "context_length_exceeded");
    }
    const room = ctx.maxModelLen - ids.length;
    const maxTokens = Math.min(body.max_output_tokens ?? ctx.defaults.maxNewTokens ?? room, room);
    const format = formatOf(body);
    const grammar = requestedGrammar({ response_format: format ?? null }, ctx.compactJson);
    const constraint = grammar === undefined ? undefined : await ctx.structured.constraint(grammar);
    const params: SamplingParamsInput = {
      temperature: body.temperature ?? ctx.defaults.temperature,
      topP: body.top_p ?? ctx.defaults.topP,
      topK: ctx.defaults.topK,
      repetitionPenalty: ctx.defaults.repetitionPenalty,
      maxTokens,
    };
    const id = `resp_${randomUUID().replaceAll("-", "")}`;
    const msgId = `msg_${randomUUID().replaceAll("-", "")}`;
    const runner = new RequestRunner(ctx.engine, ctx.metrics);
    runner.start([ids], [params], `${id}-${request.id}`, constraint);
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) runner.abort();
    });
    const createdAt = Math.floor(Date.now() / 1000);
    const shell = (status: string, text: string, generated: number, finish: string | undefined): Record<string, unknown> => ({
      id,
      object: "response",
      created_at: createdAt,
      status,
      model: ctx.servedModelName,
      output:
        status === "in_progress"
          ? []
          : [{ type: "message", id: msgId, status: status === "completed" ? "completed" : "incomplete", role: "assistant", content: [{ type: "output_text", text, annotations: [], logprobs: [] }] }],
      output_text: text,
      error: null,
      incomplete_details: status === "incomplete" ? { reason: finish === "abort" ? "interrupted" : "max_output_tokens" } : null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      metadata: body.metadata ?? {},
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      previous_response_id: null,
      store: false,
      temperature: body.temperature ?? 1,
      top_p: body.top_p ?? 1,
      text: { format: body.text?.format ?? { type: "text" } },
      tool_choice: "auto",
      tools: [],
      truncation: "disabled",
      user: body.user ?? null,
      usage:
        status === "in_progress"
          ? null
          : { input_tokens: ids.length, input_tokens_details: { cached_tokens: 0 }, output_tokens: generated, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: ids.length + generated },
    });
    const statusOf = (finish: string | undefined): string => (finish === "stop" ? "completed" : "incomplete");

    if (body.stream) {
      const sse = new SseWriter(reply.raw);
      reply.hijack();
      sse.open();
      let seq = 0;
      const send = (type: string, data: Record<string, unknown>): void => sse.event(type, { type, sequence_number: seq++, ...data });
      send("response.created", { response: shell("in_progress", "", 0, undefined) });
      send("response.in_progress", { response: shell("in_progress", "", 0, undefined) });
      const item = { type: "message", id: msgId, status: "in_progress", role: "assistant", content: [] };
      send("response.output_item.added", { output_index: 0, item });
      send("response.content_part.added", { item_id: msgId, output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
      let text = "";
      let generated = 0;
      let finish: string | undefined;
      try {
        for await (const { delta } of runner.deltas()) {
          generated += delta.tokenIds.length;
          if (delta.finishReason !== undefined) finish = delta.finishReason;
          if (delta.text === "") continue;
          text += delta.text;
          send("response.output_text.delta", { item_id: msgId, output_index: 0, content_index: 0, delta: delta.text, logprobs: [] });
        }
      } catch (e) {
        send("error", { code: toApiError(e).code, message: toApiError(e).message, param: null });
        sse.done();
        return;
      }
      const status = statusOf(finish);
      const part = { type: "output_text", text, annotations: [] };
      send("response.output_text.done", { item_id: msgId, output_index: 0, content_index: 0, text, logprobs: [] });
      send("response.content_part.done", { item_id: msgId, output_index: 0, content_index: 0, part });
      send("response.output_item.done", { output_index: 0, item: { ...item, status: status === "completed" ? "completed" : "incomplete", content: [part] } });
      send(status === "completed" ? "response.completed" : "response.incomplete", { response: shell(status, text, generated, finish) });
      sse.end();
      return;
    }

    let text = "";
    let generated = 0;
    let finish: string | undefined;
    for await (const { delta } of runner.deltas()) {
      text += delta.text;
      generated += delta.tokenIds.length;
      if (delta.finishReason !== undefined) finish = delta.finishReason;
    }
    if (reply.raw.destroyed) return reply;
    return shell(statusOf(finish), text, generated, finish);
  });
}
