/**
 * The formats' unpacking against cases worked out by hand from the public definitions (AutoAWQ's
 * GEMM nibble order, GPTQ's input-packed words and legacy zero offset, e4m3fn bit patterns),
 * through the real layers: a linear layer built with a quantization config, filled by
 * loadWeights from hand-written tensors, dequantized after loading.
 */
import { describe, expect, it } from "vitest";
import { f32ToF16 } from "../../runtime/io/artifact_weights.ts";
import type { DType } from "../../runtime/io/safetensors.ts";
import { ColumnParallelLinear, QKVParallelLinear, ReplicatedLinear, RowParallelLinear } from "../../models/dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type WeightSource } from "../../models/dsl/load_weights.ts";
import type { ModelContext } from "../../models/dsl/module.ts";
import type { Module } from "../../models/dsl/module.ts";
import type { QuantizationConfig } from "../../models/dsl/quantization/config.ts";
import { E4M3_TO_F32, f32ToE4m3 } from "../../models/dsl/quantization/fp8.ts";
import { packAwq, packGptqCols, packGptqRows } from "./quantize_fixture.ts";

interface HandTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

/** A weight source over hand-written tensors. */
function source(tensors: Record<string, HandTensor>): WeightSource {
  return {
    origin: "hand",
    names: () => Object.keys(tensors).sort(),
    tensor: (name) => {
      const t = tensors[name]!;
      const bytes = new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
      return {
        name,
        origin: "hand",
        shape: t.shape,
        dtype: t.dtype,
        f32: () => new Float32Array(bytes.buffer),
        bf16: () => new Uint16Array(bytes.buffer),
        bytes: () => bytes,
      };
    },
  };
}

const ctxFor = (quantization: QuantizationConfig, tp = { tpSize: 1, tpRank: 0 }): ModelContext => ({ parallel: tp, weightStorage: "f32", quantization });
const f16 = (xs: number[]): Uint16Array => Uint16Array.from(xs, f32ToF16);
const i32 = (xs: number[]): Int32Array => Int32Array.from(xs, (x) => x | 0);

function loadedWeight(layer: Module & { readonly weight: { readonly data?: { readonly data: Float32Array | Uint16Array } | undefined } }, tensors: Record<string, HandTensor>): number[] {
  loadWeights(layer, source(tensors), { stacked: LLAMA_STACKED });
  return Array.from(layer.weight.data!.data);
}

describe("fp8 e4m3fn bit patterns", () => {
  it("decodes the landmark patterns", () => {
    expect(E4M3_TO_F32[0x7e]).toBe(448); // S.1111.110: 1.75 · 2^8
    expect(E4M3_TO_F32[0x08]).toBe(2 ** -6); // smallest normal
    expect(E4M3_TO_F32[0x01]).toBe(2 ** -9); // smallest subnormal: 0.001 · 2^-6
    expect(E4M3_TO_F32[0x07]).toBe(7 * 2 ** -9); // largest subnormal
    expect(E4M3_TO_F32[0x38]).toBe(1); // exponent 7 = bias
    expect(E4M3_TO_F32[0x3c]).toBe(1.5);
    expect(E4M3_TO_F32[0x40]).toBe(2);
    expect(E4M3_TO_F32[0xfe]).toBe(-448); // the sign bit
    expect(E4M3_TO_F32[0xb8]).toBe(-1);
    expect(Object.is(E4M3_TO_F32[0x80], -0)).toBe(true);
    expect(E4M3_TO_F32[0x7f]).toBeNaN(); // no infinities: S.1111.111 is NaN
    expect(E4M3_TO_F32[0xff]).toBeNaN();
    expect(E4M3_TO_F32[0x78]).toBe(256); // S.1111.000 is finite in e4m3fn
  });

  it("encodes to nearest, ties to even, saturating at 448", () => {
    expect(f32ToE4m3(448)).toBe(0x7e);
    expect(f32ToE4m3(1000)).toBe(0x7e);
    expect(f32ToE4m3(-1000)).toBe(0xfe);
    expect(f32ToE4m3(1)).toBe(0x38);
    expect(f32ToE4m3(1.0625)).toBe(0x38); // halfway 1 and 1.125: the even mantissa
    expect(f32ToE4m3(1.1875)).toBe(0x3a); // halfway 1.125 and 1.25: the even one, 1.25
    expect(f32ToE4m3(2 ** -10)).toBe(0x00); // halfway 0 and 2^-9
    expect(f32ToE4m3(3 * 2 ** -10)).toBe(0x02); // halfway 2^-9 and 2^-8
    expect(f32ToE4m3(NaN)).toBe(0x7f);
  });
});

