/** The HTTP routes through fastify's inject(): shapes, validation and every class of bad request. */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { fortuneServer, metricValue, MODEL } from "./server_fixture.ts";

const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
  prompt: string;
  greedy: string;
}[];

let app: FastifyInstance;
let closeEngine: () => void;

beforeAll(async () => {
  const s = await fortuneServer();
  app = s.app;
  closeEngine = () => s.created.engine.close();
});
afterAll(async () => {
  await app.close();
  closeEngine();
});

const post = (url: string, payload: unknown) => app.inject({ method: "POST", url, payload: payload as Record<string, unknown> });

function expectError(res: { statusCode: number; json: () => unknown }, status: number, param?: string): { message: string } {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(typeof body.error.message).toBe("string");
  expect(typeof body.error.type).toBe("string");
  expect(body.error).toHaveProperty("code");
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error;
}

describe("info routes", () => {
  it("lists the served model, answers health and version", async () => {
    const models = (await app.inject({ url: "/v1/models" })).json<{ data: { id: string; object: string }[] }>();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect((await app.inject({ url: "/health" })).statusCode).toBe(200);
    expect((await app.inject({ url: "/version" })).json()).toHaveProperty("version");
  });

  it("tokenizes and detokenizes", async () => {
    const tok = (await post("/tokenize", { prompt: "The secret of life is" })).json<{ tokens: number[]; count: number }>();
    expect(tok.count).toBe(tok.tokens.length);
    expect(tok.tokens[0]).toBe(1); // BOS
    const det = (await post("/detokenize", { tokens: tok.tokens.slice(1) })).json<{ prompt: string }>();
    expect(det.prompt).toBe("The secret of life is");
  });
});

describe("completions", () => {
  it("greedy text equals the HF reference", async () => {
    const ref = refs[0]!;
    const res = await post("/v1/completions", { model: MODEL, prompt: ref.prompt, max_tokens: 24, temperature: 0, ignore_eos: true, skip_special_tokens: false });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ object: string; choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } }>();
    expect(body.object).toBe("text_completion");
    expect(body.choices[0]!.text).toBe(ref.greedy);
    expect(body.choices[0]!.finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(24);
  });

  it("echo prepends the prompt; logprobs carry top entries", async () => {
    const res = await post("/v1/completions", { model: MODEL, prompt: "You will", max_tokens: 4, temperature: 0, echo: true, logprobs: 2 });
    const c = res.json<{ choices: { text: string; logprobs: { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[] } }[] }>().choices[0]!;
    expect(c.text.startsWith("You will")).toBe(true);
    // one entry per prompt token (BOS included; the first has no logprob) and per generated token
    expect(c.logprobs.tokens.length).toBe(3 + 4);
    expect(c.logprobs.token_logprobs[0]).toBeNull();
    expect(c.logprobs.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0)).toBe(true);
    expect(c.logprobs.top_logprobs.at(-1)).not.toBeNull();
    expect(Object.keys(c.logprobs.top_logprobs.at(-1)!).length).toBeGreaterThanOrEqual(2);
  });

  it("n > 1 gives n choices", async () => {
    const res = await post("/v1/completions", { model: MODEL, prompt: "Never trust", max_tokens: 6, n: 3, seed: 1, temperature: 1 });
    const body = res.json<{ choices: { index: number }[]; usage: { completion_tokens: number } }>();
    expect(body.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(body.usage.completion_tokens).toBe(18);
  });
});

describe("chat completions", () => {
  it("applies the chat template and returns logprobs when asked", async () => {
    const res = await post("/v1/chat/completions", {
      model: MODEL,
      messages: [{ role: "user", content: "Tell me a fortune" }],
      max_tokens: 5,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ object: string; choices: { message: { role: string; content: string }; logprobs: { content: { top_logprobs: unknown[] }[] } }[] }>();
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]!.message.role).toBe("assistant");
    expect(body.choices[0]!.logprobs.content.length).toBeGreaterThan(0);
    expect(body.choices[0]!.logprobs.content[0]!.top_logprobs.length).toBe(3);
  });
});

