// The device sampler's CPU twin against the host sampler (runtime/engine/sampler.ts) on the
// parity batches: the same token for the same uniform, every feature on and off.
import { describe, expect, it } from "vitest";
import { sampleRows } from "./cpu_twins_sampling.ts";
import { hostPicks, samplingBatch, samplingParams } from "./parity_sampling.ts";

describe("device sampler twin", () => {
  for (const V of [77, 1000, 4099]) {
    it(`equals sampleToken, V=${V}`, () => {
      const batch = samplingBatch(V, 70 + V);
      const S = batch.contexts.length;
      const twin = sampleRows(batch.logits, samplingParams(batch), S, V);
      expect(Array.from(twin)).toEqual(Array.from(hostPicks(batch)));
    });
  }

  it("greedy rows leave the generator alone; sampled rows draw once", () => {
    const batch = samplingBatch(77, 5);
    let draws = 0;
    const counted = batch.contexts.map((ctx) => ({ ...ctx, rng: { next: () => (draws++, ctx.rng.next()) } as typeof ctx.rng }));
    samplingParams({ ...batch, contexts: counted });
    expect(draws).toBe(counted.filter((c) => c.params.temperature >= 1e-5).length);
  });
});
