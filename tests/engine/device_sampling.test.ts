// The engine's device-sampling path (StepRunner.launchSample) on a fake runner that samples with
// the CUDA kernel's CPU twin: the same tokens as host sampling for every kind of request, the
// generators drawn alike, steps with logprobs left on the host path, and requests aborted while
// a step is on the device.
import { describe, expect, it } from "vitest";
import { packSamplingRows, type DeviceSamplingRow } from "../../runtime/engine/device_sampling.ts";
import { Engine } from "../../runtime/engine/engine.ts";
import { EngineCore } from "../../runtime/engine/engine_core.ts";
import type { SamplingParamsInput } from "../../runtime/engine/sampling_params.ts";
import type { SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { sampleRows } from "../cuda/cpu_twins_sampling.ts";
import { addRequest, drive } from "./drive.ts";
import { FakeKvRunner } from "./fake_runner.ts";

/** A fake runner that samples on its "device" with the kernel's twin. */
class SamplingKvRunner extends FakeKvRunner {
  executed = 0;
  sampledSteps = 0;

  override execute(chunks: readonly SeqChunk[]): Float32Array {
    this.executed++;
    return super.execute(chunks);
  }

  readonly launchSample = (chunks: readonly SeqChunk[], rows: readonly DeviceSamplingRow[]): (() => Int32Array) => {
    this.sampledSteps++;
    const logits = super.execute(chunks);
    const ids = sampleRows(logits, packSamplingRows(rows, this.vocabSize), rows.length, this.vocabSize);
    return () => ids;
  };
}

const V = 64;
const MIXES: readonly SamplingParamsInput[] = [
  { temperature: 0, maxTokens: 9, ignoreEos: true },
  { temperature: 0.9, topK: 8, topP: 0.85, minP: 0.05, seed: 3, maxTokens: 9 },
  { temperature: 1.1, seed: 4, maxTokens: 9, repetitionPenalty: 1.5, presencePenalty: 0.6, frequencyPenalty: 0.4 },
  { temperature: 0.8, seed: 5, maxTokens: 9, logitBias: { 1: 6, 30: 2 }, minTokens: 5, stopTokenIds: [1] },
  { temperature: 2, topP: 0.6, seed: 6, maxTokens: 9, n: 2 },
];

function run(runner: FakeKvRunner, extra: SamplingParamsInput = {}): Map<string, number[]> {
  const core = new EngineCore(runner, { maxModelLen: 64, eosTokenIds: [2] });
  MIXES.forEach((p, k) => addRequest(core, `r${k}`, [3 + k, 9, 27, 40 + k, 11], { ...p, ...extra }));
  return drive(core).outputs;
}

describe("device sampling in the engine", () => {
  it("gives the host sampler's tokens for every kind of request", () => {
    const device = new SamplingKvRunner(32, 4, V);
    const got = run(device);
    expect(device.executed).toBe(0);
    expect(device.sampledSteps).toBeGreaterThan(0);
    expect(got).toEqual(run(new FakeKvRunner(32, 4, V)));
  });

  it("a request aborted while its step is on the device gets no token from it, and its blocks come back", () => {
    const core = new EngineCore(new SamplingKvRunner(32, 4, V), { maxModelLen: 64, eosTokenIds: [2] });
    addRequest(core, "keep", [3, 9, 27, 40, 11], { temperature: 0, maxTokens: 6, ignoreEos: true });
    addRequest(core, "drop", [4, 9, 27, 41, 11], { temperature: 0, maxTokens: 6, ignoreEos: true });
    const first = core.beginStep(); // the prefill of both
    expect(first.kind).toBe("pending");
    if (first.kind !== "pending") return;
    expect(core.abortRequest("drop")).toBe(true);
    const result = core.finishStep(first.step);
    expect(result.updates.map((u) => u.seq.requestId)).toEqual(["keep"]);
    core.checkInvariants();
    let steps = 0;
    while (core.hasUnfinished && steps++ < 20) core.step();
    core.checkInvariants();
    expect(core.stats().numFreeBlocks).toBe(core.stats().numBlocks);
  });

  it("the engine streams the same tokens whether it overlaps output with the next step or not", async () => {
    const outputs = async (overlapOutput: boolean): Promise<number[][]> => {
      const engine = new Engine(new SamplingKvRunner(32, 4, V), { maxModelLen: 64, eosTokenIds: [2], overlapOutput });
      try {
        const results = await Promise.all(MIXES.map((p, k) => engine.generateBatch([[3 + k, 9, 27, 40 + k, 11]], p)));
        return results.flatMap((r) => r.flatMap((req) => req.completions.map((c) => [...c.tokenIds])));
      } finally {
        engine.close();
      }
    };
    const overlapped = await outputs(true);
    expect(overlapped.every((t) => t.length > 0)).toBe(true);
    expect(overlapped).toEqual(await outputs(false));
  });

  it("steps where a sequence wants logprobs run on the host path", () => {
    const device = new SamplingKvRunner(32, 4, V);
    const got = run(device, { logprobs: 1 });
    expect(device.sampledSteps).toBe(0);
    expect(got).toEqual(run(new FakeKvRunner(32, 4, V)));
  });
});
