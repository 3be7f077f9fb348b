/**
 * Quantized checkpoints on the CUDA backend through the CPU emulator (slow tier: SLOW in
 * vitest.config.ts): weights dequantized at load, then held as the backend's bf16 weight matrices,
 * give the CPU's f32 logits of the dequantized reference within bf16 tolerance (2e-2, as the
 * 16-bit goldens).
 */
import { afterAll, expect, it } from "vitest";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { emulatedSuite } from "../cuda/emulated_suite.ts";
import { referencePromptLogits, relErr } from "./logits.ts";
import { writeQuantizedFixture, type FixtureFormat, type QuantizedFixture } from "./quantize_fixture.ts";

const CASES: readonly (readonly [title: string, format: FixtureFormat])[] = [
  ["awq 4-bit", { kind: "awq", groupSize: 32 }],
  ["gptq 4-bit desc_act", { kind: "gptq", bits: 4, groupSize: 32, sym: false, descAct: true }],
  ["fp8 block", { kind: "fp8", config: "fp8", strategy: "block", block: [32, 32] }],
];

emulatedSuite("quantized llama on the emulated CUDA backend (bf16 weights)", () => {
  const made: QuantizedFixture[] = [];
  afterAll(() => made.forEach((m) => m.cleanup()));
  for (const [title, format] of CASES) {
    it(`${title}: within 2e-2 of the dequantized reference on the CPU`, async () => {
      const fx = writeQuantizedFixture("llama", format);
      made.push(fx);
      const reference = await referencePromptLogits(fx.reference, 2);
      const cuda = registerCudaBackend({ weightDtype: "bf16" });
      try {
        const ours = await referencePromptLogits(fx.quantized, 2, "cuda");
        const err = relErr(ours, reference);
        expect(err).toBeLessThan(2e-2);
        // a path that silently kept f32 weights would land near 1e-7
        expect(err).toBeGreaterThan(1e-6);
        console.log(`${title} on emulated CUDA, bf16 weights: rel err ${err.toExponential(2)}`);
      } finally {
        cuda.dispose();
      }
    });
  }
});
