/**
 * The OpenAI surface as clients use it: fields the server does not know are dropped with one
 * warning per name (as vLLM), `model` may be left out, no-op forms of tools pass while legacy function
 * calls are refused by name, vLLM's prompt_logprobs, echo with its logprobs'
 * text offsets, max_tokens 0 with echo, suffix and image parts refused with the messages clients
 * match on, continuous usage in streams, and "abort" for a stream the server cuts short.
 */
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import type { CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { fortuneServer, MODEL } from "./server_fixture.ts";

let app: FastifyInstance;
let created: CreatedEngine;
const logLines: string[] = [];

beforeAll(async () => {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const s = await fortuneServer({ logger: { level: "warn", stream } });
  app = s.app;
  created = s.created;
});
afterAll(async () => {
  await app.close();
  created.engine.close();
});

const post = (url: string, payload: Record<string, unknown>) => app.inject({ method: "POST", url, payload });

function errorOf(res: { statusCode: number; json: () => unknown }): { message: string; param: string | null; code: string | null } {
  return (res.json() as { error: { message: string; param: string | null; code: string | null } }).error;
}

/** The JSON chunks of an SSE body. */
function chunks(body: string): Record<string, unknown>[] {
  return body
    .split("\n\n")
    .filter((l) => l.startsWith("data: {"))
    .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>);
}

describe("leniency as vLLM", () => {
  it("drops fields it does not know, warning once per field name", async () => {
    const extra = { store: false, metadata: { a: "b" }, service_tier: "auto", reasoning_effort: "low", prompt_cache_key: "k", stream_options: { include_usage: true, include_obfuscation: false } };
    for (let i = 0; i < 2; i++) {
      const res = await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2, stream: true, ...extra });
      expect(res.statusCode).toBe(200);
      const c = await post("/v1/completions", { model: MODEL, prompt: "hi", max_tokens: 2, store: true });
      expect(c.statusCode).toBe(200);
    }
    const warnings = logLines.filter((l) => l.includes("ignoring the unknown request field"));
    for (const f of ["store", "metadata", "service_tier", "reasoning_effort", "prompt_cache_key"]) {
      expect(warnings.filter((w) => w.includes(`'${f}'`)).length).toBe(1);
    }
  });

  it("leaves model optional: the served model answers", async () => {
    const res = await post("/v1/completions", { prompt: "You will", max_tokens: 2 });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ model: string }>().model).toBe(MODEL);
    const chat = await post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    expect(chat.statusCode).toBe(200);
  });

  it("accepts the no-op forms of response_format and tools, refuses legacy function calling by name", async () => {
    const msg = [{ role: "user", content: "hi" }];
    expect((await post("/v1/chat/completions", { messages: msg, max_tokens: 2, response_format: { type: "text" } })).statusCode).toBe(200);
    expect((await post("/v1/chat/completions", { messages: msg, max_tokens: 2, tools: [], tool_choice: "none", parallel_tool_calls: false })).statusCode).toBe(200);
    const legacy = await post("/v1/chat/completions", { messages: msg, max_tokens: 2, functions: [] });
    expect(legacy.statusCode).toBe(400);
    expect(errorOf(legacy)).toMatchObject({ param: "functions", code: "unsupported" });
    // tool calls are served now (tool_calling.test.ts); asking for one without tools is the client's mistake
    const noTools = await post("/v1/chat/completions", { messages: msg, max_tokens: 2, tool_choice: "required" });
    expect(noTools.statusCode).toBe(400);
    expect(errorOf(noTools)).toMatchObject({ param: "tool_choice" });
  });
});

describe("prompt_logprobs (vLLM)", () => {
  it("gives each prompt token's logprob and rank, the first none", async () => {
    const prompt = "The secret of life is";
    const ids = created.tokenizer.encode(prompt, { addSpecialTokens: true });
    const res = await post("/v1/completions", { prompt, max_tokens: 1, prompt_logprobs: 2, temperature: 0 });
    const choice = res.json<{ choices: { prompt_logprobs: (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[] }[] }>().choices[0]!;
    expect(choice.prompt_logprobs.length).toBe(ids.length);
    expect(choice.prompt_logprobs[0]).toBeNull();
    choice.prompt_logprobs.slice(1).forEach((entry, i) => {
      const actual = entry![String(ids[i + 1])]!;
      expect(actual.logprob).toBeLessThanOrEqual(0);
      expect(actual.rank).toBeGreaterThanOrEqual(1);
      const ranks = Object.values(entry!).map((e) => e.rank);
      expect(ranks).toContain(1);
    });
    const chat = await post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 1, prompt_logprobs: 0 });
    expect(chat.json<{ prompt_logprobs: unknown[] }>().prompt_logprobs[0]).toBeNull();
  });
});

