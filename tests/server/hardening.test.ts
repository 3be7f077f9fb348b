/**
 * What a hostile or careless client sends, each case once a defect: a sampling parameter that
 * overflows the logits, the API key against every spelling of a path, more prompts than the server
 * could ever take, a prompt too long to tokenize on the event loop, slow and oversize uploads,
 * oversize headers and undecodable URLs. The server answers each in the OpenAI error shape and
 * goes on serving the greedy reference exactly, with every KV block back in the pool.
 */
import net from "node:net";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import type { CreatedEngine } from "../../runtime/engine/create_engine.ts";
import type { ServerOptions } from "../../runtime/server/app.ts";
import { fortuneServer, MODEL } from "./server_fixture.ts";

const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
  prompt: string;
  greedy: string;
}[];
const KEY = "sk-kiln-test";
const AUTH = { authorization: `Bearer ${KEY}` };

interface Served {
  readonly app: FastifyInstance;
  readonly created: CreatedEngine;
  readonly port: number;
}

async function serve(extra: Partial<Omit<ServerOptions, "engine" | "tokenizer">> = {}): Promise<Served> {
  const { app, created } = await fortuneServer(extra);
  await app.listen({ host: "127.0.0.1", port: 0 });
  return { app, created, port: (app.server.address() as net.AddressInfo).port };
}

async function stop(s: Served): Promise<void> {
  await s.app.close();
  s.created.engine.close();
}

interface RawReply {
  readonly status: number;
  readonly headers: string;
  readonly body: string;
  readonly socketError: string | undefined;
  readonly ms: number;
}

/** Sends raw bytes (in pieces, `gapMs` apart) and reads the reply until the server closes or `waitMs` passes. */
function raw(port: number, pieces: readonly (string | Buffer)[], opts: { gapMs?: number; waitMs?: number } = {}): Promise<RawReply> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let socketError: string | undefined;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString("latin1");
      const head = text.indexOf("\r\n\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, headers: head < 0 ? text : text.slice(0, head), body: head < 0 ? "" : text.slice(head + 4), socketError, ms: performance.now() - t0 });
    };
    const timer = setTimeout(finish, opts.waitMs ?? 5_000);
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", (e: NodeJS.ErrnoException) => {
      socketError = e.code ?? e.message;
      finish();
    });
    socket.on("close", finish);
    void (async () => {
      for (const p of pieces) {
        if (finished || socket.destroyed) return;
        socket.write(p);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    })();
  });
}

function expectOpenAiError(body: string, status?: number): { message: string; type: string; code: string | null } {
  const parsed = JSON.parse(body) as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(typeof parsed.error.message).toBe("string");
  expect(typeof parsed.error.type).toBe("string");
  expect(parsed.error).toHaveProperty("param");
  expect(parsed.error).toHaveProperty("code");
  if (status === 401) expect(parsed.error.type).toBe("authentication_error");
  return parsed.error;
}

/** The greedy reference answered exactly, and every KV block back in the pool. */
async function expectHealthy(s: Served, headers: Record<string, string> = {}): Promise<void> {
  const ref = refs[0]!;
  const res = await s.app.inject({
    method: "POST",
    url: "/v1/completions",
    headers,
    payload: { model: MODEL, prompt: ref.prompt, max_tokens: 24, temperature: 0, ignore_eos: true, skip_special_tokens: false },
  });
  expect(res.statusCode).toBe(200);
  expect(res.json<{ choices: { text: string }[] }>().choices[0]!.text).toBe(ref.greedy);
  const stats = s.created.engine.stats();
  expect(stats.numRequests).toBe(0);
  expect(stats.numFreeBlocks).toBe(stats.numBlocks);
}

describe("a sampling parameter that overflows the logits", () => {
  let s: Served;
  beforeAll(async () => (s = await serve()));
  afterAll(async () => stop(s));

  it("repetition_penalty 1e-300 (completions) and 1e-40 (chat) answer 200 and the server goes on", async () => {
    for (const temperature of [1, 0.7, 0]) {
      const res = await s.app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: { model: MODEL, prompt: "You will", max_tokens: 6, repetition_penalty: 1e-300, temperature, top_p: 0.9 },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ choices: { finish_reason: string }[] }>().choices[0]!.finish_reason).toMatch(/stop|length/);
    }
    const chat = await s.app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: { model: MODEL, messages: [{ role: "user", content: "Tell me" }], max_tokens: 6, repetition_penalty: 1e-40, stream: true },
    });
    expect(chat.statusCode).toBe(200);
    expect(chat.body.trimEnd().endsWith("data: [DONE]")).toBe(true);
    expect(chat.body).not.toContain('"error"');
    await expectHealthy(s);
  });

  it("a generation_config.json default of 1e-300 does not break the default request", async () => {
    const t = await serve({ defaults: { eosTokenIds: [2], repetitionPenalty: 1e-300, temperature: 1 } });
    try {
      const res = await t.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "You will", max_tokens: 8 } });
      expect(res.statusCode).toBe(200);
    } finally {
      await stop(t);
    }
  });
});

