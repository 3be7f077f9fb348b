/**
 * POST /v1/responses: OpenAI's Responses API — text and function tools — whole or streamed as its
 * typed events, on the chat machinery: the request becomes a chat conversation (instructions as
 * the system turn; function_call and function_call_output items as the assistant's tool calls
 * and the tool's answers) rendered by the model's template, `text.format` and forced tool choices
 * become structured outputs, and `auto` tool calls are read by the server's tool-call parser.
 * Nothing is stored: `previous_response_id` is refused and `store` is ignored, as vLLM does
 * without a response store.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { SamplingParamsInput } from "../engine/sampling_params.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, type ServerContext } from "./context.ts";
import { RequestRunner } from "./request_runner.ts";
import { readBody, unsupported } from "./request_fields.ts";
import { SseWriter } from "./sse.ts";
import { chatPromptIds, outputGrammar } from "./chat_route.ts";
import { ChatMessage, type Tool, type ToolChoice } from "./schemas.ts";
import { toolOutput } from "./tool_call_output.ts";
import { toolMode, type ToolFields } from "./tool_choice.ts";

type Message = z.infer<typeof ChatMessage>;

const inputText = z.object({ type: z.enum(["input_text", "output_text", "text"]), text: z.string() });
const inputMessage = z.object({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(z.union([inputText, z.object({ type: z.string() }).loose()]))]),
});

const functionCall = z.object({ type: z.literal("function_call"), call_id: z.string(), name: z.string().min(1), arguments: z.string() });
const functionCallOutput = z.object({ type: z.literal("function_call_output"), call_id: z.string(), output: z.string() });
const inputItem = z.union([inputMessage, functionCall, functionCallOutput]);

/** A Responses function tool: the chat tool's fields, flat. */
const ResponsesTool = z.object({
  type: z.literal("function"),
  name: z.string().min(1).max(256),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const ResponsesRequest = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(z.union([inputItem, z.object({ type: z.string() }).loose()])).min(1)]),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  text: z.object({ format: z.object({ type: z.string(), schema: z.unknown().optional(), name: z.string().optional(), strict: z.boolean().nullish() }).loose().optional() }).loose().nullish(),
  tools: z.array(ResponsesTool).nullish(),
  tool_choice: z.union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string().min(1) })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().nullish(),
});
type ResponsesRequest = z.infer<typeof ResponsesRequest>;