describe("AWQ GEMM packing", () => {
  // q[i][o] = o on even input rows, 15 − o on odd ones. Nibble n holds column ORDER[n],
  // ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; reading nibbles 7..0 as hex:
  //   even rows: columns 7,5,3,1,6,4,2,0 → 0x75316420
  //   odd rows:  15 − those = 8,10,12,14,9,11,13,15 → 0x8ACE9BDF
  const EVEN = 0x75316420;
  const ODD = 0x8ace9bdf | 0;
  const q = Array.from({ length: 8 }, (_, i) => Array.from({ length: 8 }, (_, o) => (i % 2 === 0 ? o : 15 - o)));

  it("the fixture packer writes the hand-computed words", () => {
    expect(Array.from(packAwq(q, 8))).toEqual([EVEN, ODD, EVEN, ODD, EVEN, ODD, EVEN, ODD]);
    expect(Array.from(packAwq([[8, 8, 8, 8, 8, 8, 8, 8]], 8))).toEqual([0x88888888 | 0]);
  });

  it("an 8×8 layer dequantizes (q − z) · s from hand-written words", () => {
    const layer = new ReplicatedLinear("l", 8, 8, ctxFor({ method: "awq", bits: 4, groupSize: 8, ignore: [] }));
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [8, 1], data: i32([EVEN, ODD, EVEN, ODD, EVEN, ODD, EVEN, ODD]) },
      "l.qzeros": { dtype: "I32", shape: [1, 1], data: i32([0x88888888]) },
      "l.scales": { dtype: "F16", shape: [1, 8], data: f16([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]) },
    });
    // W [out, in]: W[o][i] = (q[i][o] − 8) · 0.5
    const want = Array.from({ length: 64 }, (_, k) => {
      const o = Math.floor(k / 8);
      const i = k % 8;
      return ((i % 2 === 0 ? o : 15 - o) - 8) * 0.5;
    });
    expect(w).toEqual(want);
  });

  it("a column-parallel rank reads its own words, zeros and scales (tp 2, rank 1 of 16 outputs)", () => {
    const layer = new ColumnParallelLinear("l", 8, 16, ctxFor({ method: "awq", bits: 4, groupSize: 8, ignore: [] }, { tpSize: 2, tpRank: 1 }));
    // word column 0 (outputs 0..7) all zero nibbles; word column 1 (outputs 8..15) the EVEN word
    const qweight = Array.from({ length: 8 }, () => [0, EVEN]).flat();
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [8, 2], data: i32(qweight) },
      "l.qzeros": { dtype: "I32", shape: [1, 2], data: i32([0, 0x11111111]) },
      "l.scales": { dtype: "F16", shape: [1, 16], data: f16([...Array<number>(8).fill(9), ...Array<number>(8).fill(2)]) },
    });
    // rank 1's output o (global 8 + o): (o − 1) · 2 on every input
    expect(w).toEqual(Array.from({ length: 64 }, (_, k) => (Math.floor(k / 8) - 1) * 2));
  });
});

