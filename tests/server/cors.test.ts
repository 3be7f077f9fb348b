/**
 * Browser apps: a CORS preflight is answered without the API key (browsers send it without
 * credentials), the call it clears carries the allow-origin header (a 401 too, so the page can
 * read it), and with --allowed-origins only those origins are allowed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { fortuneServer, MODEL } from "./server_fixture.ts";

const KEY = "sk-cors";
const PREFLIGHT = { "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" };

describe("CORS with the defaults (any origin), behind an API key", () => {
  let app: FastifyInstance;
  let close: () => void;
  beforeAll(async () => {
    const s = await fortuneServer({ apiKey: KEY });
    app = s.app;
    close = () => s.created.engine.close();
  });
  afterAll(async () => {
    await app.close();
    close();
  });

  it("answers the preflight of every API route without the key", async () => {
    for (const url of ["/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize"]) {
      const res = await app.inject({ method: "OPTIONS", url, headers: { origin: "https://app.example", ...PREFLIGHT } });
      expect(res.statusCode).toBe(204);
      expect(res.headers["access-control-allow-origin"]).toBe("*");
      expect(String(res.headers["access-control-allow-headers"])).toContain("authorization");
    }
  });

  it("a cross-origin call carries the allow-origin header, refused or not", async () => {
    const payload = { model: MODEL, prompt: "You will", max_tokens: 2 };
    const denied = await app.inject({ method: "POST", url: "/v1/completions", headers: { origin: "https://app.example" }, payload });
    expect(denied.statusCode).toBe(401);
    expect(denied.headers["access-control-allow-origin"]).toBe("*");
    const ok = await app.inject({ method: "POST", url: "/v1/completions", headers: { origin: "https://app.example", authorization: `Bearer ${KEY}` }, payload });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers["access-control-allow-origin"]).toBe("*");
  });

  it("an OPTIONS request is answered with headers only, never with data", async () => {
    const res = await app.inject({ method: "OPTIONS", url: "/v1/models" });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe("");
  });
});

describe("CORS restricted to listed origins", () => {
  let app: FastifyInstance;
  let close: () => void;
  beforeAll(async () => {
    const s = await fortuneServer({ cors: { origins: ["https://good.example"], methods: ["GET", "POST"], headers: ["content-type", "authorization"], credentials: true } });
    app = s.app;
    close = () => s.created.engine.close();
  });
  afterAll(async () => {
    await app.close();
    close();
  });

  it("allows a listed origin with credentials and names no other", async () => {
    const good = await app.inject({ method: "OPTIONS", url: "/v1/completions", headers: { origin: "https://good.example", ...PREFLIGHT } });
    expect(good.headers["access-control-allow-origin"]).toBe("https://good.example");
    expect(good.headers["access-control-allow-credentials"]).toBe("true");
    expect(String(good.headers["access-control-allow-methods"])).toBe("GET, POST");
    const bad = await app.inject({ method: "OPTIONS", url: "/v1/completions", headers: { origin: "https://evil.example", ...PREFLIGHT } });
    expect(bad.headers["access-control-allow-origin"]).toBeUndefined();
    const call = await app.inject({ method: "GET", url: "/v1/models", headers: { origin: "https://evil.example" } });
    expect(call.statusCode).toBe(200);
    expect(call.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