/** The conversation the request describes, as chat messages: instructions first, then the input items. */
function conversation(body: ResponsesRequest): Message[] {
  const out: Message[] = [];
  if (body.instructions != null) out.push({ role: "system", content: body.instructions });
  if (typeof body.input === "string") return [...out, { role: "user", content: body.input }];
  body.input.forEach((item, i) => {
    const call = functionCall.safeParse(item);
    if (call.success) {
      // consecutive calls are one assistant turn, as a chat client would send them
      const last = out.at(-1);
      const tc = { id: call.data.call_id, type: "function" as const, function: { name: call.data.name, arguments: call.data.arguments } };
      if (last?.role === "assistant" && last.tool_calls != null) out[out.length - 1] = { ...last, tool_calls: [...last.tool_calls, tc] };
      else out.push({ role: "assistant", content: null, tool_calls: [tc] });
      return;
    }
    const result = functionCallOutput.safeParse(item);
    if (result.success) {
      out.push({ role: "tool", tool_call_id: result.data.call_id, content: result.data.output });
      return;
    }
    const parsed = inputMessage.safeParse(item);
    if (!parsed.success) throw unsupported(`input.${i}`, `input items of type '${String(item.type)}' are not supported; send messages, function_call and function_call_output items`);
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

/** The Responses tool fields in chat's shape, which the tool machinery reads. */
function chatTools(body: ResponsesRequest): ToolFields {
  const tools: Tool[] | undefined = body.tools?.map((t) => ({
    type: "function",
    function: { name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? null },
  }));
  const choice = body.tool_choice;
  const toolChoice: ToolChoice | undefined = choice == null ? undefined : typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } };
  return { tools, tool_choice: toolChoice, parallel_tool_calls: body.parallel_tool_calls };
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
    const tooling = chatTools(body);
    const mode = toolMode(tooling, ctx.autoToolParser);
    admit(ctx, 1);
    const messages = conversation(body);
    const ids = await chatPromptIds(ctx, { messages, tools: tooling.tools }, true);
    if (ids.length >= ctx.maxModelLen) {
      throw ApiError.badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens; the input has ${ids.length}.`, "input", "context_length_exceeded");
    }
    const room = ctx.maxModelLen - ids.length;
    const maxTokens = Math.min(body.max_output_tokens ?? ctx.defaults.maxNewTokens ?? room, room);
    const grammar = outputGrammar({ response_format: formatOf(body) ?? null }, mode, ctx.compactJson);
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
    /**
     * The output of the finished text, read once (tool calls get fresh ids): the message (when it
     * has content) and each function call, and the text the response reports.
     */
    const finished = (text: string, status: string): Output => {
      const out = toolOutput(mode, text);
      const done = status === "completed" ? "completed" : "incomplete";
      const list: Record<string, unknown>[] = [];
      if (out.content !== undefined && (out.content !== "" || out.calls.length === 0)) {
        list.push({ type: "message", id: msgId, status: done, role: "assistant", content: [{ type: "output_text", text: out.content, annotations: [], logprobs: [] }] });
      }
      for (const c of out.calls) {
        list.push({ type: "function_call", id: `fc_${c.id.slice(c.id.lastIndexOf("-") + 1)}`, call_id: c.id, name: c.function.name, arguments: c.function.arguments, status: "completed" });
      }
      return { items: list, text: out.content ?? "" };
    };
    const shell = (status: string, output: Output | undefined, generated: number, finish: string | undefined): Record<string, unknown> => ({
      id,
      object: "response",
      created_at: createdAt,
      status,
      model: ctx.servedModelName,
      output: output?.items ?? [],
      output_text: output?.text ?? "",
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
      tool_choice: body.tool_choice ?? "auto",
      tools: body.tools ?? [],
      truncation: "disabled",
      user: body.user ?? null,
      usage:
        output === undefined
          ? null
          : { input_tokens: ids.length, input_tokens_details: { cached_tokens: 0 }, output_tokens: generated, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: ids.length + generated },
    });
    // a grammar that completes (a forced tool call, text.format) finishes its sequence with "stop" too
    const statusOf = (finish: string | undefined): string => (finish === "stop" ? "completed" : "incomplete");

    if (body.stream) {
      const sse = new SseWriter(reply.raw);
      reply.hijack();
      sse.open();
      let seq = 0;
      const send = (type: string, data: Record<string, unknown>): void => sse.event(type, { type, sequence_number: seq++, ...data });
      send("response.created", { response: shell("in_progress", undefined, 0, undefined) });
      send("response.in_progress", { response: shell("in_progress", undefined, 0, undefined) });
      // plain text streams as it comes; under tools the text is read whole, then its items go out
      const live = mode.kind === "none";
      if (live) openMessage(send, msgId);
      let text = "";
      let generated = 0;
      let finish: string | undefined;
      try {
        for await (const { delta } of runner.deltas()) {
          generated += delta.tokenIds.length;
          if (delta.finishReason !== undefined) finish = delta.finishReason;
          if (delta.text === "") continue;
          text += delta.text;
          if (live) send("response.output_text.delta", { item_id: msgId, output_index: 0, content_index: 0, delta: delta.text, logprobs: [] });
        }
      } catch (e) {
        send("error", { code: toApiError(e).code, message: toApiError(e).message, param: null });
        sse.done();
        return;
      }
      const status = statusOf(finish);
      const output = finished(text, status);
      output.items.forEach((item, index) => closeItem(send, item, index, live && index === 0));
      send(status === "completed" ? "response.completed" : "response.incomplete", { response: shell(status, output, generated, finish) });
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
    const status = statusOf(finish);
    return shell(status, finished(text, status), generated, finish);
  });
}

type Send = (type: string, data: Record<string, unknown>) => void;

/** A finished response's output items and its output_text. */
interface Output {
  readonly items: readonly Record<string, unknown>[];
  readonly text: string;
}

/** The events that open the message item before its text streams. */
function openMessage(send: Send, id: string): void {
  send("response.output_item.added", { output_index: 0, item: { type: "message", id, status: "in_progress", role: "assistant", content: [] } });
  send("response.content_part.added", { item_id: id, output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
}

/**
 * The events that finish one output item: a message's text (its deltas already sent when it
 * streamed live, else in one delta) or a function call's arguments, then the item itself.
 */
function closeItem(send: Send, item: Record<string, unknown>, index: number, streamed: boolean): void {
  const id = String(item["id"]);
  if (item["type"] === "function_call") {
    send("response.output_item.added", { output_index: index, item: { ...item, arguments: "", status: "in_progress" } });
    send("response.function_call_arguments.delta", { item_id: id, output_index: index, delta: item["arguments"] });
    send("response.function_call_arguments.done", { item_id: id, output_index: index, arguments: item["arguments"] });
    send("response.output_item.done", { output_index: index, item });
    return;
  }
  const part = (item["content"] as readonly Record<string, unknown>[])[0]!;
  const text = String(part["text"]);
  if (!streamed) {
    send("response.output_item.added", { output_index: index, item: { ...item, status: "in_progress", content: [] } });
    send("response.content_part.added", { item_id: id, output_index: index, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
    if (text !== "") send("response.output_text.delta", { item_id: id, output_index: index, content_index: 0, delta: text, logprobs: [] });
  }
  send("response.output_text.done", { item_id: id, output_index: index, content_index: 0, text, logprobs: [] });
  send("response.content_part.done", { item_id: id, output_index: index, content_index: 0, part });
  send("response.output_item.done", { output_index: index, item });
}
