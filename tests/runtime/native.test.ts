// The native CPU kernels against naive double-precision references written here from the
// definitions (PyTorch Linear, HF RMSNorm / rotary embedding, vLLM-style paged attention), on
// random inputs of awkward sizes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { loadNative, loadNativeFrom } from "../../runtime/backends/cpu/native.ts";

const native = loadNative();

// mulberry32: a small seeded PRNG so failures reproduce.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randn(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

function shuffled(n: number, rand: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j] ?? 0, a[i] ?? 0];
  }
  return a;
}

const at = (a: ArrayLike<number>, i: number): number => {
  const v = a[i];
  if (v === undefined) throw new Error(`index ${i} out of range`);
  return v;
};

// |actual - expected| <= tol * scale[i] (scale defaults to max(1, |expected|)), reporting the worst.
function expectClose(actual: Float32Array, expected: ArrayLike<number>, tol: number, scale?: ArrayLike<number>) {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < actual.length; i++) {
    const e = at(expected, i);
    const s = scale === undefined ? Math.max(1, Math.abs(e)) : at(scale, i);
    const err = Math.abs(at(actual, i) - e) / s;
    if (!(err <= worst)) [worst, worstAt] = [err, i];
  }
  expect(worst, `worst error at ${worstAt}`).toBeLessThanOrEqual(tol);
}

// bf16 by round-to-nearest-even of the f32 bit pattern.
function toBf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = at(bits, i);
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}
function fromBf16(w: Uint16Array): Float32Array {
  const bits = new Uint32Array(w.length);
  for (let i = 0; i < w.length; i++) bits[i] = at(w, i) << 16;
  return new Float32Array(bits.buffer);
}

describe("gemm", () => {
  // Reference out[m,n] = Σ_k x[m,k] w[n,k] + bias[n] in double, and Σ |x w| as the error scale.
  function reference(
    x: Float32Array, w: Float32Array, bias: Float32Array | null, M: number, N: number, K: number,
  ) {
    const out = new Float64Array(M * N);
    const mag = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = bias ? at(bias, n) : 0;
        let a = Math.abs(s);
        for (let k = 0; k < K; k++) {
          const p = at(x, m * K + k) * at(w, n * K + k);
          s += p;
          a += Math.abs(p);
        }
        out[m * N + n] = s;
        mag[m * N + n] = Math.max(a, 1e-30);
      }
    }
    return { out, mag };
  }

  // M = 1 takes the GEMV path, 2..7 the unpacked dot-product tiles, >= 8 the packed path; sizes
  // straddle every tile edge (6 x 16 packed, 4 x 3 unpacked, 8-wide K, 256-deep K blocks).
  const shapes: readonly (readonly [number, number, number])[] = [
    [1, 1, 1], [1, 5, 67], [1, 64, 64], [1, 768, 256], [1, 203, 1031],
    [2, 3, 8], [3, 7, 67], [5, 50, 600], [6, 300, 300], [7, 1, 9],
    [8, 16, 8], [13, 17, 7], [40, 1, 33], [37, 29, 67], [37, 64, 64], [64, 96, 256],
    [130, 200, 300], [300, 530, 40],
    [5, 13, 0], [0, 4, 4],
  ];
  for (const [M, N, K] of shapes) {
    for (const withBias of [false, true]) {
      it(`M=${M} N=${N} K=${K}${withBias ? " +bias" : ""}: f32 and bf16 weights`, () => {
        const rand = rng(M * 7919 + N * 31 + K + (withBias ? 1 : 0));
        const x = randn(M * K, rand);
        const w = randn(N * K, rand, 0.5);
        const bias = withBias ? randn(N, rand) : null;
        const out = new Float32Array(M * N).fill(Number.NaN);
        native.gemmF32(out, x, w, bias, M, N, K);
        const ref = reference(x, w, bias, M, N, K);
        expectClose(out, ref.out, 1e-5, ref.mag);

        const wb = toBf16(w);
        const outB = new Float32Array(M * N).fill(Number.NaN);
        native.gemmBf16(outB, x, wb, bias, M, N, K);
        const refB = reference(x, fromBf16(wb), bias, M, N, K);
        expectClose(outB, refB.out, 1e-5, refB.mag);
      });
    }
  }

  it("works on subarray views (byte offsets)", () => {
    const rand = rng(5);
    const [M, N, K] = [9, 11, 19];
    const xBuf = randn(M * K + 3, rand);
    const wBuf = randn(N * K + 1, rand);
    const x = xBuf.subarray(3);
    const w = wBuf.subarray(1);
    const out = new Float32Array(M * N + 2).subarray(2);
    native.gemmF32(out, x, w, null, M, N, K);
    const ref = reference(x, w, null, M, N, K);
    expectClose(out, ref.out, 1e-5, ref.mag);
  });
});