describe("bad requests", () => {
  it("constraints the server cannot honour yet are refused by name, not ignored", async () => {
    // tools without a tool choice mean "auto", which needs --enable-auto-tool-choice (as in vLLM)
    expectError(await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "x" }], tools: [{ type: "function", function: { name: "f" } }] }), 400, "tool_choice");
    expectError(await post("/v1/completions", { model: MODEL, prompt: "x", tools: [{ type: "function", function: { name: "f" } }] }), 400, "tools");
    expectError(await post("/v1/completions", { model: MODEL, prompt: "x", functions: [{ name: "f" }] }), 400, "functions");
  });

  it("invalid values name the field", async () => {
    expectError(await post("/v1/completions", { model: MODEL, prompt: "x", temperature: 5 }), 400, "temperature");
    expectError(await post("/v1/completions", { model: MODEL, prompt: "x", n: 0 }), 400, "n");
    expectError(await post("/v1/chat/completions", { model: MODEL, messages: [] }), 400, "messages");
    expectError(await post("/v1/completions", { model: MODEL }), 400, "prompt");
    expectError(await post("/v1/completions", { model: MODEL, prompt: [99999] }), 400, "prompt");
  });

  it("a body that is not JSON is a 400", async () => {
    const res = await app.inject({ method: "POST", url: "/v1/completions", payload: "{nope", headers: { "content-type": "application/json" } });
    expectError(res, 400);
  });

  it("an unknown model is a 404", async () => {
    expectError(await post("/v1/completions", { model: "gpt-9", prompt: "x" }), 404, "model");
  });

  it("a prompt longer than the context window states both lengths", async () => {
    const prompt = Array.from({ length: 1100 }, (_, i) => 5 + (i % 500));
    const e = expectError(await post("/v1/completions", { model: MODEL, prompt, max_tokens: 4 }), 400);
    expect(e.message).toContain("1024");
    expect(e.message).toContain("1100");
    const e2 = expectError(await post("/v1/completions", { model: MODEL, prompt: "hello", max_tokens: 5000 }), 400, "max_tokens");
    expect(e2.message).toContain("1024");
  });

  it("an unknown route is a 404 with an error body", async () => {
    expectError(await app.inject({ url: "/v1/nothing" }), 404);
  });
});

describe("operations", () => {
  it("requires the API key on /v1/* when one is set", async () => {
    const { app: keyed, created } = await fortuneServer({ apiKey: "sekret" });
    try {
      expectError(await keyed.inject({ url: "/v1/models" }), 401);
      expectError(await keyed.inject({ url: "/v1/models", headers: { authorization: "Bearer wrong" } }), 401);
      expect((await keyed.inject({ url: "/v1/models", headers: { authorization: "Bearer sekret" } })).statusCode).toBe(200);
      expect((await keyed.inject({ url: "/health" })).statusCode).toBe(200);
    } finally {
      await keyed.close();
      created.engine.close();
    }
  });

  it("refuses bodies over the size limit", async () => {
    const { app: small, created } = await fortuneServer({ bodyLimit: 1000 });
    try {
      const res = await small.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "x".repeat(5000) } });
      expectError(res, 413);
    } finally {
      await small.close();
      created.engine.close();
    }
  });

  it("answers 503 with Retry-After past the pending-request bound", async () => {
    const { app: bounded, created } = await fortuneServer({ maxPendingRequests: 2 });
    try {
      const body = { model: MODEL, prompt: "You will", max_tokens: 40, temperature: 0, ignore_eos: true };
      const results = await Promise.all([1, 2, 3, 4].map(() => bounded.inject({ method: "POST", url: "/v1/completions", payload: body })));
      const codes = results.map((r) => r.statusCode).sort();
      expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(2);
      const refused = results.find((r) => r.statusCode === 503);
      expect(refused).toBeDefined();
      expect(refused!.headers["retry-after"]).toBe("1");
      expectError(refused!, 503);
    } finally {
      await bounded.close();
      created.engine.close();
    }
  });

  it("exposes vLLM's metric names", async () => {
    await post("/v1/completions", { model: MODEL, prompt: "A computer", max_tokens: 3 });
    const text = (await app.inject({ url: "/metrics" })).body;
    for (const name of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:kv_cache_usage_perc",
      "vllm:prefix_cache_queries_total",
      "vllm:prefix_cache_hits_total",
      "vllm:num_preemptions_total",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:inter_token_latency_seconds_bucket",
      "vllm:e2e_request_latency_seconds_bucket",
      "vllm:request_queue_time_seconds_bucket",
      "vllm:request_success_total",
    ]) {
      expect(text).toContain(name);
    }
    expect(metricValue(text, "vllm:generation_tokens_total")).toBeGreaterThanOrEqual(3);
  });
});
