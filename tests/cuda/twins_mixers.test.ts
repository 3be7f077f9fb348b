// The CPU twins of the experts, short-conv, lightning-attention and Mamba scan CUDA kernels
// (cpu_twins_mixers.ts, float64 from HF's definitions) agree with kiln's CPU implementations of
// the same ops (runtime/backends/cpu/*.ts): so both the CPU path and the CUDA kernels are held to one
// reference, and a GPU parity failure points at the GPU kernel.
import { describe, expect, it } from "vitest";
import { headDecays, linearAttention } from "../../runtime/backends/cpu/linear_attention.ts";
import { negExp, selectiveScan, softplus, ssdScan } from "../../runtime/backends/cpu/mamba.ts";
import { fusedExperts, routeTokens } from "../../runtime/backends/cpu/moe.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { shortConv } from "../../runtime/backends/cpu/short_conv.ts";
import * as twin from "./cpu_twins_mixers.ts";
import { compare, randomF32, rng } from "./parity_support.ts";

const native = loadNative();

/** per sequence: its rows and a view of its slot's state */
function views(pool: Float32Array, seqs: twin.TwinSeqs, stateSize: number): { start: number; end: number; state: Float32Array }[] {
  return Array.from(seqs.slots, (slot, s) => ({
    start: seqs.queryStartLoc[s]!,
    end: seqs.queryStartLoc[s + 1]!,
    state: pool.subarray(slot * stateSize, (slot + 1) * stateSize),
  }));
}

const SEQS: twin.TwinSeqs = { queryStartLoc: Int32Array.from([0, 5, 6, 15]), slots: Int32Array.from([2, 0, 3]) };

