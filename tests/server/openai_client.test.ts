/**
 * End to end with the official `openai` client against a server listening on 127.0.0.1:
 * completions and chat, streamed and not, n > 1, logprobs, disconnects, concurrency.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { fortuneServer, metricValue, MODEL } from "./server_fixture.ts";

let app: FastifyInstance;
let closeEngine: () => void;
let client: OpenAI;
let base: string;

beforeAll(async () => {
  const s = await fortuneServer();
  app = s.app;
  closeEngine = () => s.created.engine.close();
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (typeof addr !== "object" || !addr) throw new Error("no address");
  base = `http://127.0.0.1:${addr.port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await app.close();
  closeEngine();
});

async function streamText(prompt: string, maxTokens: number): Promise<string> {
  const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: maxTokens, temperature: 0, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  return text;
}

describe("OpenAI client", () => {
  it("completions: streamed text equals the whole response", async () => {
    const whole = await client.completions.create({ model: MODEL, prompt: "A computer", max_tokens: 20, temperature: 0 });
    expect(whole.choices[0]!.text.length).toBeGreaterThan(0);
    expect(await streamText("A computer", 20)).toBe(whole.choices[0]!.text);
  });

  it("chat: streamed with usage, and whole", async () => {
    const messages = [{ role: "user" as const, content: "Say something wise" }];
    const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish ??= chunk.choices[0]?.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
  });

  it("n > 1 and logprobs", async () => {
    const r = await client.completions.create({ model: MODEL, prompt: "You will", max_tokens: 5, n: 2, seed: 3, logprobs: 2 });
    expect(r.choices.length).toBe(2);
    for (const c of r.choices) {
      expect(c.logprobs?.tokens?.length).toBe(5);
      expect(c.logprobs?.top_logprobs?.[0] && Object.keys(c.logprobs.top_logprobs[0]).length).toBeGreaterThanOrEqual(2);
    }
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 4,
      logprobs: true,
      top_logprobs: 2,
      temperature: 0,
    });
    expect(chat.choices[0]!.logprobs?.content?.length).toBe(4);
  });

  it("bad requests surface as typed API errors", async () => {
    await expect(client.completions.create({ model: MODEL, prompt: "x", temperature: 9 })).rejects.toMatchObject({ status: 400 });
    await expect(client.completions.create({ model: "nope", prompt: "x" })).rejects.toMatchObject({ status: 404 });
  });

  it("a client that disconnects mid-stream frees its request", async () => {
    const controller = new AbortController();
    const stream = await client.completions.create(
      { model: MODEL, prompt: "Never trust", max_tokens: 900, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) controller.abort();
      }
    } catch {
      // the client's own abort
    }
    expect(chunks).toBe(3);
    let text = "";
    for (let i = 0; i < 100; i++) {
      text = await (await fetch(`${base}/metrics`)).text();
      if (metricValue(text, "vllm:num_requests_running") === 0 && metricValue(text, "vllm:kv_cache_usage_perc") === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(metricValue(text, "vllm:num_requests_running")).toBe(0);
    expect(metricValue(text, "vllm:kv_cache_usage_perc")).toBe(0);
    expect(metricValue(text, "vllm:request_success_total", 'finished_reason="abort"')).toBeGreaterThanOrEqual(1);
  });

  it("32 concurrent streaming clients each get their serial output", async () => {
    const prompts = Array.from({ length: 32 }, (_, i) => `Fortune number ${i}: you`);
    const serial: string[] = [];
    for (const p of prompts) serial.push(await streamText(p, 16));
    const concurrent = await Promise.all(prompts.map((p) => streamText(p, 16)));
    expect(concurrent).toEqual(serial);
  });
});
