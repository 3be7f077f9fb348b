/**
 * An imported ONNX Llama behind the OpenAI-compatible server, as kiln's own models are: 16 streams
 * at once give each request the tokens it gets alone (continuous batching over the paged KV cache
 * the engine owns, not the graph), and a prompt prefix they share is served from the prefix cache.
 * Then the same graph compiled to an engine artifact (tokenizer copied from beside the .onnx file)
 * gives the same tokens.
 */
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { compileArtifact } from "../../runtime/io/artifact.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { buildServer } from "../../runtime/server/app.ts";
import { FIXTURES_DIR } from "../fixtures/index.ts";
import { metricValue } from "../server/server_fixture.ts";
import { TINY_LLAMA } from "./onnx_fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "kiln-onnx-serve-"));
const model = join(dir, "model.onnx");
let created: CreatedEngine;
let app: FastifyInstance;

beforeAll(async () => {
  copyFileSync(TINY_LLAMA, model);
  // the tiny Llama's vocabulary is the fixtures' 512-entry tokenizer
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(FIXTURES_DIR, "llama", f), join(dir, f));
  created = await createEngine({ modelDir: model, kvCacheBytes: 32 * 2 ** 20 });
  app = buildServer({ engine: created.engine, tokenizer: created.tokenizer, servedModelName: "tiny", maxModelLen: created.maxModelLen, defaults: loadGenerationConfig(dir) });
}, 60_000);

afterAll(async () => {
  await app?.close();
  created?.engine.close();
  rmSync(dir, { recursive: true, force: true });
});

// a shared prefix of several KV blocks (16 tokens each), then a different ending per request
const PREFIX = "Once upon a time in a small village by the sea there lived an old fisherman who every morning went out";
const prompts = Array.from({ length: 16 }, (_, i) => `${PREFIX} with his dog number ${i} and`);

async function complete(prompt: string): Promise<string> {
  const res = await app.inject({ method: "POST", url: "/v1/completions", payload: { model: "tiny", prompt, max_tokens: 10, temperature: 0, ignore_eos: true } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ choices: { text: string }[] }>().choices[0]!.text;
}

async function prefixHits(): Promise<number> {
  const res = await app.inject({ method: "GET", url: "/metrics" });
  return metricValue(res.body, "vllm:prefix_cache_hits_total") ?? 0;
}

describe("an ONNX Llama served", () => {
  it("16 concurrent requests each get the tokens they get alone, and hit the prefix cache", async () => {
    const alone: string[] = [];
    for (const p of prompts) alone.push(await complete(p));
    expect(new Set(alone).size).toBeGreaterThan(1); // the endings differ, so the outputs do
    const before = await prefixHits();
    const together = await Promise.all(prompts.map((p) => complete(p)));
    expect(together).toEqual(alone);
    expect((await prefixHits()) - before).toBeGreaterThanOrEqual(16 * 16); // at least one full block each
  }, 120_000);

  it("compiled to an engine artifact, it carries the tokenizer from beside the .onnx file and gives the same tokens", async () => {
    const out = join(dir, "artifact");
    await compileArtifact({ modelDir: model, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
    const fromArtifact = await createEngine({ modelDir: out, kvCacheBytes: 8 * 2 ** 20 });
    try {
      const [r] = await fromArtifact.engine.generateBatch([prompts[3]!], { temperature: 0, maxTokens: 10, ignoreEos: true });
      expect(r!.completions[0]!.text).toBe(await complete(prompts[3]!));
    } finally {
      fromArtifact.engine.close();
    }
  }, 120_000);
});