describe("CPU twins of the mixer and experts kernels agree with the CPU implementations", () => {
  for (const renorm of [true, false]) {
    it(`fused experts (top-3 of 8${renorm ? ", renormalized" : ""})`, () => {
      const r = rng(renorm ? 71 : 72);
      const [T, H, E, I, K] = [9, 48, 8, 24, 3];
      const x = randomF32(T * H, r);
      const router = randomF32(E * H, r, 0.5);
      const w13 = randomF32(E * 2 * I * H, r, 0.3);
      const w2 = randomF32(E * H * I, r, 0.3);
      const ref = twin.fusedExperts(x, router, w13, w2, { T, H, E, I, K, renorm });
      const out = new Float32Array(T * H);
      const dims = { hidden: H, numExperts: E, topK: K, intermediate: I, routing: renorm ? "softmax_topk_renorm" : "softmax_topk", activation: "silu" } as const;
      fusedExperts(native, out, x, { dtype: "f32", data: router }, { dtype: "f32", data: w13 }, { dtype: "f32", data: w2 }, dims);
      expect(compare("moe", out, ref.out, 2e-6).maxErr).toBeLessThan(2e-6);
    });
  }

  it("routing picks the lower expert on a tie and renormalizes the top-k", () => {
    const logits = Float32Array.from([1, 3, 3, 0, 2, 2, 2, 2]); // two tokens, four experts
    const { experts, weights } = routeTokens(logits, 2, 4, 2, "softmax_topk_renorm");
    expect([...experts]).toEqual([1, 2, 0, 1]);
    expect(weights[0]).toBeCloseTo(0.5, 7);
    expect(weights[2]! + weights[3]!).toBeCloseTo(1, 6);
  });

  for (const [D, L, bias] of [[70, 3, false], [33, 4, true]] as const) {
    it(`short conv [D=${D}, L=${L}${bias ? ", bias" : ""}], three sequences from non-zero states`, () => {
      const r = rng(73 + L);
      const x = randomF32(15 * D, r);
      const w = randomF32(D * L, r);
      const b = bias ? randomF32(D, r) : undefined;
      const pool = randomF32(4 * (L - 1) * D, r);
      const ref = twin.shortConv(x, w, b, pool, SEQS, D, L);
      const out = new Float32Array(15 * D);
      shortConv(out, x, w, b, views(pool, SEQS, (L - 1) * D), D, L);
      expect(compare("short conv", out, ref.out, 2e-6).maxErr).toBeLessThan(2e-6);
      expect(compare("short conv state", pool, ref.states, 0).maxErr).toBe(0);
    });
  }

  it("lightning attention [heads=3, D=16], three sequences from non-zero states", () => {
    const r = rng(77);
    const [heads, D] = [3, 16];
    const qkv = randomF32(15 * heads * 3 * D, r, 0.5);
    const slopes = Float32Array.from({ length: heads }, (_, h) => 2 ** -(h + 1));
    const pool = randomF32(4 * heads * D * D, r, 0.5);
    const ref = twin.linearAttention(qkv, slopes, pool, SEQS, heads, D);
    const out = new Float32Array(15 * heads * D);
    linearAttention(out, qkv, headDecays(Array.from(slopes)), views(pool, SEQS, heads * D * D), heads, D);
    expect(compare("linear attention", out, ref.out, 2e-5).maxErr).toBeLessThan(2e-5);
    expect(compare("linear attention state", pool, ref.states, 2e-5).maxErr).toBeLessThan(2e-5);
  });

  /**
   * Three sequences of 7, 2 and 11 rows, run by the CPU scan in two steps (a chunk of 6, 1, 10
   * rows, then one row each) with its state carried, against the twin's single pass.
   */
  const SCAN_SEQS: twin.TwinSeqs = { queryStartLoc: Int32Array.from([0, 7, 9, 20]), slots: Int32Array.from([2, 0, 3]) };
  const SCAN_T = 20;
  function inTwoSteps(pool: Float32Array, stateSize: number, width: number, scan: (out: Float32Array, rows: (x: Float32Array, w: number) => Float32Array, seqs: ReturnType<typeof views>) => void): Float32Array {
    const full = new Float32Array(SCAN_T * width);
    for (const part of twin.splitStep(SCAN_SEQS, [6, 1, 10])) {
      const out = new Float32Array(part.rows.length * width);
      scan(out, (x, w) => twin.gatherRows(x, part.rows, w), views(pool, part, stateSize));
      part.rows.forEach((r, i) => full.set(out.subarray(i * width, (i + 1) * width), r * width));
    }
    return full;
  }

  it("softplus follows PyTorch's threshold of 20", () => {
    expect(softplus(25)).toBe(25);
    expect(softplus(0)).toBeCloseTo(Math.LN2, 15);
    expect(softplus(-30)).toBeCloseTo(Math.exp(-30), 20);
  });

  it("selective scan [I=37, N=12], three sequences from non-zero states, chunk then decode", () => {
    const r = rng(78);
    const [I, N, T] = [37, 12, SCAN_T];
    const u = randomF32(T * I, r);
    const delta = randomF32(T * I, r, 4);
    delta[100] = 23.5; // above softplus's threshold
    const aLog = randomF32(I * N, r, 1.5);
    const b = randomF32(T * N, r);
    const c = randomF32(T * N, r);
    const d = randomF32(I, r);
    const z = randomF32(T * I, r, 3);
    const pool = randomF32(4 * I * N, r);
    const ref = twin.selectiveScan(u, delta, aLog, b, c, d, z, pool, SCAN_SEQS, { I, N });
    const a = negExp(aLog);
    const out = inTwoSteps(pool, I * N, I, (o, rows, seqs) =>
      selectiveScan(o, rows(u, I), rows(delta, I), a, rows(b, N), rows(c, N), d, rows(z, I), seqs, { dim: I, stateSize: N }),
    );
    expect(compare("selective scan", out, ref.out, 2e-6).maxErr).toBeLessThan(2e-6);
    expect(compare("selective scan state", pool, ref.states, 2e-6).maxErr).toBeLessThan(2e-6);
  });

  for (const [G, dtMax] of [[3, undefined], [1, 0.7]] as const) {
    it(`SSD scan [H=6, P=10, G=${G}, N=9, Δ ${dtMax === undefined ? "≥ 0.01" : `in [0.01, ${dtMax}]`}], three sequences from non-zero states, chunk then decode`, () => {
      const r = rng(79 + G);
      const [H, P, N, T] = [6, 10, 9, SCAN_T];
      const x = randomF32(T * H * P, r);
      const dt = randomF32(T * H, r, 4);
      dt[50] = 23.5; // above softplus's threshold
      const dtBias = randomF32(H, r);
      const aLog = randomF32(H, r, 1.5);
      const b = randomF32(T * G * N, r);
      const c = randomF32(T * G * N, r);
      const d = randomF32(H, r);
      const pool = randomF32(4 * H * P * N, r);
      const ref = twin.ssdScan(x, dt, dtBias, aLog, b, c, d, pool, SCAN_SEQS, { H, P, G, N, dtMin: 0.01, dtMax });
      const a = negExp(aLog);
      const dims = { numHeads: H, headDim: P, numGroups: G, stateSize: N, dtMin: 0.01, dtMax };
      const out = inTwoSteps(pool, H * P * N, H * P, (o, rows, seqs) =>
        ssdScan(o, rows(x, H * P), rows(dt, H), dtBias, a, rows(b, G * N), rows(c, G * N), d, seqs, dims),
      );
      expect(compare("ssd scan", out, ref.out, 2e-6).maxErr).toBeLessThan(2e-6);
      expect(compare("ssd scan state", pool, ref.states, 2e-6).maxErr).toBeLessThan(2e-6);
    });
  }
});
