/**
 * The server on a real socket (127.0.0.1) against clients that misbehave, in bounded loops:
 * a fuzz of hostile requests across every endpoint, a load of concurrent requests with malformed
 * ones mixed in, and streams aborted mid-way. Whatever comes in, the server answers 2xx or 4xx
 * in the OpenAI error shape (503 only when it is deliberately at capacity), never exits, answers
 * the greedy reference exactly afterwards, and every KV block returns to the pool.
 */
import net from "node:net";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import type { CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { basename } from "node:path";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { buildServer } from "../../runtime/server/app.ts";
import { fixture } from "../fixture_copy.ts";
import { fortuneServer, MODEL } from "./server_fixture.ts";

const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
  prompt: string;
  greedy: string;
}[];
const KEY = "sk-fuzz";

let app: FastifyInstance;
let created: CreatedEngine;
let base: string;
let port: number;

beforeAll(async () => {
  const s = await fortuneServer({ apiKey: KEY, maxPendingRequests: 64, requestTimeoutMs: 5_000 });
  app = s.app;
  created = s.created;
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as net.AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  // the test's own HTTP client keeps idle sockets open; a closing server stops timing them out
  const closing = app.close();
  app.server.closeAllConnections();
  await closing;
  created.engine.close();
});

/** A small deterministic generator, so a failing case can be replayed by its index. */
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return x / 2 ** 32;
  };
}

const HOSTILE_VALUES: readonly unknown[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -1e308,
  1e-300,
  2 ** 53 + 1,
  -0.5,
  "NaN",
  "1e999",
  "",
  "x".repeat(70_000),
  "\ud800\udfff\ud800",
  [],
  [null],
  {},
  { __proto__: { polluted: true } },
  { constructor: { prototype: { polluted: true } } },
  Array.from({ length: 3000 }, (_, i) => i),
  [[1, 2], [3]],
  [-5],
  [2 ** 31],
];

const FIELDS = [
  "model", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p", "n", "stream", "stream_options", "stop",
  "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "seed", "logprobs", "top_logprobs", "echo",
  "min_tokens", "stop_token_ids", "ignore_eos", "skip_special_tokens", "best_of", "suffix", "user", "max_completion_tokens",
  "add_generation_prompt", "tokens", "add_special_tokens", "__proto__", "constructor",
] as const;

interface Case {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

const ENDPOINTS = ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/models", "/health", "/version", "/metrics"] as const;

function validBody(path: string, r: () => number, model: string): Record<string, unknown> {
  const small = { max_tokens: 1 + Math.floor(r() * 8), temperature: r() < 0.5 ? 0 : r() * 2 };
  switch (path) {
    case "/v1/completions":
      return { model, prompt: "You will", ...small };
    case "/v1/chat/completions":
      return { model, messages: [{ role: "user", content: "Tell me a fortune" }], ...small };
    case "/tokenize":
      return { prompt: "hello there" };
    case "/detokenize":
      return { tokens: [5, 6, 7] };
    default:
      return {};
  }
}

function hostileCase(i: number, model = MODEL): Case {
  const r = rng(1000 + i);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const path = pick(ENDPOINTS);
  const auth = r() < 0.85 ? { authorization: `Bearer ${KEY}` } : pick([{}, { authorization: "Bearer wrong" }, { authorization: KEY }]);
  const kind = i % 6;
  const body = validBody(path, r, model);
  if (kind <= 2) {
    // one to three fields replaced by hostile values
    for (let k = 0; k <= kind; k++) body[pick(FIELDS)] = pick(HOSTILE_VALUES);
    if (body["stream"] !== true && r() < 0.3) body["stream"] = true;
    return { method: "POST", path, headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) };
  }
  if (kind === 3) {
    // a body that is not the JSON it claims to be
    const bad = pick(["{", "null", "[]", "1e999", '{"prompt": "a"', "\u0000\u0001", "[".repeat(50_000) + "]".repeat(50_000), '{"a":' .repeat(5_000) + "1" + "}".repeat(5_000), ""]);
    return { method: "POST", path, headers: { "content-type": pick(["application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"]), ...auth }, body: bad };
  }
  if (kind === 4) {
    // odd methods, paths and spellings
    const p = pick(["/%76%31/completions", "/v1/../v1/models", "/v1/models%00", "/%ff", "/v1/" + "a".repeat(5_000), "//v1/models", "/v1/chat/completions/", path]);
    return { method: pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"]), path: p, headers: { ...auth }, body: undefined };
  }
  // sampling parameters at the edges of what is valid
  const edge = {
    model,
    prompt: pick(["You will", [1, 2, 3], ["a", "b"], [[5], [6, 7]]]),
    max_tokens: pick([1, 4, 1022, 1023]),
    temperature: pick([0, 1e-6, 2]),
    top_p: pick([1e-9, 1]),
    top_k: pick([-1, 1, 2048, 1e9]),
    min_p: pick([0, 1]),
    repetition_penalty: pick([1e-300, 1e-40, 10, 1]),
    presence_penalty: pick([-2, 2]),
    frequency_penalty: pick([-2, 2]),
    logit_bias: pick([{}, { "2": 100 }, { "0": -100, "2047": 100 }, { "99999999": 1 }]),
    n: pick([1, 2]),
    min_tokens: pick([0, 3]),
    stop: pick([[], ["\n"], ["a", "b", "c"]]),
    logprobs: pick([0, 20]),
    seed: pick([0, -1, 2 ** 53 - 1]),
    stream: r() < 0.5,
  };
  return { method: "POST", path: "/v1/completions", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(edge) };
}

interface Outcome {
  readonly status: number;
  readonly body: string;
  readonly ms: number;
}

async function send(c: Case, timeoutMs: number): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(base + c.path, {
      method: c.method,
      headers: c.headers,
      ...(c.body === undefined || c.method === "GET" ? {} : { body: c.body }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await res.text();
    return { status: res.status, body, ms: performance.now() - t0 };
  } catch (e) {
    // a client that gives up (the timeout) is a disconnect the server must survive
    if ((e as Error).name === "TimeoutError") return { status: -1, body: "", ms: performance.now() - t0 };
    throw e;
  }
}

function checkOutcome(c: Case, o: Outcome, i: number): void {
  const where = `case ${i}: ${c.method} ${c.path.slice(0, 60)} ${c.body?.slice(0, 120) ?? ""}`;
  if (o.status === -1) return;
  expect(o.status >= 500 && o.status !== 503, `${where} → ${o.status} ${o.body.slice(0, 200)}`).toBe(false);
  if (o.status >= 400 && c.method !== "HEAD") {
    const parsed = JSON.parse(o.body) as { error?: { message?: unknown; type?: unknown } };
    expect(typeof parsed.error?.message, where).toBe("string");
    expect(typeof parsed.error?.type, where).toBe("string");
  }
  if (o.status === 200 && o.body.startsWith("data: ")) {
    // a stream ends with [DONE], whether it finished or failed (then with an error event before it)
    expect(o.body.trimEnd().endsWith("data: [DONE]"), where).toBe(true);
  }
}

async function inBatches<T>(n: number, concurrency: number, run: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) out[i] = await run(i);
    }),
  );
  return out;
}

