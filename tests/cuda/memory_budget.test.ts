// The KV pool's share of device memory (runtime/backends/cuda/memory_budget.ts): pure arithmetic, no device.
import { describe, expect, it } from "vitest";
import type { KvLayerSpec, StateLayerSpec } from "../../compiler/ir.ts";
import {
  ACTIVATION_MARGIN_BYTES,
  activationBytes,
  checkUtilization,
  describeKvBudget,
  deviceWeightBytes,
  kvBudget,
  kvBytesPerBlock,
  requireBlocks,
  stateBytes,
} from "../../runtime/backends/cuda/memory_budget.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { compile } from "../../compiler/pipeline.ts";
import type { Program } from "../../compiler/program.ts";
import { cudaProgramOptions } from "../../runtime/backends/cuda/executor.ts";

const GiB = 2 ** 30;

describe("KV budget from device memory", () => {
  it("bytes per block: K and V in f32, bf16 or fp8 for every attention layer", () => {
    const layers: KvLayerSpec[] = [
      { cacheKey: "a", numKvHeads: 8, headDim: 64, slidingWindow: undefined },
      { cacheKey: "b", numKvHeads: 2, headDim: 128, slidingWindow: 4096 },
    ];
    expect(kvBytesPerBlock(layers, 16, "f32")).toBe(2 * 4 * 16 * (8 * 64 + 2 * 128));
    expect(kvBytesPerBlock(layers, 16, "bf16")).toBe(2 * 2 * 16 * (8 * 64 + 2 * 128));
    // e4m3: one byte an element, half of bf16
    expect(kvBytesPerBlock(layers, 16, "fp8")).toBe(2 * 1 * 16 * (8 * 64 + 2 * 128));
    expect(kvBytesPerBlock([], 16, "f32")).toBe(0);
  });

  it("total × utilization − used at start − weights − state − activations, in whole blocks", () => {
    const b = kvBudget({
      memory: { total: 80 * GiB, free: 79 * GiB },
      utilization: 0.9,
      weightBytes: 2.5 * GiB,
      stateBytes: 0,
      activationBytes: 1.5 * GiB,
      bytesPerBlock: 512 * 1024,
    });
    expect(b.usedAtStart).toBe(GiB);
    const kv = Math.floor(80 * GiB * 0.9) - GiB - 2.5 * GiB - 1.5 * GiB;
    expect(b.kvBytes).toBe(kv);
    // the executor holds one block more than the pool hands out: the padding block of captured decode batches
    expect(b.numBlocks).toBe(Math.floor(kv / (512 * 1024)) - 1);
    expect(describeKvBudget(b)).toMatch(/80\.00 GiB × 0\.9 − 1\.00 GiB in use at start − 2\.50 GiB weights − 1\.50 GiB activations = 67\.00 GiB for KV/);
  });

  it("a budget that goes negative gives no blocks, and requireBlocks names the numbers", () => {
    const b = kvBudget({ memory: { total: 8 * GiB, free: 8 * GiB }, utilization: 0.1, weightBytes: GiB, stateBytes: 0, activationBytes: 0, bytesPerBlock: 1024 });
    expect(b.numBlocks).toBe(0);
    let err: unknown;
    try {
      requireBlocks(b, 64, "one sequence of maxModelLen tokens");
    } catch (e) {
      err = e;
    }
    expect(isKilnError(err, "KV_EXHAUSTED")).toBe(true);
    expect((err as Error).message).toMatch(/gpuMemoryUtilization 0\.1 leaves room for 0 KV blocks, but one sequence .* needs 64: 8\.00 GiB × 0\.1/);
    const ok = kvBudget({ memory: { total: 8 * GiB, free: 8 * GiB }, utilization: 0.5, weightBytes: GiB, stateBytes: 0, activationBytes: 0, bytesPerBlock: 1024 });
    expect(() => requireBlocks(ok, 64, "x")).not.toThrow();
  });

  it("utilization must be in (0, 1]", () => {
    for (const u of [0, -0.1, 1.01, Number.NaN]) expect(() => checkUtilization(u), String(u)).toThrow(/\(0, 1\]/);
    expect(() => checkUtilization(1)).not.toThrow();
  });

  it("weights: every parameter in f32, or the GEMM and embedding matrices in bf16", async () => {
    const m = await loadModel(fixture("llama"));
    const all = [...m.weights.values()].reduce((n, w) => n + w.data.length, 0);
    const program = (weightDtype: "f32" | "bf16"): Program => compile(m.graph, cudaProgramOptions("sm_90", { weightDtype })).program;
    expect(deviceWeightBytes(program("f32"), m.weights)).toBe(all * 4);
    const bf16 = deviceWeightBytes(program("bf16"), m.weights);
    expect(bf16).toBeLessThan(all * 4);
    expect(bf16).toBeGreaterThan(all * 2); // the norms stay f32
  });


  it("activations grow with the step's tokens and include the margin", async () => {
    const loaded = await loadModel(fixture("llama"));
    const m = compile(loaded.graph, cudaProgramOptions("sm_90", {}));
    const small = activationBytes(m, { maxTokens: 16, maxRows: 16, multiprocessors: 132, graphRows: 0 });
    const big = activationBytes(m, { maxTokens: 512, maxRows: 512, multiprocessors: 132, graphRows: 0 });
    expect(small).toBeGreaterThan(ACTIVATION_MARGIN_BYTES);
    expect(big).toBeGreaterThan(small);
    // the executor's buffers double: 300 tokens take what 512 do
    expect(activationBytes(m, { maxTokens: 300, maxRows: 300, multiprocessors: 132, graphRows: 0 })).toBe(big);
    // the decode graphs' arena comes on top
    expect(activationBytes(m, { maxTokens: 512, maxRows: 512, multiprocessors: 132, graphRows: 256 })).toBeGreaterThan(big);
  });

  it("state: f32 per slot over every state tensor, and one padding slot", () => {
    const layers: StateLayerSpec[] = [
      { stateKey: "l0", tensors: [{ name: "conv", shape: [4, 8], dtype: "f32" }, { name: "ssm", shape: [2, 3, 5], dtype: "f32" }] },
    ];
    expect(stateBytes(layers, 10)).toBe((32 + 30) * 4 * 11);
    expect(stateBytes([], 10)).toBe(0);
  });
});
