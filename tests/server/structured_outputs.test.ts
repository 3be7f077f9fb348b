/**
 * Structured outputs through the server, with the official `openai` client where it has a helper
 * (chat.completions.parse with a zod schema). The fortune model cannot follow instructions, so
 * the tests assert the constraint, not the content: every output parses and matches its schema,
 * regex, choice list or grammar, streamed or not, with n > 1, and under KV preemption.
 */
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { FastifyInstance } from "fastify";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../../runtime/io/model_loader.ts";
import { buildServer } from "../../runtime/server/app.ts";
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

const Fortune = z.object({
  mood: z.enum(["happy", "sad", "wise"]),
  lucky: z.number().int(),
  soon: z.boolean(),
  tags: z.array(z.enum(["love", "money", "travel"])),
});
const FORTUNE_SCHEMA = z.toJSONSchema(Fortune);

const post = (url: string, payload: Record<string, unknown>) => app.inject({ method: "POST", url, payload });
const chatText = (body: string): string[] => (JSON.parse(body) as { choices: { message: { content: string } }[] }).choices.map((c) => c.message.content);

describe("structured outputs", () => {
  it("openai's chat.completions.parse with a zod schema gets a parsed object, seed after seed", async () => {
    for (const seed of [1, 2, 3, 4]) {
      const res = await client.chat.completions.parse({
        model: MODEL,
        messages: [{ role: "user", content: "Tell my fortune as JSON" }],
        response_format: zodResponseFormat(Fortune, "fortune"),
        max_tokens: 200,
        temperature: 1,
        seed,
      });
      const choice = res.choices[0]!;
      expect(choice.finish_reason).toBe("stop");
      expect(Fortune.parse(choice.message.parsed)).toEqual(choice.message.parsed);
    }
  });

  it("json_schema on completions, streamed and whole, n = 3: every choice parses against the schema", async () => {
    for (const stream of [false, true]) {
      const res = await post("/v1/completions", {
        prompt: "Your fortune:",
        max_tokens: 200,
        n: 3,
        seed: 7,
        stream,
        response_format: { type: "json_schema", json_schema: { name: "fortune", schema: FORTUNE_SCHEMA } },
      });
      expect(res.statusCode).toBe(200);
      const texts = new Map<number, string>();
      if (stream) {
        for (const l of res.body.split("\n\n").filter((x) => x.startsWith("data: {"))) {
          for (const c of (JSON.parse(l.slice(6)) as { choices: { index: number; text: string }[] }).choices) texts.set(c.index, (texts.get(c.index) ?? "") + c.text);
        }
      } else {
        for (const c of res.json<{ choices: { index: number; text: string }[] }>().choices) texts.set(c.index, c.text);
      }
      expect(texts.size).toBe(3);
      for (const t of texts.values()) expect(Fortune.safeParse(JSON.parse(t)).success).toBe(true);
    }
  });

  it("json_object, guided_regex, guided_choice and guided_grammar hold", async () => {
    const messages = [{ role: "user", content: "Answer" }];
    let objects = 0;
    for (const seed of [11, 12, 13]) {
      // any JSON value may nest without end: a choice cut at max_tokens is a prefix, one that stopped must parse
      const obj = await post("/v1/chat/completions", { messages, max_tokens: 300, seed, response_format: { type: "json_object" } });
      const c = (JSON.parse(obj.body) as { choices: { message: { content: string }; finish_reason: string }[] }).choices[0]!;
      if (c.finish_reason === "stop") {
        expect(typeof JSON.parse(c.message.content)).toBe("object");
        objects++;
      }
      const re = await post("/v1/chat/completions", { messages, max_tokens: 40, seed, guided_regex: "\\d{3}-[a-z]{2,5}" });
      expect(chatText(re.body)[0]).toMatch(/^\d{3}-[a-z]{2,5}$/);
      const choice = await post("/v1/completions", { prompt: "Is it?", max_tokens: 10, seed, guided_choice: ["yes", "no", "ask again later"] });
      expect(["yes", "no", "ask again later"]).toContain(choice.json<{ choices: { text: string }[] }>().choices[0]!.text);
      const grammar = 'root ::= "The " fruit " is " color\nfruit ::= "apple" | "plum"\ncolor ::= "red" | "green" | "blue"';
      const g = await post("/v1/completions", { prompt: "Say", max_tokens: 20, seed, guided_grammar: grammar });
      expect(g.json<{ choices: { text: string }[] }>().choices[0]!.text).toMatch(/^The (apple|plum) is (red|green|blue)$/);
    }
    expect(objects).toBeGreaterThan(0);
  });

  it("a schema, regex or grammar the compiler rejects is a 400 naming it; two structures at once are refused", async () => {
    const messages = [{ role: "user", content: "x" }];
    const bad = await post("/v1/chat/completions", { messages, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "nonsense" } } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { code: string; message: string } }>().error).toMatchObject({ code: "GRAMMAR_INVALID" });
    const badRegex = await post("/v1/completions", { prompt: "x", guided_regex: "[a-" });
    expect(badRegex.statusCode).toBe(400);
    const both = await post("/v1/completions", { prompt: "x", guided_regex: "a", guided_choice: ["b"] });
    expect(both.statusCode).toBe(400);
    // the server still answers constrained requests afterwards
    const ok = await post("/v1/completions", { prompt: "x", max_tokens: 8, guided_choice: ["fine"] });
    expect(ok.json<{ choices: { text: string }[] }>().choices[0]!.text).toBe("fine");
  });
});

describe("structured outputs under preemption", () => {
  it("32 concurrent constrained requests in a small KV pool all parse, and every block returns", async () => {
    const created = await createEngine({ modelDir: DEFAULT_MODEL_DIR, numBlocks: 24, maxModelLen: 256, maxNumBatchedTokens: 64 });
    const server = buildServer({
      engine: created.engine,
      tokenizer: created.tokenizer,
      servedModelName: MODEL,
      maxModelLen: created.maxModelLen,
      defaults: loadGenerationConfig(DEFAULT_MODEL_DIR),
      compactJson: true,
    });
    try {
      const outs = await Promise.all(
        Array.from({ length: 32 }, (_, i) =>
          server.inject({
            method: "POST",
            url: "/v1/completions",
            payload: { prompt: `Fortune number ${i}:`, max_tokens: 150, seed: i, response_format: { type: "json_schema", json_schema: { name: "f", schema: FORTUNE_SCHEMA } } },
          }),
        ),
      );
      for (const res of outs) {
        expect(res.statusCode).toBe(200);
        const c = res.json<{ choices: { text: string; finish_reason: string }[] }>().choices[0]!;
        expect(c.finish_reason).toBe("stop");
        expect(Fortune.safeParse(JSON.parse(c.text)).success).toBe(true);
      }
      const stats = created.engine.stats();
      expect(stats.numPreemptions).toBeGreaterThan(0);
      expect(stats.numFreeBlocks).toBe(stats.numBlocks);
    } finally {
      await server.close();
      created.engine.close();
    }
  }, 120_000);
});