describe("GPTQ packing", () => {
  it("4-bit: input rows packed along the words, legacy zero 7 stored for a symmetric zero of 8", () => {
    // qweight [in/8 = 1, out = 8]: column 0 holds rows 0..7 = 0..7 → 0x76543210; columns 1..7 all 15 → 0xFFFFFFFF
    const col0 = 0x76543210;
    expect(Array.from(packGptqRows(Array.from({ length: 8 }, (_, i) => [i, ...Array<number>(7).fill(15)]), 8, 4))).toEqual([col0, ...Array<number>(7).fill(-1)]);
    expect(Array.from(packGptqCols([Array<number>(8).fill(7)], 8, 4))).toEqual([0x77777777]);
    const layer = new ReplicatedLinear("l", 8, 8, ctxFor({ method: "gptq", bits: 4, groupSize: 8, descAct: false, sym: true, zeroOffset: 1, ignore: [] }));
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [1, 8], data: i32([col0, -1, -1, -1, -1, -1, -1, -1]) },
      "l.qzeros": { dtype: "I32", shape: [1, 1], data: i32([0x77777777]) },
      "l.scales": { dtype: "F16", shape: [1, 8], data: f16(Array<number>(8).fill(1)) },
    });
    // W[0][i] = i − 8; W[o > 0][i] = 15 − 8
    expect(w).toEqual(Array.from({ length: 64 }, (_, k) => (k < 8 ? k - 8 : 7)));
  });

  it("8-bit: four inputs per word, zero 127 + 1", () => {
    // column 0: rows [1, 2, 3, 4] → 0x04030201; column 1: [255, 0, 128, 127] → 0x7F8000FF; columns 2, 3: 128 each → 0x80808080
    const words = [0x04030201, 0x7f8000ff, 0x80808080 | 0, 0x80808080 | 0];
    expect(Array.from(packGptqRows([[1, 255, 128, 128], [2, 0, 128, 128], [3, 128, 128, 128], [4, 127, 128, 128]], 4, 8))).toEqual(words);
    const layer = new ReplicatedLinear("l", 4, 4, ctxFor({ method: "gptq", bits: 8, groupSize: 4, descAct: false, sym: true, zeroOffset: 1, ignore: [] }));
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [1, 4], data: i32(words) },
      "l.qzeros": { dtype: "I32", shape: [1, 1], data: i32([0x7f7f7f7f]) },
      "l.scales": { dtype: "F16", shape: [1, 4], data: f16([0.25, 0.25, 0.25, 0.25]) },
    });
    expect(w).toEqual([
      ...[1, 2, 3, 4].map((v) => (v - 128) * 0.25),
      (255 - 128) * 0.25, -128 * 0.25, 0, -0.25,
      0, 0, 0, 0,
      0, 0, 0, 0,
    ]);
  });

  it("desc_act: each input takes its group's zero and scale through g_idx", () => {
    // all q = 3; group 0: zero 1 (stored 0), scale 1; group 1: zero 2 (stored 1), scale 10
    const layer = new ReplicatedLinear("l", 8, 8, ctxFor({ method: "gptq", bits: 4, groupSize: 4, descAct: true, sym: false, zeroOffset: 1, ignore: [] }));
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [1, 8], data: i32(Array<number>(8).fill(0x33333333)) },
      "l.qzeros": { dtype: "I32", shape: [2, 1], data: i32([0x00000000, 0x11111111]) },
      "l.scales": { dtype: "F16", shape: [2, 8], data: f16([...Array<number>(8).fill(1), ...Array<number>(8).fill(10)]) },
      "l.g_idx": { dtype: "I32", shape: [8], data: i32([1, 0, 1, 0, 0, 1, 1, 0]) },
    });
    // group 0 inputs: (3 − 1) · 1 = 2; group 1 inputs: (3 − 2) · 10 = 10
    const row = [10, 2, 10, 2, 2, 10, 10, 2];
    expect(w).toEqual(Array.from({ length: 8 }, () => row).flat());
  });

  it("a row-parallel rank reads its own input words and groups (tp 2, rank 1 of 16 inputs)", () => {
    const layer = new RowParallelLinear("l", 16, 8, ctxFor({ method: "gptq", bits: 4, groupSize: 8, descAct: false, sym: false, zeroOffset: 0, ignore: [] }, { tpSize: 2, tpRank: 1 }));
    // qweight [2, 8]: word row 0 (inputs 0..7) all 0xF..., word row 1 (inputs 8..15) all 5s; group 1 zero 4, scale 3
    const w = loadedWeight(layer, {
      "l.qweight": { dtype: "I32", shape: [2, 8], data: i32([...Array<number>(8).fill(-1), ...Array<number>(8).fill(0x55555555)]) },
      "l.qzeros": { dtype: "I32", shape: [2, 1], data: i32([0, 0x44444444]) },
      "l.scales": { dtype: "F16", shape: [2, 8], data: f16([...Array<number>(8).fill(100), ...Array<number>(8).fill(3)]) },
    });
    expect(w).toEqual(Array<number>(64).fill((5 - 4) * 3));
  });
});

describe("fp8 layers", () => {
  it("per-tensor scales stay per checkpoint tensor when q, k and v stack", () => {
    // hidden 4, 2 heads of 2, 1 kv head: q rows 4, k rows 2, v rows 2; every weight 0x38 = 1.0
    const layer = new QKVParallelLinear("a.qkv_proj", 4, 2, 2, 1, ctxFor({ method: "fp8", from: "fp8", strategy: "tensor", block: undefined, scaleName: "weight_scale", staticInputScale: false, ignore: [] }));
    const ones = (rows: number): HandTensor => ({ dtype: "F8_E4M3", shape: [rows, 4], data: new Uint8Array(rows * 4).fill(0x38) });
    const scale = (s: number): HandTensor => ({ dtype: "F32", shape: [], data: Float32Array.of(s) });
    const w = loadedWeight(layer, {
      "a.q_proj.weight": ones(4),
      "a.q_proj.weight_scale": scale(2),
      "a.k_proj.weight": ones(2),
      "a.k_proj.weight_scale": scale(4),
      "a.v_proj.weight": ones(2),
      "a.v_proj.weight_scale": scale(8),
    });
    expect(w).toEqual([...Array<number>(16).fill(2), ...Array<number>(8).fill(4), ...Array<number>(8).fill(8)]);
  });

  it("block scales [⌈out/bn⌉, ⌈in/bk⌉] cover partial blocks at the edges", () => {
    // out 3, in 3, blocks 2×2: scales [[1, 2], [3, 4]]; weight all 0x40 = 2.0
    const layer = new ReplicatedLinear("l", 3, 3, ctxFor({ method: "fp8", from: "fp8", strategy: "block", block: [2, 2], scaleName: "weight_scale_inv", staticInputScale: false, ignore: [] }));
    const w = loadedWeight(layer, {
      "l.weight": { dtype: "F8_E4M3", shape: [3, 3], data: new Uint8Array(9).fill(0x40) },
      "l.weight_scale_inv": { dtype: "F32", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
    });
    expect(w).toEqual([2, 2, 4, 2, 2, 4, 6, 6, 8]);
  });
});
