/**
 * CPU golden parity of the MoE, state-space and mamba-like hybrid fixtures against their HF
 * transformers references (float32): Qwen3-MoE (fused experts), LFM2 (gated short convolutions +
 * attention), MiniMax (lightning attention + full attention + fused experts), Mamba (selective
 * scan), Mamba-2 (SSD scan, gated norm), Jamba (Mamba-1 + attention + MoE) and Bamba (Mamba-2 +
 * attention with partial rotary). Prefill and greedy logits within 1e-4 relative error, through
 * the compiled program (the default) and the unfused reference executor.
 */
import { describe, it } from "vitest";
import { fixture } from "../fixture_copy.ts";
import { describeOnUnfusedExecutor, expectGoldenParity } from "./golden_support.ts";

const FIXTURES = ["qwen3-moe", "lfm2", "minimax", "mamba", "mamba2", "jamba", "bamba"] as const;

describe("golden parity of the MoE and hybrid fixtures on the CPU", () => {
  for (const name of FIXTURES) it(name, () => expectGoldenParity(fixture(name)));
});

describeOnUnfusedExecutor(FIXTURES);
