/**
 * Mamba-like layers carry their state across prefill chunks: a prompt prefilled in small chunks
 * (each continuing from the sequence's state slot and KV blocks) gives the logits of a one-shot
 * prefill, and a reset slot starts a new sequence from scratch.
 */
import { describe, expect, it } from "vitest";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { fixture } from "../fixture_copy.ts";

/** ‖a − b‖ / ‖b‖, as the golden checks measure */
function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** state tensors per fixture: one per short-conv / lightning layer, conv + ssm per Mamba layer */
const STATE_TENSORS = { lfm2: 2, minimax: 2, mamba: 4, mamba2: 4, jamba: 4, bamba: 4 } as const;

for (const name of Object.keys(STATE_TENSORS) as (keyof typeof STATE_TENSORS)[]) {
  describe(`${name}: state carried across prefill chunks`, async () => {
    const loaded = await loadModel(fixture(name));
    const ref = SafetensorsFile.open(`${fixture(name)}/reference.safetensors`);
    const prompt = Array.from(ref.readI32("prompt_2")); // 40 tokens
    ref.close();
    const V = loaded.model.vocabSize;
    const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, V, { numBlocks: 8, blockSize: 8 });
    const table = Array.from({ length: 8 }, (_, i) => i);
    const pool = runner.statePool;

    it("declares per-sequence state", () => {
      expect(pool).toBeDefined();
      expect(pool!.specs.length).toBe(STATE_TENSORS[name]);
    });

    const prefill = (chunks: readonly number[]): Float32Array => {
      const slot = pool!.allocate()!;
      pool!.reset(slot);
      const rows: Float32Array[] = [];
      let done = 0;
      for (const n of chunks) {
        const tokens = prompt.slice(done, done + n);
        rows.push(runner.execute([{ tokens, numCached: done, blockTable: table, allLogits: true, stateSlot: slot }]));
        done += n;
      }
      pool!.free(slot);
      const out = new Float32Array(prompt.length * V);
      let at = 0;
      for (const r of rows) {
        out.set(r, at);
        at += r.length;
      }
      return out;
    };

    const oneShot = prefill([prompt.length]);

    it("chunks of 1, 2, 3 and 7 tokens give the one-shot logits (within 1e-5)", () => {
      for (const size of [1, 2, 3, 7]) {
        const chunks: number[] = [];
        for (let left = prompt.length; left > 0; left -= size) chunks.push(Math.min(size, left));
        expect(relErr(prefill(chunks), oneShot), `chunks of ${size}`).toBeLessThan(1e-5);
      }
    });

    it("uneven chunks give the one-shot logits, and every slot is returned", () => {
      expect(relErr(prefill([5, 1, 13, 2, 19]), oneShot)).toBeLessThan(1e-5);
      expect(pool!.numFree).toBe(pool!.numSlots);
    });
  });
}
