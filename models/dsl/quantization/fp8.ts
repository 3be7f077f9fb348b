/**
 * FP8 weights: e4m3 ("float8_e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no
 * infinities, S.1111.111 is NaN, so the largest finite value is 0x7E = 1.75 · 2^8 = 448) stored
 * [out, in] as the float weight, with scales (vLLM's fp8 and compressed-tensors float-quantized):
 *
 *   tensor   weight_scale []/[1] per checkpoint tensor    W = fp8(q) · s            (q/k/v each their own s)
 *   channel  weight_scale [out, 1]                         W[o, i] = fp8(q[o, i]) · s[o]
 *   block    weight_scale(_inv) [⌈out/bn⌉, ⌈in/bk⌉]        W[o, i] = fp8(q[o, i]) · s[o/bn, i/bk]
 *
 * (`weight_scale_inv` is, despite its name, the multiplier: the dequantization scale.)
 */
import type { Fp8Quantization } from "./config.ts";
import type { QuantizedFormat } from "./linear_method.ts";
import type { LinearGeometry, PackedParameter } from "./packed_parameter.ts";

/** All 256 e4m3fn bit patterns as f32 (exact: every e4m3 value is an f32). */
export const E4M3_TO_F32: Float32Array = (() => {
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0xf;
    const mant = b & 0x7;
    if (exp === 0xf && mant === 0x7) t[b] = NaN;
    else if (exp === 0) t[b] = sign * mant * 2 ** -9; // subnormal: 0.mmm · 2^-6
    else t[b] = sign * (1 + mant / 8) * 2 ** (exp - 7);
  }
  return t;
})();

export const E4M3_MAX = 448;

/**
 * f32 → e4m3fn bits, rounding to nearest (ties to the even pattern) and saturating at ±448, as
 * quantizers clamp before the cast. NaN → 0x7F.
 */
export function f32ToE4m3(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.min(Math.abs(x), E4M3_MAX);
  // the positive patterns 0x00..0x7E ascend in value: find the nearest by bisection
  let lo = 0;
  let hi = 0x7e;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_TO_F32[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - E4M3_TO_F32[lo]!;
  const dHi = E4M3_TO_F32[hi]! - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

export function fp8Format(q: Fp8Quantization, g: LinearGeometry): QuantizedFormat {
  if (q.from === "online") return onlineFp8Format(g);
  const scale = (() => {
    switch (q.strategy) {
      case "tensor":
        return { axes: [], dtypes: ["F32", "BF16", "F16"], perShard: true } as const;
      case "channel":
        return { axes: [{ along: "out", per: 1 }], dtypes: ["F32", "BF16", "F16"] } as const;
      case "block": {
        const [bn, bk] = q.block ?? [128, 128];
        return { axes: [{ along: "out", per: bn }, { along: "in", per: bk }], dtypes: ["F32", "BF16", "F16"] } as const;
      }
    }
  })();
  return {
    name: q.from === "fp8" ? `fp8 (${q.strategy})` : `compressed-tensors fp8 (${q.strategy})`,
    tensors: {
      weight: { axes: [{ along: "out", per: 1 }, { along: "in", per: 1 }], dtypes: ["F8_E4M3"] },
      [q.scaleName]: scale,
      // a static activation scale is read and left unused: activations stay f32 on this path
      ...(q.staticInputScale ? { input_scale: { axes: [], dtypes: ["F32", "BF16", "F16"], perShard: true, optional: true } as const } : {}),
    },
    dequantize: (t) => dequantizeFp8(q, g, t(q.scaleName), t("weight")),
  };
}

/**
 * A float checkpoint quantized at load (vLLM's `--quantization fp8` on an unquantized model):
 * each checkpoint tensor (q, k and v each; gate and up each) gets the scale max|W| / 448 and its
 * values are rounded to e4m3; the layer then holds the dequantized values, what an fp8 GEMM
 * with that scale computes.
 */
function onlineFp8Format(g: LinearGeometry): QuantizedFormat {
  return {
    name: "fp8 (online, per-tensor)",
    tensors: { weight: { axes: [{ along: "out", per: 1 }, { along: "in", per: 1 }], dtypes: ["F32", "BF16", "F16"] } },
    dequantize: (t) => {
      const w = t("weight").float32();
      const I = g.inPerRank;
      for (const sh of g.shards) {
        const from = sh.dstStart * I;
        const to = (sh.dstStart + sh.rows) * I;
        let m = 0;
        for (let k = from; k < to; k++) m = Math.max(m, Math.abs(w[k]!));
        const s = Math.fround(m / E4M3_MAX || 1);
        for (let k = from; k < to; k++) w[k] = E4M3_TO_F32[f32ToE4m3(w[k]! / s)]! * s;
      }
      return w;
    },
  };
}

/** W [outPerRank, inPerRank] f32 from the e4m3 weight and its scales. */
function dequantizeFp8(q: Fp8Quantization, g: LinearGeometry, scaleParam: PackedParameter, weight: PackedParameter): Float32Array {
  const O = g.outPerRank;
  const I = g.inPerRank;
  const bits = weight.uint8();
  const s = scaleParam.float32();
  const out = new Float32Array(O * I);
  // the scale of row o, column i, per strategy
  const rowScale = new Float32Array(O);
  if (q.strategy === "tensor") {
    g.shards.forEach((sh, k) => rowScale.fill(s[k]!, sh.dstStart, sh.dstStart + sh.rows));
  } else if (q.strategy === "channel") {
    rowScale.set(s.subarray(0, O));
  }
  const [bn, bk] = q.block ?? [1, 1];
  const blockCols = Math.ceil(I / bk);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      const scale = q.strategy === "block" ? s[Math.floor(o / bn) * blockCols + Math.floor(i / bk)]! : rowScale[o]!;
      out[o * I + i] = E4M3_TO_F32[bits[o * I + i]!]! * scale;
    }
  }
  return out;
}
