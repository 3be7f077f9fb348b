/**
 * The imported tiny Llama on the CUDA backend, through the CPU emulator of libcuda, NVRTC and
 * cuBLASLt (slow tier: the emulator is built with g++ and nvcc): the same golden checks as on the
 * CPU, in f32.
 */
import { expect, it } from "vitest";
import { runGolden } from "../../cli/golden_check.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { emulatedSuite } from "../cuda/emulated_suite.ts";
import { TINY_LLAMA } from "./onnx_fixtures.ts";

emulatedSuite("tiny_llama.onnx on the emulated CUDA backend", () => {
  it("prefill and teacher-forced decode logits within 1e-4 of the reference (f32)", async () => {
    const cuda = registerCudaBackend();
    try {
      const { results, summary } = await runGolden(TINY_LLAMA, { tolerance: 1e-4, backend: "cuda" });
      expect(summary.ok, JSON.stringify(summary)).toBe(true);
      expect(summary.greedy_token_match).toBe("6/6");
      expect(results[0]!.prefill_max_abs_err).toBeLessThan(1e-4);
    } finally {
      cuda.dispose();
    }
  });
});
