// gpuMemoryUtilization end to end through the CPU emulator of libcuda (8 GiB of fake device
// memory, cuMemGetInfo_v2 counting what is allocated): createEngine on backend "cuda" sizes the
// KV pool from the device's free memory, generates, and stays inside its share; a share too small
// for one sequence fails before any weight is uploaded.
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { offlineThroughput } from "../../bench/gpu/offline_throughput.ts";
import { activationBytes, deviceWeightBytes, kvBytesPerBlock } from "../../runtime/backends/cuda/memory_budget.ts";
import { DEFAULT_CAPTURE_SIZES } from "../../runtime/backends/cuda/decode_graphs.ts";
import { registerCudaBackend, type CudaRegistration } from "../../runtime/backends/cuda/register.ts";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { DEFAULT_MODEL_DIR, loadModel } from "../../runtime/io/model_loader.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";
import { compile } from "../../compiler/pipeline.ts";
import { cudaProgramOptions } from "../../runtime/backends/cuda/executor.ts";

const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));


let cuda: CudaRegistration;

beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: CUBIN_CACHE });
  cuda = registerCudaBackend();
  cuda.backend();
}, 120_000);

afterAll(() => cuda?.dispose());

describe("gpuMemoryUtilization on the emulated device", () => {
  const maxNumBatchedTokens = 64;

  it("the pool takes what the share leaves after weights and activations, and generation stays inside it", async () => {
    const dev = cuda.backend().device;
    const model = await loadModel(DEFAULT_MODEL_DIR);
    const perBlock = kvBytesPerBlock(model.graph.kvLayers, 16, "f32");
    const compiled = compile(model.graph, cudaProgramOptions(dev.info.arch, {}));
    const before = dev.memInfo();
    const used = before.total - before.free;
    const fixed =
      used +
      deviceWeightBytes(compiled.program, model.weights) +
      activationBytes(compiled, {
        maxTokens: maxNumBatchedTokens,
        maxRows: maxNumBatchedTokens,
        multiprocessors: dev.info.multiprocessors,
        graphRows: Math.max(...DEFAULT_CAPTURE_SIZES),
      });
    // a share that leaves room for 201.5 blocks: 200 for the pool and the executor's padding block
    const utilization = (fixed + 201.5 * perBlock) / before.total;
    const { engine, runner, kvPool } = await createEngine({ backend: "cuda", gpuMemoryUtilization: utilization, maxNumBatchedTokens, maxModelLen: 256 });
    try {
      expect(kvPool.source).toBe("gpuMemoryUtilization");
      expect(kvPool.numBlocks).toBe(200);
      expect(runner.numBlocks).toBe(200);
      expect(kvPool.plan?.description).toMatch(/8\.00 GiB × 0\.0\d+ − .* in use at start − .* weights − .* activations = .* for KV \(98304 bytes per block\)/);
      const prompts = [Array.from({ length: 60 }, (_, i) => 5 + i), Array.from({ length: 7 }, (_, i) => 100 + i)];
      const results = await Promise.all(prompts.map((p) => engine.generateBatch([p], { temperature: 0, maxTokens: 6, ignoreEos: true })));
      for (const r of results) expect(r[0]!.completions[0]!.tokenIds.length).toBe(6);
      const after = dev.memInfo();
      expect(after.total - after.free).toBeLessThanOrEqual(utilization * after.total);
    } finally {
      engine.close();
      runner.dispose();
    }
  }, 120_000);

  it("kvCacheBytes, when given, wins over the share", async () => {
    const { engine, runner, kvPool } = await createEngine({ backend: "cuda", kvCacheBytes: 64 * 98304, gpuMemoryUtilization: 0.5, maxModelLen: 256 });
    engine.close();
    runner.dispose();
    expect(kvPool).toMatchObject({ source: "kvCacheBytes", numBlocks: 64 });
  }, 60_000);

  it("a share too small for one maxModelLen sequence is KV_EXHAUSTED, naming the numbers, with nothing uploaded", async () => {
    const dev = cuda.backend().device;
    const held = dev.allocatedBytes;
    let err: unknown;
    try {
      await createEngine({ backend: "cuda", gpuMemoryUtilization: 0.01 });
    } catch (e) {
      err = e;
    }
    expect(isKilnError(err, "KV_EXHAUSTED"), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/gpuMemoryUtilization 0\.01 leaves room for 0 KV blocks, but one sequence .* needs 64: 8\.00 GiB × 0\.01 − /);
    expect(dev.allocatedBytes).toBe(held);
  }, 60_000);

  it("the GPU check's offline throughput stops at its deadline and says the figures are partial", async () => {
    const model = await loadModel(DEFAULT_MODEL_DIR);
    const r = await offlineThroughput({
      graph: model.graph,
      weights: model.weights,
      vocabSize: model.model.vocabSize,
      numPrompts: 4,
      inputLen: { lo: 8, hi: 8 },
      outputLen: { lo: 400, hi: 400 },
      seed: 0,
      maxNumSeqs: 4,
      maxNumBatchedTokens: 32,
      blockSize: 16,
      gpuMemoryUtilization: 0.04,
      deadline: performance.now(),
      log: () => {},
    });
    expect(r.complete).toBe(false);
    expect(r.finished).toBe(0);
    expect(r.outputTokens).toBeLessThan(r.plannedOutputTokens);
    expect(r.plannedOutputTokens).toBe(1600);
    expect(cuda.backend().device.allocatedBytes).toBeLessThan(2 ** 30); // the runner was disposed
  }, 60_000);

  it("a share outside (0, 1] is INVALID_ARGUMENT", async () => {
    for (const u of [0, 1.5]) {
      await expect(createEngine({ backend: "cuda", gpuMemoryUtilization: u })).rejects.toThrow(/gpuMemoryUtilization must be a fraction in \(0, 1\]/);
    }
  });
});