describe("rmsNorm", () => {
  function reference(
    x: Float32Array, w: Float32Array, rows: number, cols: number, group: number, eps: number, off: number,
  ) {
    const out = new Float64Array(rows * cols);
    for (let g = 0; g < (rows * cols) / group; g++) {
      let ss = 0;
      for (let j = 0; j < group; j++) ss += at(x, g * group + j) ** 2;
      const inv = 1 / Math.sqrt(ss / group + eps);
      for (let j = 0; j < group; j++) out[g * group + j] = at(x, g * group + j) * inv * (at(w, j) + off);
    }
    return out;
  }
  const cases = [
    { name: "one row, odd width", rows: 1, cols: 67, group: 67, off: 0 },
    { name: "Gemma (1 + w)", rows: 5, cols: 64, group: 64, off: 1 },
    { name: "Qwen3 per-head groups", rows: 7, cols: 4 * 20, group: 20, off: 0 },
    { name: "large (parallel)", rows: 300, cols: 256, group: 256, off: 0 },
  ] as const;
  for (const c of cases) {
    it(c.name, () => {
      const rand = rng(c.rows * 1000 + c.cols);
      const x = randn(c.rows * c.cols, rand, 3);
      const w = randn(c.group, rand);
      const out = new Float32Array(x.length);
      native.rmsNorm(out, x, w, c.rows, c.cols, c.group, 1e-6, c.off);
      const ref = reference(x, w, c.rows, c.cols, c.group, 1e-6, c.off);
      const mag = ref.map((v) => Math.max(Math.abs(v), 1e-3));
      expectClose(out, ref, 1e-6, mag);
      // In place (out === x) gives the same result.
      native.rmsNorm(x, x, w, c.rows, c.cols, c.group, 1e-6, c.off);
      expect(Array.from(x)).toEqual(Array.from(out));
    });
  }
});

