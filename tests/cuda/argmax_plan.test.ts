import { describe, expect, it } from "vitest";
import { ARGMAX_MAX_BLOCKS, ARGMAX_MIN_CHUNK, argmaxBlocks } from "../../runtime/backends/cuda/argmax_plan.ts";

describe("argmaxBlocks: how the greedy pick is split", () => {
  it("splits a large vocabulary at batch 1 to fill the GPU, within the bounds", () => {
    expect(argmaxBlocks(1, 128_256, 132)).toBe(31); // 128256 / 4096 = 31 chunks of at least 4096
    expect(argmaxBlocks(1, 262_144, 132)).toBe(ARGMAX_MAX_BLOCKS);
    expect(argmaxBlocks(2, 151_936, 132)).toBe(37);
  });
  it("keeps one block a row when the rows fill the GPU or the vocabulary is small", () => {
    expect(argmaxBlocks(264, 128_256, 132)).toBe(1);
    expect(argmaxBlocks(1, ARGMAX_MIN_CHUNK * 2 - 1, 132)).toBe(1);
    expect(argmaxBlocks(1, 512, 132)).toBe(1);
    expect(argmaxBlocks(0, 128_256, 132)).toBe(1);
  });
  it("gives about two waves of blocks over the SMs at moderate batch", () => {
    const B = argmaxBlocks(16, 128_256, 132);
    expect(B).toBe(17);
    expect(16 * B).toBeGreaterThanOrEqual(2 * 132);
  });
});
