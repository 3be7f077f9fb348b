/**
 * CPU golden parity against HF transformers references (float32 compute): prefill and greedy
 * logits within 1e-4 relative error, greedy tokens equal wherever the reference's margin is
 * clearly above our numerical error.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runGolden, type GoldenOptions } from "../../runtime/golden_check.ts";
import { fixture } from "../fixture_copy.ts";

const FORTUNE = fileURLToPath(new URL("../../assets/fortune-llama", import.meta.url));
// The llama-bf16 reference was made by a bf16-instantiated HF model upcast to float32, whose rotary
// inv_freq buffer stays rounded to bf16; the fortune reference was made in float32 directly.
const CASES: [string, string, GoldenOptions][] = [
  ["llama", fixture("llama"), { tolerance: 1e-4 }],
  ["llama-bf16", fixture("llama-bf16"), { tolerance: 1e-4, ropeFreqBf16: true }],
  ["qwen2", fixture("qwen2"), { tolerance: 1e-4 }],
  ["qwen3", fixture("qwen3"), { tolerance: 1e-4 }],
  ["mistral-swa", fixture("mistral-swa"), { tolerance: 1e-4 }],
  ["fortune-llama", FORTUNE, { tolerance: 1e-4 }],
];

describe("golden parity on the CPU", () => {
  for (const [name, dir, opts] of CASES) {
    it(name, async () => {
      const { results, summary } = await runGolden(dir, opts);
      expect(results.length).toBeGreaterThanOrEqual(3);
      for (const r of results) {
        if (r.prefill_rel_err !== undefined) expect(r.prefill_rel_err).toBeLessThan(1e-4);
        expect(r.greedy_logits_rel_err).toBeLessThan(1e-4);
        expect(r.unexplained_mismatches).toBe(0);
      }
      expect(summary.ok).toBe(true);
    });
  }

  it("llama-bf16 differs from its reference only through the rotary frequencies' rounding", async () => {
    // exact frequencies: the error is that of the angles (a few 1e-4), not of the weights or kernels
    const { summary } = await runGolden(fixture("llama-bf16"), { tolerance: 1e-4 });
    expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-4);
    expect(summary.worst_greedy_logits_rel_err).toBeLessThan(3e-3);
  });

  it("the fortune model's greedy tokens all match (its margins are far above f32 error)", async () => {
    const { results } = await runGolden(FORTUNE, { tolerance: 1e-4 });
    for (const r of results) expect(r.greedy_token_match).toBe("24/24");
  });
});
