/**
 * CPU golden parity of the MoE, state-space and mamba-like hybrid fixtures against their HF
 * transformers references (float32): Qwen3-MoE (fused experts), LFM2 (gated short convolutions +
 * attention), MiniMax (lightning attention + full attention + fused experts), Mamba (selective
 * scan), Mamba-2 (SSD scan, gated norm), Jamba (Mamba-1 + attention + MoE) and Bamba (Mamba-2 +
 * attention with partial rotary). Prefill and greedy logits within 1e-4 relative error, through
 * the compiled program (the default) and the unfused reference executor.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CpuExecutor } from "../../runtime/cpu/executor.ts";
import { loadNative } from "../../runtime/cpu/native.ts";
import { runGolden } from "../../runtime/golden_check.ts";
import { EXECUTOR_FACTORIES } from "../../runtime/model_runner.ts";
import { fixture } from "../fixture_copy.ts";

const FIXTURES = ["qwen3-moe", "lfm2", "minimax", "mamba", "mamba2", "jamba", "bamba"] as const;

describe("golden parity of the MoE and hybrid fixtures on the CPU", () => {
  for (const name of FIXTURES) {
    it(name, async () => {
      const { results, summary } = await runGolden(fixture(name), { tolerance: 1e-4 });
      expect(results.length).toBeGreaterThanOrEqual(3);
      for (const r of results) {
        expect(r.prefill_rel_err).toBeLessThan(1e-4);
        expect(r.greedy_logits_rel_err).toBeLessThan(1e-4);
        expect(r.unexplained_mismatches).toBe(0);
      }
      expect(summary.ok, JSON.stringify(summary)).toBe(true);
    });
  }
});

describe("the same through the unfused reference executor", () => {
  const program = EXECUTOR_FACTORIES.get("cpu")!;
  beforeAll(() => void EXECUTOR_FACTORIES.set("cpu", (graph, weights, opts) => new CpuExecutor(graph, weights, loadNative(), opts)));
  afterAll(() => void EXECUTOR_FACTORIES.set("cpu", program));
  for (const name of FIXTURES) {
    it(name, async () => {
      const { summary } = await runGolden(fixture(name), { tolerance: 1e-4 });
      expect(summary.ok, JSON.stringify(summary)).toBe(true);
      expect(EXECUTOR_FACTORIES.get("cpu")).not.toBe(program);
    });
  }
});
