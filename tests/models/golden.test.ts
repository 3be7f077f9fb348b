/**
 * CPU golden parity of every fixture (tests/fixtures/index.ts) against its HF transformers
 * reference (float32 compute): prefill and greedy logits within 1e-4 relative error, greedy tokens
 * equal wherever the reference's margin is clearly above our numerical error, through the
 * compiled program (the default) and the unfused reference executor.
 */
import { describe, expect, it } from "vitest";
import { runGolden } from "../../cli/golden_check.ts";
import { fixture } from "../fixture_copy.ts";
import { fixturesWhere } from "../fixtures/index.ts";
import { describeOnUnfusedExecutor, expectFixtureParity } from "./golden_support.ts";

const GOLDEN = fixturesWhere((f) => f.golden);

describe("golden parity on the CPU", () => {
  for (const f of GOLDEN) it(f.name, () => expectFixtureParity(f));

  // The llama-bf16 reference was made by a bf16-instantiated HF model upcast to float32, whose rotary
  // inv_freq buffer stays rounded to bf16; the fortune reference was made in float32 directly.
  it("llama-bf16 differs from its reference only through the rotary frequencies' rounding", async () => {
    // exact frequencies: the error is that of the angles (a few 1e-4), not of the weights or kernels
    const { summary } = await runGolden(fixture("llama-bf16"), { tolerance: 1e-4 });
    expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-4);
    expect(summary.worst_greedy_logits_rel_err).toBeLessThan(3e-3);
  });

  it("the fortune model's greedy tokens all match (its margins are far above f32 error)", async () => {
    const { results } = await runGolden(fixture("fortune-llama"), { tolerance: 1e-4 });
    for (const r of results) expect(r.greedy_token_match).toBe("24/24");
  });
});

describeOnUnfusedExecutor(GOLDEN);