describe("the API key", () => {
  let s: Served;
  beforeAll(async () => (s = await serve({ apiKey: KEY })));
  afterAll(async () => stop(s));

  const spellings = [
    ["GET", "/v1/models"],
    ["GET", "/%76%31/models"],
    ["GET", "/v%31/models"],
    ["GET", "/%761/models"],
    ["GET", "/v1/%6dodels"],
    ["GET", "/v1/models?x=1"],
    ["GET", "/v1//models"],
    ["GET", "/v1/models/"],
    ["GET", "/V1/MODELS"],
    ["HEAD", "/v1/models"],
    ["POST", "/%76%31/completions"],
    ["POST", "/v%31/chat/completions"],
    ["POST", "/v1/chat%2Fcompletions"],
    ["POST", "/tokenize"],
    ["POST", "/%74okenize"],
    ["POST", "/detokenize"],
    ["DELETE", "/v1/models"],
    ["GET", "/no/such/route"],
  ] as const;

  it("holds for every spelling of every path and method", async () => {
    for (const [method, url] of spellings) {
      const res = await s.app.inject(method === "POST" ? { method, url, payload: { model: MODEL, prompt: "hi", max_tokens: 1 } } : { method, url });
      expect({ method, url, status: res.statusCode }).toEqual({ method, url, status: 401 });
      if (method !== "HEAD") expectOpenAiError(res.body, 401);
    }
  });

  it("with the key, the decoded spellings reach their routes", async () => {
    for (const url of ["/%76%31/models", "/v%31/models", "/v1/%6dodels"]) {
      const res = await s.app.inject({ method: "GET", url, headers: AUTH });
      expect(res.statusCode).toBe(200);
    }
    const tok = await s.app.inject({ method: "POST", url: "/tokenize", headers: AUTH, payload: { prompt: "hi" } });
    expect(tok.statusCode).toBe(200);
  });

  it("is compared whole: a prefix, a longer key, another scheme or a second header are refused", async () => {
    for (const authorization of [`Bearer ${KEY.slice(0, -1)}`, `Bearer ${KEY}x`, `Bearer  ${KEY}`, `bearer ${KEY}`, KEY, `Basic ${KEY}`, ""]) {
      const res = await s.app.inject({ method: "GET", url: "/v1/models", headers: { authorization } });
      expect({ authorization, status: res.statusCode }).toEqual({ authorization, status: 401 });
    }
  });

  it("leaves /health, /version and /metrics open", async () => {
    for (const [method, url] of [["GET", "/health"], ["HEAD", "/health"], ["GET", "/version"], ["GET", "/metrics"]] as const) {
      expect((await s.app.inject({ method, url })).statusCode).toBe(200);
    }
  });

  it("holds for an absolute-form request target on the socket", async () => {
    const body = JSON.stringify({ model: MODEL, prompt: "You will", max_tokens: 2 });
    for (const target of ["http://x/v1/completions", "http://127.0.0.1/%76%31/completions", "HTTP://X/v1/completions"]) {
      const r = await raw(s.port, [`POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`]);
      expect({ target, status: r.status }).toEqual({ target, status: 401 });
    }
    const ok = await raw(s.port, [
      `POST http://x/v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    ]);
    expect(ok.status).toBe(200);
  });
});

describe("request limits", () => {
  let s: Served;
  beforeAll(async () => (s = await serve({ maxPendingRequests: 8, requestTimeoutMs: 1_000, headersTimeoutMs: 1_000, maxConnections: 16 })));
  afterAll(async () => stop(s));

  it("more prompts than the server could ever hold is a 400 without Retry-After, not a 503", async () => {
    for (const prompt of [Array.from({ length: 9 }, () => "hi"), Array.from({ length: 1025 }, () => [5, 6])]) {
      const res = await s.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt, max_tokens: 1 } });
      expect(res.statusCode).toBe(400);
      expect(res.headers["retry-after"]).toBeUndefined();
      expect(expectOpenAiError(res.body).code).toBe("too_many_prompts");
    }
    const fits = await s.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: Array.from({ length: 8 }, () => "hi"), max_tokens: 1 } });
    expect(fits.statusCode).toBe(200);
  });

  it("a prompt far longer than the context window is refused before it is tokenized", async () => {
    const encode = s.created.tokenizer.encode.bind(s.created.tokenizer);
    let encoded = 0;
    s.created.tokenizer.encode = (text, o) => {
      encoded += text.length;
      return encode(text, o);
    };
    try {
      const prompt = "the fortune ".repeat(300_000); // 3.6 MB
      for (const [url, payload] of [
        ["/v1/completions", { model: MODEL, prompt, max_tokens: 1 }],
        ["/v1/completions", { model: MODEL, prompt: ["a", prompt], max_tokens: 1 }],
        ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: prompt }], max_tokens: 1 }],
        ["/tokenize", { prompt }],
      ] as const) {
        const res = await s.app.inject({ method: "POST", url, payload });
        expect(res.statusCode).toBe(400);
        expect(expectOpenAiError(res.body).code).toBe("PROMPT_TOO_LONG");
      }
      expect(encoded).toBeLessThan(10);
    } finally {
      s.created.tokenizer.encode = encode;
    }
    await expectHealthy(s);
  });

  it("a slow upload gets 408 at the request timeout instead of holding its connection", async () => {
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`;
    const r = await raw(s.port, [head, ...Array.from({ length: 40 }, () => " ")], { gapMs: 200, waitMs: 6_000 });
    expect(r.status).toBe(408);
    expect(r.ms).toBeLessThan(3_500);
    expectOpenAiError(r.body);
  });

  it("headers that never finish are cut at the headers timeout", async () => {
    const r = await raw(s.port, ["GET /health HTTP/1.1\r\n", ...Array.from({ length: 40 }, (_, i) => `X-${i}: y\r\n`)], { gapMs: 200, waitMs: 6_000 });
    expect(r.status).toBe(408);
    expect(r.ms).toBeLessThan(3_500);
  });

  it("connections past --max-connections are refused at accept; the server goes on", async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 16; i++) {
      const c = net.connect(s.port, "127.0.0.1");
      c.on("error", () => {});
      held.push(c);
      await new Promise((r) => c.once("connect", r));
    }
    await new Promise((r) => setTimeout(r, 100));
    const extra = await raw(s.port, ["GET /health HTTP/1.1\r\nHost: x\r\n\r\n"], { waitMs: 2_000 });
    expect(extra.status).toBe(0);
    for (const c of held) c.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const after = await raw(s.port, ["GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    expect(after.status).toBe(200);
  });

  it("an oversize upload sent without Expect: 100-continue reads its 413, not a reset", async () => {
    const body = Buffer.alloc(6 * 2 ** 20, 0x20);
    const r = await raw(s.port, [`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body], { waitMs: 3_000 });
    expect(r.status).toBe(413);
    expect(r.socketError).toBeUndefined();
    expectOpenAiError(r.body);
  });

  it("a 1 MB header gets 431 in the OpenAI shape", async () => {
    const r = await raw(s.port, [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2 ** 20)}\r\n\r\n`]);
    expect(r.status).toBe(431);
    expect(r.socketError).toBeUndefined();
    expect(expectOpenAiError(r.body).code).toBe("headers_too_large");
  });

  it("an undecodable URL gets 400 in the OpenAI shape", async () => {
    for (const url of ["/%ff", "/v1/%E0%A4%A", "/%"]) {
      const res = await s.app.inject({ method: "GET", url });
      expect(res.statusCode).toBe(400);
      expectOpenAiError(res.body);
    }
    await expectHealthy(s);
  });
});

describe("long prompts are tokenized off the event loop", () => {
  let s: Served;
  beforeAll(async () => (s = await serve({ maxPromptChars: 8 * 2 ** 20 })));
  afterAll(async () => stop(s));

  it("gives the tokenizer's own ids, while /health keeps answering", async () => {
    const prompt = Array.from({ length: 60_000 }, (_, i) => ["the", "fortune", "of", "a", "man", "is"][i % 6]).join(" ");
    const want = s.created.tokenizer.encode(prompt, { addSpecialTokens: true });
    const base = `http://127.0.0.1:${s.port}`;
    const tokenized = fetch(`${base}/tokenize`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt }) });
    const order: string[] = [];
    const health = (async () => {
      await new Promise((r) => setTimeout(r, 20));
      const t0 = performance.now();
      const res = await fetch(`${base}/health`);
      order.push("health");
      return { status: res.status, ms: performance.now() - t0 };
    })();
    const tok = await tokenized.then(async (r) => {
      order.push("tokenize");
      return (await r.json()) as { tokens: number[] };
    });
    const h = await health;
    expect(h.status).toBe(200);
    expect(tok.tokens).toEqual(want);
    expect(order[0]).toBe("health");
  });
});
