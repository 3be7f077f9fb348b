/**
 * createEngine's KV pool sizing when the backend has a KV planner (as the CUDA backend registers
 * one): the planner is asked with gpuMemoryUtilization (default 0.9) and the blocks one
 * maxModelLen sequence needs; numBlocks and kvCacheBytes win over it. A fake planner on the CPU
 * backend stands in for the device.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { isKilnError, KilnError } from "../../runtime/engine/errors.ts";
import { KV_PLANNERS } from "../../runtime/backends/model_runner.ts";
import type { KvPlanRequest } from "../../runtime/backends/step_executor.ts";

const asked: KvPlanRequest[] = [];
function fakePlanner(blocks: number): void {
  KV_PLANNERS.set("cpu", (req) => {
    asked.push(req);
    if (blocks < req.needBlocks) throw new KilnError("KV_EXHAUSTED", `only ${blocks} blocks`);
    return { numBlocks: blocks, kvBytes: blocks * 1024, description: "fake device" };
  });
}

afterEach(() => {
  KV_PLANNERS.delete("cpu");
  asked.length = 0;
});

describe("createEngine with a KV planner", () => {
  it("asks the planner with the share (default 0.9) and one sequence's blocks, and uses its answer", async () => {
    fakePlanner(80);
    const a = await createEngine({ backend: "cpu", maxNumBatchedTokens: 128 });
    a.engine.close();
    expect(a.kvPool).toMatchObject({ source: "gpuMemoryUtilization", numBlocks: 80, blockSize: 16, plan: { description: "fake device" } });
    expect(a.runner.numBlocks).toBe(80);
    expect(asked[0]).toMatchObject({ utilization: 0.9, needBlocks: 64, blockSize: 16, maxNumBatchedTokens: 128 });
    const b = await createEngine({ backend: "cpu", gpuMemoryUtilization: 0.5, maxModelLen: 256, blockSize: 8 });
    b.engine.close();
    expect(asked[1]).toMatchObject({ utilization: 0.5, needBlocks: 32, blockSize: 8, maxNumBatchedTokens: 512 });
  });

  it("numBlocks and kvCacheBytes win over the planner", async () => {
    fakePlanner(80);
    const a = await createEngine({ backend: "cpu", numBlocks: 70, gpuMemoryUtilization: 0.5 });
    const b = await createEngine({ backend: "cpu", kvCacheBytes: 6 * 2 ** 20 });
    a.engine.close();
    b.engine.close();
    expect(a.kvPool).toMatchObject({ source: "numBlocks", numBlocks: 70 });
    expect(b.kvPool).toMatchObject({ source: "kvCacheBytes", numBlocks: 64 });
    expect(asked).toEqual([]);
  });

  it("the planner's KV_EXHAUSTED reaches the caller; a share outside (0, 1] is INVALID_ARGUMENT", async () => {
    fakePlanner(10);
    const err = await createEngine({ backend: "cpu" }).catch((e: unknown) => e);
    expect(isKilnError(err, "KV_EXHAUSTED")).toBe(true);
    for (const u of [0, -1, 1.2, Number.NaN]) {
      const bad = await createEngine({ backend: "cpu", gpuMemoryUtilization: u }).catch((e: unknown) => e);
      expect(isKilnError(bad, "INVALID_ARGUMENT"), String(u)).toBe(true);
    }
  });

  it("without a planner (the CPU) the pool is 256 MiB and the share is ignored", async () => {
    const a = await createEngine({ gpuMemoryUtilization: 0.1 });
    a.engine.close();
    expect(a.kvPool.source).toBe("kvCacheBytes");
  });
});
