/**
 * LangChain JS (@langchain/openai's ChatOpenAI) against kiln: invoke and stream, and
 * withStructuredOutput in its JSON-schema method (response_format json_schema), whose result
 * parses against the zod schema. The fortune model cannot follow instructions: the tests assert
 * the constraint, not the content.
 */
import { ChatOpenAI } from "@langchain/openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { listeningServer, type ListeningServer } from "./client_fixture.ts";
import { MODEL } from "./server_fixture.ts";

let server: ListeningServer;
let chat: ChatOpenAI;

beforeAll(async () => {
  server = await listeningServer({ compactJson: true });
  chat = new ChatOpenAI({ model: MODEL, apiKey: "unused", configuration: { baseURL: server.client.baseURL }, maxRetries: 0, temperature: 0, maxTokens: 16 });
});
afterAll(async () => server.close());

describe("LangChain ChatOpenAI", () => {
  it("invokes and streams the same text", async () => {
    const whole = await chat.invoke("Tell me a fortune");
    expect(typeof whole.content).toBe("string");
    expect(String(whole.content).length).toBeGreaterThan(0);
    let streamed = "";
    for await (const chunk of await chat.stream("Tell me a fortune")) streamed += String(chunk.content);
    expect(streamed).toBe(whole.content);
  });

  it("withStructuredOutput (json schema) returns objects that parse", async () => {
    const Fortune = z.object({ mood: z.enum(["happy", "sad", "wise"]), lucky: z.number().int(), soon: z.boolean() });
    const structured = new ChatOpenAI({ model: MODEL, apiKey: "unused", configuration: { baseURL: server.client.baseURL }, maxRetries: 0, maxTokens: 120 }).withStructuredOutput(Fortune, {
      method: "jsonSchema",
      name: "fortune",
    });
    for (let i = 0; i < 3; i++) {
      const out = await structured.invoke(`Fortune number ${i}`);
      expect(Fortune.parse(out)).toEqual(out);
    }
  });
});
