/** Test support for the CPU golden suites: parity with the HF reference, on both CPU executors. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CpuExecutor } from "../reference/cpu_executor.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { BACKEND_REGISTRY } from "../../runtime/backends/model_runner.ts";
import type { FixtureFacts } from "../fixtures/index.ts";

/** How a reference was made: with bf16-rounded rotary frequencies; with prefill logits (the fortune model's has none). */
export interface ReferenceKind {
  readonly ropeFreqBf16?: boolean;
  readonly prefill?: boolean;
}

/** Prefill and greedy logits of every reference prompt within 1e-4 relative error, no unexplained token mismatch. */
export async function expectGoldenParity(dir: string, ref: ReferenceKind = {}): Promise<void> {
  const { results, summary } = await runGolden(dir, { tolerance: 1e-4, ropeFreqBf16: ref.ropeFreqBf16 ?? false });
  expect(results.length).toBeGreaterThanOrEqual(3);
  for (const r of results) {
    if (ref.prefill ?? true) expect(r.prefill_rel_err).toBeLessThan(1e-4);
    expect(r.greedy_logits_rel_err).toBeLessThan(1e-4);
    expect(r.unexplained_mismatches).toBe(0);
  }
  expect(summary.ok, JSON.stringify(summary)).toBe(true);
}

/** A fixture's parity with its reference, as the fixture index describes the reference. */
export const expectFixtureParity = (f: FixtureFacts): Promise<void> => expectGoldenParity(f.dir, { ropeFreqBf16: f.ropeFreqBf16, prefill: !f.trained });

/** The fixtures' parity through the unfused reference executor (CpuExecutor) instead of the compiled program. */
export function describeOnUnfusedExecutor(fixtures: readonly FixtureFacts[]): void {
  describe("the same through the unfused reference executor", () => {
    const program = BACKEND_REGISTRY.get("cpu")!;
    beforeAll(() => void BACKEND_REGISTRY.set("cpu", { ...program, create: (compiled, weights, opts) => new CpuExecutor(compiled.graph, weights, loadNative(), opts) }));
    afterAll(() => void BACKEND_REGISTRY.set("cpu", program));
    for (const f of fixtures) {
      it(f.name, async () => {
        await expectFixtureParity(f);
        expect(BACKEND_REGISTRY.get("cpu")).not.toBe(program);
      });
    }
  });
}