describe("rope", () => {
  function invFreqFor(rotaryDim: number, base: number): Float32Array {
    const f = new Float32Array(rotaryDim / 2);
    for (let i = 0; i < f.length; i++) f[i] = 1 / base ** ((2 * i) / rotaryDim);
    return f;
  }
  function reference(
    x: Float32Array, pos: Int32Array, invFreq: Float32Array,
    T: number, H: number, D: number, R: number, neox: boolean,
  ) {
    const out = Float64Array.from(x);
    const half = R / 2;
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const base = (t * H + h) * D;
        for (let i = 0; i < half; i++) {
          const angle = Math.fround(at(pos, t) * at(invFreq, i)); // f32 product, as HF computes it
          const [c, s] = [Math.cos(angle), Math.sin(angle)];
          const [ia, ib] = neox ? [base + i, base + i + half] : [base + 2 * i, base + 2 * i + 1];
          const a = at(x, ia);
          const b = at(x, ib);
          out[ia] = a * c - b * s;
          out[ib] = b * c + a * s;
        }
      }
    }
    return out;
  }
  const cases = [
    { name: "neox, full rotary", T: 5, H: 3, D: 16, R: 16, neox: true },
    { name: "neox, partial rotary", T: 7, H: 2, D: 20, R: 8, neox: true },
    { name: "GPT-J interleaved, partial rotary", T: 6, H: 3, D: 24, R: 12, neox: false },
    { name: "GPT-J interleaved, full rotary", T: 4, H: 2, D: 10, R: 10, neox: false },
    { name: "large (parallel)", T: 64, H: 8, D: 64, R: 64, neox: true },
  ] as const;
  for (const c of cases) {
    it(c.name, () => {
      const rand = rng(c.T * 100 + c.D);
      const x = randn(c.T * c.H * c.D, rand);
      const positions = Int32Array.from({ length: c.T }, () => Math.floor(rand() * 5000));
      const invFreq = invFreqFor(c.R, 10000);
      const ref = reference(x, positions, invFreq, c.T, c.H, c.D, c.R, c.neox);
      const y = Float32Array.from(x);
      native.rope(y, positions, invFreq, c.T, c.H, c.D, c.R, c.neox);
      expectClose(y, ref, 2e-6);
      for (let i = 0; i < x.length; i++) {
        if (i % c.D >= c.R) expect(y[i]).toBe(x[i]); // the non-rotary tail is untouched
      }
    });
  }
});

describe("writeKv", () => {
  it("scatters rows to their slots and leaves the rest alone", () => {
    const rand = rng(11);
    const [T, KVH, D, numSlots] = [5, 2, 12, 32];
    const k = randn(T * KVH * D, rand);
    const v = randn(T * KVH * D, rand);
    const slots = Int32Array.from(shuffled(numSlots, rand).slice(0, T));
    const kCache = new Float32Array(numSlots * KVH * D);
    const vCache = new Float32Array(numSlots * KVH * D);
    native.writeKv(kCache, vCache, k, v, slots, T, KVH, D);
    const row = KVH * D;
    for (let s = 0; s < numSlots; s++) {
      const t = slots.indexOf(s);
      const kRow = Array.from(kCache.subarray(s * row, (s + 1) * row));
      const vRow = Array.from(vCache.subarray(s * row, (s + 1) * row));
      expect(kRow).toEqual(t < 0 ? new Array(row).fill(0) : Array.from(k.subarray(t * row, (t + 1) * row)));
      expect(vRow).toEqual(t < 0 ? new Array(row).fill(0) : Array.from(v.subarray(t * row, (t + 1) * row)));
    }
  });

  it("rejects a slot outside the cache without writing anything", () => {
    const kCache = new Float32Array(4 * 8);
    const vCache = new Float32Array(4 * 8);
    const k = new Float32Array(2 * 8).fill(1);
    expect(() => native.writeKv(kCache, vCache, k, k, Int32Array.of(0, 4), 2, 2, 4)).toThrow(RangeError);
    expect(() => native.writeKv(kCache, vCache, k, k, Int32Array.of(-1, 0), 2, 2, 4)).toThrow(/slotMapping\[0\]/);
    expect(kCache.every((e) => e === 0)).toBe(true);
  });
});