async function expectHealthy(): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (created.engine.stats().numRequests > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const ref = refs[1]!;
  const res = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: MODEL, prompt: ref.prompt, max_tokens: 24, temperature: 0, ignore_eos: true, skip_special_tokens: false }),
  });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(ref.greedy);
  const s = created.engine.stats();
  expect(s.numRequests).toBe(0);
  expect(s.numFreeBlocks).toBe(s.numBlocks);
  expect((await fetch(`${base}/health`)).status).toBe(200);
}

describe("hostile clients on a real socket", () => {
  it("360 hostile requests across every endpoint: no 5xx, OpenAI-shaped errors, each under 10 s", async () => {
    const N = 360;
    const cases = Array.from({ length: N }, (_, i) => hostileCase(i));
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
    const rss0 = process.memoryUsage().rss;
    const outcomes = await inBatches(N, 16, (i) => send(cases[i]!, 8_000)).finally(() => clearInterval(sampler));
    // the server (in this process) never grows by a gigabyte whatever it is sent
    expect(peakRss - rss0).toBeLessThan(2 ** 30);
    outcomes.forEach((o, i) => checkOutcome(cases[i]!, o, i));
    expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(10_000);
    const statuses = new Map<number, number>();
    for (const o of outcomes) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1);
    // the fuzz reaches both sides: requests that run and requests that are refused
    expect(statuses.get(200) ?? 0).toBeGreaterThan(10);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(30);
    expect(statuses.get(401) ?? 0).toBeGreaterThan(10);
    await expectHealthy();
  }, 180_000);

  it("raw-socket abuse: garbage, absolute-form targets, half-sent requests and early closes", async () => {
    const pieces: string[] = [
      "GARBAGE\r\n\r\n",
      "GET http://evil/v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{"model":`,
      "GET /health HTTP/1.1\r\nHost: x\r\n" + "X: y\r\n".repeat(3_000) + "\r\n",
      "GET /\u00ff HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for (const p of pieces) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.write(p, () => setTimeout(() => s.destroy(), 100));
      });
    }
    await expectHealthy();
  }, 60_000);

  it("a load of 300 requests at concurrency 32, one in ten malformed: every valid one gets its reference", async () => {
    const N = 300;
    const outcomes = await inBatches(N, 32, async (i) => {
      const ref = refs[i % refs.length]!;
      const malformed = i % 10 === 3;
      const body = malformed
        ? `{"model": "${MODEL}", "prompt": ${i % 20 === 3 ? "[99999999]" : '"x", "max_tokens": -1'}}`
        : JSON.stringify({ model: MODEL, prompt: ref.prompt, max_tokens: 12, temperature: 0, ignore_eos: true, skip_special_tokens: false, stream: i % 2 === 0 });
      const res = await fetch(`${base}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
        body,
      });
      return { i, malformed, status: res.status, text: await res.text(), ref };
    });
    for (const o of outcomes) {
      if (o.malformed) {
        expect(o.status).toBe(400);
        continue;
      }
      // a full queue is a deliberate 503; everything else runs to its reference text
      if (o.status === 503) continue;
      expect(o.status).toBe(200);
      const text = o.text.startsWith("data: ")
        ? o.text
            .split("\n\n")
            .filter((l) => l.startsWith("data: {"))
            .map((l) => (JSON.parse(l.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? "")
            .join("")
        : (JSON.parse(o.text) as { choices: { text: string }[] }).choices[0]!.text;
      const words = o.ref.greedy;
      expect(words.startsWith(text), `request ${o.i}: ${JSON.stringify(text)}`).toBe(true);
      expect(text.length).toBeGreaterThan(0);
    }
    expect(outcomes.filter((o) => o.status === 200).length).toBeGreaterThan(200);
    await expectHealthy();
  }, 180_000);

  it("120 streams aborted after their first chunk return every block", async () => {
    await inBatches(120, 24, async (i) => {
      const ctl = new AbortController();
      const res = await fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: `fortune ${i}` }], max_tokens: 500, ignore_eos: true, stream: true }),
        signal: ctl.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      ctl.abort();
      await reader.read().catch(() => undefined);
    });
    await expectHealthy();
  }, 120_000);
});

describe("hostile clients on a hybrid model", () => {
  it("fuzzed requests, hostile-but-legal generations and aborted streams on bamba return every KV block and state slot", async () => {
    const dir = fixture("bamba");
    const name = basename(dir);
    const hybrid = await createEngine({ modelDir: dir, blockSize: 16, kvCacheBytes: 8 * 2 ** 20, maxNumBatchedTokens: 24 });
    const server = buildServer({
      engine: hybrid.engine,
      tokenizer: hybrid.tokenizer,
      servedModelName: name,
      maxModelLen: hybrid.maxModelLen,
      defaults: loadGenerationConfig(dir),
      apiKey: KEY,
    });
    try {
      const N = 120;
      const cases = Array.from({ length: N }, (_, i) => hostileCase(5000 + i, name));
      const outcomes = await inBatches(N, 8, async (i) => {
        const c = cases[i]!;
        const t0 = performance.now();
        const res = await server.inject({ method: c.method as "POST", url: c.path, headers: c.headers, ...(c.body === undefined ? {} : { payload: c.body }) });
        return { status: res.statusCode, body: res.body, ms: performance.now() - t0 };
      });
      outcomes.forEach((o, i) => checkOutcome(cases[i]!, o, i));
      // valid generations with hostile-but-legal knobs, and streams whose clients leave mid-way
      await server.listen({ host: "127.0.0.1", port: 0 });
      const url = `http://127.0.0.1:${(server.server.address() as net.AddressInfo).port}/v1/completions`;
      const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` };
      const runs = await inBatches(24, 8, async (i) => {
        const ctl = new AbortController();
        const body = { model: name, prompt: i % 2 === 0 ? "You will" : ["a", "b"], max_tokens: 40, n: 1 + (i % 2), repetition_penalty: i % 3 === 0 ? 1e-300 : 1.2, temperature: i % 4 === 0 ? 0 : 1, stop: ["\n"], stream: true };
        const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: ctl.signal });
        const reader = res.body!.getReader();
        await reader.read();
        if (i % 3 !== 2) {
          ctl.abort();
          await reader.read().catch(() => undefined);
          return res.status;
        }
        while (!(await reader.read()).done);
        return res.status;
      });
      expect(runs.every((st) => st === 200)).toBe(true);
      const deadline = Date.now() + 10_000;
      while (hybrid.engine.stats().numRequests > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      hybrid.engine.core.checkInvariants();
      const ref = SafetensorsFile.open(`${dir}/reference.safetensors`);
      const prompt = Array.from(ref.readI32("prompt_0"));
      const greedy = Array.from(ref.readI32("greedy_tokens_0"));
      ref.close();
      const res = await server.inject({
        method: "POST",
        url: "/v1/completions",
        headers: { authorization: `Bearer ${KEY}` },
        payload: { model: name, prompt, max_tokens: greedy.length, temperature: 0, ignore_eos: true },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ choices: { text: string }[] }>().choices[0]!.text).toBe(hybrid.tokenizer.decode(greedy, { skipSpecialTokens: true }));
      const stats = hybrid.engine.stats();
      expect(stats.numRequests).toBe(0);
      expect(stats.numFreeBlocks).toBe(stats.numBlocks);
      const pool = hybrid.engine.runner.statePool!;
      expect(pool.numFree).toBe(pool.numSlots);
    } finally {
      const closing = server.close();
      server.server.closeAllConnections();
      await closing;
      hybrid.engine.close();
    }
  }, 180_000);
});
