/**
 * The Vercel AI SDK against kiln: generateObject / streamObject with a zod schema through the
 * OpenAI-compatible provider (chat completions with response_format json_schema), and
 * createOpenAI's default model, which speaks the Responses API. The fortune model cannot follow
 * instructions: the tests assert the constraint (the object parses against its schema), not content.
 */
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, streamObject, streamText } from "ai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { listeningServer, type ListeningServer } from "./client_fixture.ts";
import { MODEL } from "./server_fixture.ts";

let server: ListeningServer;
let baseURL: string;

beforeAll(async () => {
  server = await listeningServer({ compactJson: true });
  baseURL = server.client.baseURL;
});
afterAll(async () => server.close());

const Fortune = z.object({ mood: z.enum(["happy", "sad", "wise"]), lucky: z.number().int(), soon: z.boolean() });

describe("Vercel AI SDK", () => {
  it("generateObject and streamObject return objects that parse against the zod schema", async () => {
    const kiln = createOpenAICompatible({ name: "kiln", baseURL, apiKey: "unused", supportsStructuredOutputs: true });
    for (const seed of [1, 2, 3]) {
      const { object } = await generateObject({ model: kiln(MODEL), schema: Fortune, prompt: "Tell my fortune", seed, maxOutputTokens: 120, maxRetries: 0 });
      expect(Fortune.parse(object)).toEqual(object);
    }
    const streamed = streamObject({ model: kiln(MODEL), schema: Fortune, prompt: "Tell my fortune", seed: 9, maxOutputTokens: 120, maxRetries: 0 });
    // the SDK settles the object as the stream is read
    let partials = 0;
    for await (const _ of streamed.partialObjectStream) partials++;
    expect(partials).toBeGreaterThan(1);
    expect(Fortune.safeParse(await streamed.object).success).toBe(true);
  });

  it("createOpenAI's default model (the Responses API) generates and streams text", async () => {
    const openai = createOpenAI({ baseURL, apiKey: "unused" });
    const whole = await generateText({ model: openai(MODEL), prompt: "Tell me a fortune", maxOutputTokens: 12, temperature: 0, maxRetries: 0 });
    expect(whole.text.length).toBeGreaterThan(0);
    const stream = streamText({ model: openai(MODEL), prompt: "Tell me a fortune", maxOutputTokens: 12, temperature: 0, maxRetries: 0 });
    let text = "";
    for await (const part of stream.textStream) text += part;
    expect(text).toBe(whole.text);
  });
});