describe("pagedAttention", () => {
  type Seq = { readonly seqLen: number; readonly qLen: number };
  type Scenario = {
    readonly seqs: readonly Seq[];
    readonly blockSize: number;
    readonly numHeads: number;
    readonly numKvHeads: number;
    readonly headDim: number;
    readonly slidingWindow: number;
    readonly softcap: number;
    readonly qScale?: number;
  };

  // Keys/values per sequence are drawn logically ([seqLen, numKvHeads * headDim]) and scattered
  // into the paged caches through shuffled block tables; the reference reads the logical copy.
  function run(sc: Scenario, seed: number) {
    const rand = rng(seed);
    const { blockSize: bs, numHeads: H, numKvHeads: KVH, headDim: D } = sc;
    const S = sc.seqs.length;
    const maxBlocks = Math.max(1, ...sc.seqs.map((s) => Math.ceil(s.seqLen / bs))) + 1;
    const numBlocks = sc.seqs.reduce((n, s) => n + Math.ceil(s.seqLen / bs), 0) + 3;
    const kCache = randn(numBlocks * bs * KVH * D, rand); // unused slots hold garbage on purpose
    const vCache = randn(numBlocks * bs * KVH * D, rand);
    const pool = shuffled(numBlocks, rand);
    const blockTables = new Int32Array(S * maxBlocks).fill(-7); // unused entries must not be read
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    const row = KVH * D;
    sc.seqs.forEach((s, si) => {
      const kk = randn(s.seqLen * row, rand);
      const vv = randn(s.seqLen * row, rand);
      for (let b = 0; b * bs < s.seqLen; b++) blockTables[si * maxBlocks + b] = pool.pop() ?? -1;
      for (let j = 0; j < s.seqLen; j++) {
        const slot = at(blockTables, si * maxBlocks + Math.floor(j / bs)) * bs + (j % bs);
        kCache.set(kk.subarray(j * row, (j + 1) * row), slot * row);
        vCache.set(vv.subarray(j * row, (j + 1) * row), slot * row);
      }
      keys.push(kk);
      values.push(vv);
    });
    const queryStartLoc = new Int32Array(S + 1);
    sc.seqs.forEach((s, si) => (queryStartLoc[si + 1] = at(queryStartLoc, si) + s.qLen));
    const T = at(queryStartLoc, S);
    const q = randn(T * H * D, rand, sc.qScale ?? 1);
    const seqLens = Int32Array.from(sc.seqs.map((s) => s.seqLen));
    const scale = 1 / Math.sqrt(D);
    const out = new Float32Array(T * H * D).fill(Number.NaN);
    native.pagedAttention(
      out, q, kCache, vCache, queryStartLoc, seqLens, blockTables, maxBlocks,
      bs, H, KVH, D, scale, sc.slidingWindow, sc.softcap,
    );

    const ref = new Float64Array(T * H * D);
    sc.seqs.forEach((s, si) => {
      const kk = keys[si] ?? new Float32Array();
      const vv = values[si] ?? new Float32Array();
      for (let i = 0; i < s.qLen; i++) {
        const t = at(queryStartLoc, si) + i;
        const p = s.seqLen - s.qLen + i;
        const lo = sc.slidingWindow > 0 ? Math.max(0, p - sc.slidingWindow + 1) : 0;
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / (H / KVH));
          const scores: number[] = [];
          for (let j = lo; j <= p; j++) {
            let dot = 0;
            for (let d = 0; d < D; d++) dot += at(q, (t * H + h) * D + d) * at(kk, j * row + kvh * D + d);
            let sc0 = dot * scale;
            if (sc.softcap > 0) sc0 = sc.softcap * Math.tanh(sc0 / sc.softcap);
            scores.push(sc0);
          }
          const m = Math.max(...scores);
          const e = scores.map((x) => Math.exp(x - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = lo; j <= p; j++) acc += at(e, j - lo) * at(vv, j * row + kvh * D + d);
            ref[(t * H + h) * D + d] = acc / z;
          }
        }
      }
    });
    return { out, ref, args: { q, kCache, vCache, queryStartLoc, seqLens, blockTables, maxBlocks, T } };
  }

  const base = { blockSize: 4, numHeads: 2, numKvHeads: 2, headDim: 16, slidingWindow: 0, softcap: 0 };
  // [seqLen, qLen] pairs: qLen new queries at the end of a context of seqLen tokens.
  const seqs = (...pairs: [number, number][]): Seq[] => pairs.map(([seqLen, qLen]) => ({ seqLen, qLen }));
  const scenarios: readonly (readonly [string, Scenario])[] = [
    ["prefill of one sequence (MHA)", { ...base, seqs: seqs([13, 13]) }],
    [
      "decode batch, GQA, headDim 20",
      { ...base, numHeads: 8, numKvHeads: 2, headDim: 20, seqs: seqs([1, 1], [17, 1], [100, 1]) },
    ],
    [
      "chunked prefill over a cached prefix + decode + prefill",
      { ...base, blockSize: 8, numHeads: 6, numKvHeads: 3, seqs: seqs([50, 20], [9, 1], [11, 11]) },
    ],
    [
      "sliding window",
      { ...base, numHeads: 4, numKvHeads: 2, slidingWindow: 7, seqs: seqs([40, 15], [5, 5], [30, 1]) },
    ],
    ["softcap with large scores", { ...base, softcap: 5, qScale: 10, seqs: seqs([33, 33], [70, 1]) }],
    [
      "sliding window + softcap + GQA",
      { ...base, numHeads: 4, numKvHeads: 1, slidingWindow: 16, softcap: 30, seqs: seqs([64, 40]) },
    ],
    ["a sequence with no new tokens", { ...base, seqs: seqs([6, 2], [12, 0], [3, 3]) }],
    // The kernel takes 8 query tokens at a time against chunks of 64 keys (fewer for wide heads).
    ["query blocks straddling key chunks", { ...base, seqs: seqs([70, 10], [130, 130]) }],
    [
      "headDim 128, query blocks over a prefix",
      { ...base, blockSize: 16, numHeads: 4, numKvHeads: 2, headDim: 128, seqs: seqs([90, 37], [20, 1]) },
    ],
    [
      "headDim 200 (ragged vectors), window across a query block",
      { ...base, blockSize: 5, headDim: 200, slidingWindow: 11, seqs: seqs([61, 19]) },
    ],
    [
      "long context decode, MQA, large scores (parallel, many chunks)",
      {
        ...base, blockSize: 16, numHeads: 4, numKvHeads: 1, headDim: 64, qScale: 8,
        seqs: seqs([3000, 1], [2100, 3]),
      },
    ],
  ];
  for (const [name, sc] of scenarios) {
    it(name, () => {
      const { out, ref } = run(sc, name.length * 977);
      expectClose(out, ref, 2e-5);
    });
  }

  it("rejects bad tables and lengths with RangeError", () => {
    const { args: a } = run({ ...base, seqs: seqs([10, 4]) }, 3);
    const out = new Float32Array(a.T * 2 * 16);
    type Override = {
      tables?: Int32Array; seqLens?: Int32Array; loc?: Int32Array; out?: Float32Array; heads?: number;
    };
    const call = (o: Override) =>
      native.pagedAttention(
        o.out ?? out, a.q, a.kCache, a.vCache, o.loc ?? a.queryStartLoc, o.seqLens ?? a.seqLens,
        o.tables ?? a.blockTables, a.maxBlocks, 4, o.heads ?? 2, 2, 16, 0.25, 0, 0,
      );
    expect(() => call({})).not.toThrow();
    const badTable = Int32Array.from(a.blockTables);
    badTable[1] = 1_000_000;
    expect(() => call({ tables: badTable })).toThrow(/blockTables\[0\]\[1\]/);
    expect(() => call({ seqLens: Int32Array.of(3) })).toThrow(RangeError); // fewer keys than queries
    expect(() => call({ seqLens: Int32Array.of(10_000) })).toThrow(RangeError); // past the block table
    expect(() => call({ loc: Int32Array.of(1, 4) })).toThrow(/queryStartLoc\[0\]/);
    expect(() => call({ out: new Float32Array(7) })).toThrow(/out/);
    expect(() => call({ heads: 3 })).toThrow(RangeError);
    expect(() => call({ out: a.q })).toThrow(/share memory/);
  });
});