describe("echo", () => {
  it("text_offset rises with the text, and each generated token starts where its text does", async () => {
    for (const stream of [false, true]) {
      const res = await post("/v1/completions", { prompt: "You will", max_tokens: 8, temperature: 0, echo: true, logprobs: 1, stream });
      let text: string;
      let offsets: number[];
      let tokens: string[];
      if (stream) {
        const cs = chunks(res.body).map((c) => (c["choices"] as { text: string; logprobs: { text_offset: number[]; tokens: string[] } | null }[])[0]!);
        text = cs.map((c) => c.text).join("");
        offsets = cs.flatMap((c) => c.logprobs?.text_offset ?? []);
        tokens = cs.flatMap((c) => c.logprobs?.tokens ?? []);
      } else {
        const c = res.json<{ choices: { text: string; logprobs: { text_offset: number[]; tokens: string[] } }[] }>().choices[0]!;
        text = c.text;
        offsets = c.logprobs.text_offset;
        tokens = c.logprobs.tokens;
      }
      expect(text.startsWith("You will")).toBe(true);
      expect(offsets.length).toBe(tokens.length);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]!).toBeGreaterThanOrEqual(offsets[i - 1]!);
      expect(Math.max(...offsets)).toBeLessThanOrEqual(text.length);
      // the first generated token (after BOS, "You", " will") starts right after the echoed prompt
      const promptTokens = created.tokenizer.encode("You will", { addSpecialTokens: true }).length;
      expect(offsets[promptTokens]).toBe("You will".length);
    }
  });

  it("with max_tokens 0 returns the prompt alone, with its logprobs when asked", async () => {
    const res = await post("/v1/completions", { prompt: "Never trust", max_tokens: 0, echo: true, logprobs: 0 });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ choices: { text: string; logprobs: { tokens: string[] } }[]; usage: { completion_tokens: number } }>();
    expect(body.choices[0]!.text).toBe("Never trust");
    expect(body.choices[0]!.logprobs.tokens.length).toBe(created.tokenizer.encode("Never trust", { addSpecialTokens: true }).length);
    expect(body.usage.completion_tokens).toBe(0);
    const refused = await post("/v1/completions", { prompt: "Never trust", max_tokens: 0 });
    expect(refused.statusCode).toBe(400);
    expect(errorOf(refused).param).toBe("max_tokens");
  });
});

describe("messages clients match on", () => {
  it("suffix is not currently supported", async () => {
    const res = await post("/v1/completions", { prompt: "def f(", suffix: "return x", max_tokens: 4 });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toBe("suffix is not currently supported");
  });

  it("an image part names its type", async () => {
    const res = await post("/v1/chat/completions", {
      messages: [{ role: "user", content: [{ type: "text", text: "what is this" }, { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }] }],
      max_tokens: 2,
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res)).toMatchObject({ param: "messages.0.content.1", code: "unsupported" });
    expect(errorOf(res).message).toContain("'image_url'");
  });
});

describe("streams", () => {
  it("continuous_usage_stats puts the running usage in every chunk", async () => {
    for (const url of ["/v1/completions", "/v1/chat/completions"]) {
      const req = url === "/v1/completions" ? { prompt: "You will" } : { messages: [{ role: "user", content: "hi" }] };
      const res = await post(url, { ...req, max_tokens: 5, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
      const cs = chunks(res.body);
      const usages = cs.map((c) => c["usage"] as { completion_tokens: number; prompt_tokens: number } | null);
      expect(usages.every((u) => u !== null)).toBe(true);
      const counts = usages.map((u) => u!.completion_tokens);
      for (let i = 1; i < counts.length; i++) expect(counts[i]!).toBeGreaterThanOrEqual(counts[i - 1]!);
      expect(counts.at(-1)).toBe(5);
    }
  });

  it("a stream the server cuts short ends with finish_reason abort, not length", async () => {
    const s = await fortuneServer();
    try {
      const pending = s.app.inject({ method: "POST", url: "/v1/completions", payload: { prompt: "You will", max_tokens: 1000, ignore_eos: true, stream: true } });
      await new Promise((r) => setTimeout(r, 150));
      s.created.engine.close();
      const res = await pending;
      const last = chunks(res.body).at(-1)!;
      expect((last["choices"] as { finish_reason: string }[])[0]!.finish_reason).toBe("abort");
    } finally {
      await s.app.close();
    }
  });
});
