/**
 * `kiln serve` on the MoE, state-space and hybrid fixtures, through fastify's inject(): the server is built as
 * the CLI builds it, and concurrent greedy completions of the reference prompts return the HF
 * reference's greedy text; afterwards every state slot and KV block is back in its pool.
 */
import { basename } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ATTENTION_FREE_MAX_MODEL_LEN, createEngine } from "../../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { buildServer } from "../../runtime/server/app.ts";
import { fixturesWhere } from "../fixtures/index.ts";

for (const f of fixturesWhere((x) => x.stateLayers || x.moe)) {
  describe(`kiln serve ${f.name}`, async () => {
    const dir = f.dir;
    const created = await createEngine({ modelDir: dir, blockSize: 16, kvCacheBytes: 8 * 2 ** 20, maxNumBatchedTokens: 24 });
    const app = buildServer({
      engine: created.engine,
      tokenizer: created.tokenizer,
      servedModelName: basename(dir),
      maxModelLen: created.maxModelLen,
      defaults: loadGenerationConfig(dir),
    });
    afterAll(async () => {
      await app.close();
      created.engine.close();
    });
    const ref = SafetensorsFile.open(`${dir}/reference.safetensors`);
    const cases = [0, 1, 2].map((k) => ({ prompt: Array.from(ref.readI32(`prompt_${k}`)), greedy: Array.from(ref.readI32(`greedy_tokens_${k}`)) }));
    ref.close();

    it("answers concurrent greedy completions with the reference's greedy text", async () => {
      const responses = await Promise.all(
        cases.map(({ prompt, greedy }) =>
          app.inject({
            method: "POST",
            url: "/v1/completions",
            payload: { model: basename(dir), prompt, max_tokens: greedy.length, temperature: 0, ignore_eos: true },
          }),
        ),
      );
      responses.forEach((res, k) => {
        expect(res.statusCode).toBe(200);
        const body = res.json<{ choices: { text: string; finish_reason: string }[]; usage: { completion_tokens: number } }>();
        expect(body.usage.completion_tokens).toBe(cases[k]!.greedy.length);
        expect(body.choices[0]!.text).toBe(created.tokenizer.decode(cases[k]!.greedy, { skipSpecialTokens: true }));
        expect(body.choices[0]!.finish_reason).toBe("length");
      });
      created.engine.core.checkInvariants();
      const pool = created.runner.statePool;
      if (pool !== undefined) expect(pool.numFree).toBe(pool.numSlots);
      expect(created.engine.stats().numFreeBlocks).toBe(created.engine.stats().numBlocks);
    });

    it("reports the engine's context window, which bounds attention-free models by default", async () => {
      const res = await app.inject({ method: "GET", url: "/v1/models" });
      const window = res.json<{ data: { max_model_len: number }[] }>().data[0]!.max_model_len;
      expect(window).toBe(created.maxModelLen);
      expect(window).toBe(!f.attention ? ATTENTION_FREE_MAX_MODEL_LEN : created.model.model.maxPositions);
      const tooLong = await app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: { model: basename(dir), prompt: new Array<number>(window).fill(7), max_tokens: 1 },
      });
      expect(tooLong.statusCode).toBe(400);
    });
  });
}
