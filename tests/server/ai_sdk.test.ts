/**
 * The Vercel AI SDK against kiln: generateObject / streamObject with a zod schema through the
 * OpenAI-compatible provider (chat completions with response_format json_schema), and
 * createOpenAI's default model, which speaks the Responses API. The fortune model cannot follow
 * instructions: the tests assert the constraint (the object parses against its schema), not content.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
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

describe("against kiln serve started as a user starts it", () => {
  it("generateObject through the CLI's server", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const child = spawn(process.execPath, ["bin/kiln.js", "serve", "--port", "0", "--structured-outputs-disable-any-whitespace", "--log-level", "warn"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString();
          const m = /at (http:\/\/\S+\/v1)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on("exit", () => reject(new Error(`kiln serve exited: ${out}`)));
      });
      const kiln = createOpenAICompatible({ name: "kiln", baseURL: url, apiKey: "unused", supportsStructuredOutputs: true });
      const { object } = await generateObject({ model: kiln(MODEL), schema: Fortune, prompt: "Tell my fortune", seed: 4, maxOutputTokens: 120, maxRetries: 0 });
      expect(Fortune.parse(object)).toEqual(object);
    } finally {
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    }
  }, 60_000);
});
