/** Test support for the CPU golden suites: parity with the HF reference, on both CPU executors. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CpuExecutor } from "../../runtime/cpu/executor.ts";
import { loadNative } from "../../runtime/cpu/native.ts";
import { runGolden } from "../../runtime/golden_check.ts";
import { EXECUTOR_FACTORIES } from "../../runtime/model_runner.ts";
import { fixture } from "../fixture_copy.ts";

/** Prefill and greedy logits of every reference prompt within 1e-4 relative error, no unexplained token mismatch. */
export async function expectGoldenParity(dir: string): Promise<void> {
  const { results, summary } = await runGolden(dir, { tolerance: 1e-4 });
  expect(results.length).toBeGreaterThanOrEqual(3);
  for (const r of results) {
    expect(r.prefill_rel_err).toBeLessThan(1e-4);
    expect(r.greedy_logits_rel_err).toBeLessThan(1e-4);
    expect(r.unexplained_mismatches).toBe(0);
  }
  expect(summary.ok, JSON.stringify(summary)).toBe(true);
}

/** The fixtures' parity through the unfused reference executor (CpuExecutor) instead of the compiled program. */
export function describeOnUnfusedExecutor(fixtures: readonly string[]): void {
  describe("the same through the unfused reference executor", () => {
    const program = EXECUTOR_FACTORIES.get("cpu")!;
    beforeAll(() => void EXECUTOR_FACTORIES.set("cpu", (graph, weights, opts) => new CpuExecutor(graph, weights, loadNative(), opts)));
    afterAll(() => void EXECUTOR_FACTORIES.set("cpu", program));
    for (const name of fixtures) {
      it(name, async () => {
        await expectGoldenParity(fixture(name));
        expect(EXECUTOR_FACTORIES.get("cpu")).not.toBe(program);
      });
    }
  });
}
