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
import { MODEL } from "./server_fixture.ts";

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

  it("refuses stored state and tools by name", async () => {
    const post = (payload: Record<string, unknown>) => app.inject({ method: "POST", url: "/v1/responses", payload });
    const prev = await post({ input: "x", previous_response_id: "resp_1" });
    expect(prev.statusCode).toBe(400);
    expect((prev.json() as { error: { param: string } }).error.param).toBe("previous_response_id");
    const tools = await post({ input: "x", tools: [{ type: "function", name: "f", parameters: {} }] });
    expect(tools.statusCode).toBe(400);
    const image = await post({ input: [{ role: "user", content: [{ type: "input_image", image_url: "data:," }] }] });
    expect(image.statusCode).toBe(400);
  });
});
