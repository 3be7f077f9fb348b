// The CPU twins the CUDA kernels are checked against (cpu_twins.ts) agree with kiln's native CPU
// kernels, which tests/runtime/native.test.ts holds to independent references: so a GPU parity
// failure points at the GPU kernel, not at its twin.
import { describe, expect, it } from "vitest";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { argmax } from "../../runtime/engine/sampler.ts";
import * as twin from "./cpu_twins.ts";
import { compare, randomF32, rng } from "./parity_support.ts";

const native = loadNative();

describe("CPU twins agree with the native CPU kernels", () => {
  it("linear", () => {
    const r = rng(1);
    const [M, N, K] = [5, 37, 129];
    const x = randomF32(M * K, r);
    const w = randomF32(N * K, r);
    const out = new Float32Array(M * N);
    native.gemmF32(out, x, w, null, M, N, K);
    const ref = twin.linear(x, w, M, N, K);
    expect(compare("linear", out, ref.out, 1e-6, ref.scale).ok).toBe(true);
    const bias = randomF32(N, r);
    native.gemmF32(out, x, w, bias, M, N, K);
    const withBias = twin.linear(x, w, M, N, K, bias);
    expect(compare("linear + bias", out, withBias.out, 1e-6, withBias.scale).ok).toBe(true);
  });

  it("paged attention: mixed step, GQA, window, soft-cap", () => {
    for (const [window, softcap] of [[undefined, undefined], [5, 15]] as const) {
      const r = rng(5);
      const [numHeads, numKvHeads, D, blockSize] = [4, 2, 12, 3];
      const seqLens = Int32Array.of(11, 7);
      const qLens = [1, 4];
      const maxBlocksPerSeq = 4;
      const blockTables = Int32Array.of(7, 2, 5, 0, 1, 6, 3, 0);
      const queryStartLoc = Int32Array.of(0, 1, 5);
      const T = 5;
      const kc = randomF32(8 * blockSize * numKvHeads * D, r);
      const vc = randomF32(kc.length, r);
      const q = randomF32(T * numHeads * D, r);
      const out = new Float32Array(q.length);
      const scale = 1 / Math.sqrt(D);
      native.pagedAttention(out, q, kc, vc, queryStartLoc, seqLens, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, D, scale, window ?? 0, softcap ?? 0);
      const tokenSeq = Int32Array.of(0, 1, 1, 1, 1);
      const tokenPos = Int32Array.from([10, ...Array.from({ length: qLens[1]! }, (_, i) => 7 - qLens[1]! + i)]);
      const ref = twin.pagedAttention(q, kc, vc, tokenSeq, tokenPos, blockTables, {
        blockSize,
        maxBlocksPerSeq,
        numHeads,
        numKvHeads,
        headDim: D,
        scale: Math.fround(scale),
        window,
        softcap,
      });
      expect(compare("attention", out, ref, 2e-6).ok).toBe(true);
    }
  });

  it("argmax rows", () => {
    const logits = randomF32(3 * 50, rng(6));
    logits[60] = 9;
    logits[70] = 9;
    const picks = twin.argmaxRows(logits, 3, 50);
    for (let s = 0; s < 3; s++) expect(picks[s]).toBe(argmax(logits.subarray(s * 50, (s + 1) * 50)));
  });
});
