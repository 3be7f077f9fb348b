/**
 * The library API through the package's own name (`import … from "kiln"`, package.json "exports":
 * under vitest the "development" condition maps it to runtime/api.ts, an installed package to the
 * compiled build/js): greedy text of the embedded fortune model against its Hugging Face reference
 * (assets/fortune-llama/reference.json), streaming with an AbortSignal, a batch, the tokenizer,
 * compile() to an artifact that gives the same text, and the in-process server answering the
 * completions route and closing.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compile, createEngine, DEFAULT_MODEL_DIR, isKilnError, serve, type CompletionDelta } from "kiln";

interface Reference {
  readonly prompt: string;
  readonly greedy: string;
}
const references = JSON.parse(readFileSync(`${DEFAULT_MODEL_DIR}/reference.json`, "utf8")) as readonly Reference[];

const engine = await createEngine({ kvCacheBytes: 16 * 2 ** 20 });
afterAll(() => engine.close());

describe("createEngine on the embedded fortune model", () => {
  it("streams greedy deltas that spell the Hugging Face reference's text", async () => {
    const ref = references[0]!;
    let text = "";
    let last: CompletionDelta | undefined;
    for await (const d of engine.generate(ref.prompt, { temperature: 0, maxTokens: 12 })) {
      text += d.text;
      last = d;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(ref.greedy.startsWith(text)).toBe(true);
    expect(last?.finishReason).toBe("length");
    expect(last?.usage?.completionTokens).toBe(12);
  });

  it("an AbortSignal ends the stream early with finishReason abort", async () => {
    const controller = new AbortController();
    const deltas: CompletionDelta[] = [];
    for await (const d of engine.generate("You will", { maxTokens: 200, ignoreEos: true, signal: controller.signal, seed: 1 })) {
      deltas.push(d);
      if (deltas.length === 3) controller.abort();
    }
    expect(deltas.at(-1)?.finishReason).toBe("abort");
    expect(deltas.length).toBeLessThan(200);
    // an already aborted signal ends the request before it runs
    const done = await engine.complete("Never trust", { maxTokens: 8, signal: AbortSignal.abort() });
    expect(done.completions[0]!.finishReason).toBe("abort");
  });

  it("generateBatch returns every prompt's greedy text in prompt order", async () => {
    const refs = references.slice(0, 3);
    const results = await engine.generateBatch(
      refs.map((r) => r.prompt),
      { temperature: 0, maxTokens: 10 },
    );
    expect(results).toHaveLength(refs.length);
    results.forEach((r, i) => {
      const text = r.completions[0]!.text;
      expect(text.length).toBeGreaterThan(0);
      expect(refs[i]!.greedy.startsWith(text)).toBe(true);
    });
  });

  it("exposes the model's tokenizer, and refuses bad parameters with a typed error", () => {
    const ids = engine.tokenizer.encode("You will", { addSpecialTokens: false });
    expect(engine.tokenizer.decode(ids)).toBe("You will");
    expect(engine.maxModelLen).toBeGreaterThan(0);
    let caught: unknown;
    try {
      engine.generate("x", { topP: 2 });
    } catch (e) {
      caught = e;
    }
    expect(isKilnError(caught, "SAMPLING_PARAMS_INVALID")).toBe(true);
  });
});

it("serve() answers /v1/completions in-process and closes", async () => {
  const server = await serve({ engine, port: 0 });
  try {
    const res = await fetch(`${server.url}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: references[0]!.prompt, max_tokens: 6, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { text: string }[] };
    expect(references[0]!.greedy.startsWith(body.choices[0]!.text)).toBe(true);
  } finally {
    await server.close();
  }
  // the engine was given, so it outlives the server
  expect((await engine.complete("A computer", { maxTokens: 2 })).completions[0]!.tokenIds.length).toBe(2);
});

it("serve() of a model it loads closes that engine with the server", async () => {
  const server = await serve({ port: 0, kvCacheBytes: 16 * 2 ** 20, servedModelName: "fortune" });
  const res = await fetch(`${server.url}/models`);
  expect(((await res.json()) as { data: { id: string }[] }).data[0]!.id).toBe("fortune");
  await server.close();
  let caught: unknown;
  try {
    server.engine.generate("You will");
  } catch (e) {
    caught = e;
  }
  expect(isKilnError(caught, "ENGINE_CLOSED")).toBe(true);
});

it("compile() writes an engine artifact that createEngine runs to the same greedy text", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-api-"));
  try {
    const summary = await compile({ model: DEFAULT_MODEL_DIR, output: join(dir, "fortune.kiln") });
    expect(summary.target).toBe("cpu");
    const fromArtifact = await createEngine({ model: summary.outDir, kvCacheBytes: 16 * 2 ** 20 });
    try {
      const ref = references[1]!;
      const r = await fromArtifact.complete(ref.prompt, { temperature: 0, maxTokens: 10 });
      expect(r.completions[0]!.text.length).toBeGreaterThan(0);
      expect(ref.greedy.startsWith(r.completions[0]!.text)).toBe(true);
    } finally {
      await fromArtifact.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
