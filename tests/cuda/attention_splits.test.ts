// How a step's attention is split along the keys (runtime/backends/cuda/node_kernels.ts): the
// split decode path itself is checked by the parity cases and the split-KV goldens.
import { describe, expect, it } from "vitest";
import { attentionHeadBlocks, attentionSplits, DEFAULT_ATTENTION_TUNING, MAX_ATTENTION_SPLITS } from "../../runtime/backends/cuda/node_kernels.ts";

const H200_SMS = 132;

describe("attentionSplits with the default tuning", () => {
  const llama1bBlocks = attentionHeadBlocks(32, 8); // 8 KV heads, 4 query heads each

  it("splits a batch-1 decode from about 128 keys, enough to fill the GPU, one split per 128 keys", () => {
    expect(attentionSplits(1, llama1bBlocks, 100, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(1);
    expect(attentionSplits(1, llama1bBlocks, 128, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(1);
    expect(attentionSplits(1, llama1bBlocks, 256, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(2);
    expect(attentionSplits(1, llama1bBlocks, 1024, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(8);
    // bounded by what fills two waves of the SMs, and by MAX_ATTENTION_SPLITS
    expect(attentionSplits(1, llama1bBlocks, 32_768, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(Math.min(MAX_ATTENTION_SPLITS, Math.ceil((2 * H200_SMS) / llama1bBlocks)));
  });

  it("does not split when the step's own blocks already fill the GPU", () => {
    expect(attentionSplits(64, llama1bBlocks, 4096, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(1);
    expect(attentionSplits(16, llama1bBlocks, 4096, H200_SMS, DEFAULT_ATTENTION_TUNING)).toBe(3);
  });
});