describe("argument checking", () => {
  const x = new Float32Array(6);
  const w = new Float32Array(6);
  it("throws RangeError on length mismatches instead of crashing", () => {
    expect(() => native.gemmF32(new Float32Array(3), x, w, null, 2, 2, 3)).toThrow(
      /gemmF32: out \[M, N\] has length 3, expected 4/,
    );
    expect(() => native.gemmF32(new Float32Array(4), x, w, null, 2, 2, 4)).toThrow(RangeError);
    expect(() => native.gemmBf16(new Float32Array(4), x, new Uint16Array(5), null, 2, 2, 3)).toThrow(/w \[N, K\]/);
    expect(() => native.gemmF32(new Float32Array(4), x, w, new Float32Array(3), 2, 2, 3)).toThrow(/bias/);
    expect(() => native.gemmF32(new Float32Array(4), x, w, null, -2, 2, 3)).toThrow(RangeError);
    expect(() => native.gemmF32(new Float32Array(4), x, w, null, 2.5, 2, 3)).toThrow(RangeError);
    const huge = 1 << 30; // M * N * K overflows 2^53: refused, not wrapped around
    expect(() => native.gemmF32(new Float32Array(1 << 20), x, w, null, huge, huge, huge)).toThrow(RangeError);
    expect(() => native.gemmF32(x.subarray(0, 4), x, w, null, 2, 2, 3)).toThrow(/share memory/);
    expect(() => native.rmsNorm(x, x, new Float32Array(4), 1, 6, 3, 1e-6, 0)).toThrow(/w \[group\]/);
    expect(() => native.rmsNorm(x, x, new Float32Array(4), 1, 6, 4, 1e-6, 0)).toThrow(/multiple of group/);
    expect(() => native.rope(x, Int32Array.of(0), new Float32Array(1), 1, 2, 3, 3, true)).toThrow(/rotaryDim/);
    expect(() => native.rope(x, Int32Array.of(0, 1), new Float32Array(1), 1, 2, 3, 2, true)).toThrow(/positions/);
  });
  it("throws TypeError on wrong array types and argument counts", () => {
    // @ts-expect-error: a Float64Array where a Float32Array belongs
    expect(() => native.gemmF32(new Float64Array(4), x, w, null, 2, 2, 3)).toThrow(TypeError);
    // @ts-expect-error: f32 weights passed to the bf16 kernel
    expect(() => native.gemmBf16(new Float32Array(4), x, w, null, 2, 2, 3)).toThrow(/Uint16Array/);
    // @ts-expect-error: missing K
    expect(() => native.gemmF32(new Float32Array(4), x, w, null, 2, 2)).toThrow(TypeError);
    // @ts-expect-error: a number where neox's boolean belongs
    expect(() => native.rope(x, Int32Array.of(0), new Float32Array(1), 1, 2, 3, 2, 1)).toThrow(TypeError);
  });
});

describe("loading", () => {
  function loadError(path: string): unknown {
    try {
      loadNativeFrom(path);
    } catch (e) {
      return e;
    }
    return undefined;
  }
  it("reports a missing or broken addon as NATIVE_UNAVAILABLE, naming the fix", () => {
    const missing = loadError(join(tmpdir(), "no-such-dir", "kiln_cpu.node"));
    expect(isKilnError(missing, "NATIVE_UNAVAILABLE")).toBe(true);
    expect(String(missing)).toMatch(/npm run build:native/);
    const dir = mkdtempSync(join(tmpdir(), "kiln-native-"));
    try {
      const broken = join(dir, "kiln_cpu.node");
      writeFileSync(broken, "not a shared object");
      const e = loadError(broken);
      expect(isKilnError(e, "NATIVE_UNAVAILABLE")).toBe(true);
      expect(String(e)).toMatch(/failed to load/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("loads the built addon once and returns the same kernels", () => {
    expect(loadNative()).toBe(native);
    expect(native.numThreads()).toBeGreaterThanOrEqual(1);
  });
});
