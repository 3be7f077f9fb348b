/**
 * Parity cases for f16 storage: the conversions (every f16 bit pattern, ties, subnormals,
 * overflow), cuBLASLt f16 GEMMs (with and without the bias epilogue)
 * and the f16-weight GEMV. The references are the host's f16 converters
 * (runtime/io/artifact_weights.ts, runtime/io/safetensors.ts), written independently of the kernels'
 * bit tricks, and the CPU twins.
 */
import { strideGrid } from "../../runtime/backends/cuda/kernels.ts";
import { gemvLaunch } from "../../runtime/backends/cuda/node_kernels.ts";
import * as twin from "./cpu_twins.ts";
import { compare, fromF16, randomF32, rng, toBf16, toF16, type ParityCase } from "./parity_support.ts";

const T256: readonly [number, number, number] = [256, 1, 1];

/** Every f16 bit pattern except the NaNs (whose payloads a widening may change). */
function allF16Numbers(): Uint16Array {
  const out: number[] = [];
  for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0) out.push(h);
  return Uint16Array.from(out);
}

function conversionCases(): ParityCase[] {
  return [
    {
      name: "f16 → f32, every non-NaN f16 (subnormals, ±0, ±inf)",
      run: (b, s) => {
        const bits = allF16Numbers();
        const out = s.out(bits.length);
        b.kernels.launch("kiln_f16_to_f32", [11, 1, 1], T256, [out, s.u16(bits), bits.length]);
        // as bit patterns: exact, and ±inf and ±0 compare too
        const asBits = (f: Float32Array): Uint32Array => new Uint32Array(f.buffer, f.byteOffset, f.length);
        return compare("f16 → f32, every non-NaN f16", asBits(s.read(out, bits.length)), asBits(fromF16(bits)), 0);
      },
    },
    {
      name: "f32 → f16 round-to-nearest-even (ties, subnormals, overflow, NaN)",
      run: (b, s) => {
        // every f16 and every midpoint between neighbours, at several magnitudes: the ties
        const halves = fromF16(allF16Numbers()).filter((v) => Number.isFinite(v));
        const sorted = Float64Array.from(halves).sort();
        const mids: number[] = [];
        for (let i = 1; i < sorted.length; i++) mids.push((sorted[i - 1]! + sorted[i]!) / 2);
        const x = Float32Array.from([...halves, ...mids, ...randomF32(50021, rng(25), 300), 65504, 65519.99, 65520, 1e6, -1e-9, 2 ** -25, 3 * 2 ** -26, NaN, -Infinity]);
        const out = s.out(x.length);
        b.kernels.launch("kiln_f32_to_f16", strideGrid(x.length), T256, [out, s.f32(x), x.length]);
        return compare("f32 → f16 round-to-nearest-even", s.readU16(out, x.length), toF16(x), 0);
      },
    },
    {
      name: "bf16 → f16 (n=30011, large values overflow to inf)",
      run: (b, s) => {
        const x = randomF32(30011, rng(26), 100);
        x[0] = 1e5; // above the f16 range
        x[1] = 1e-7; // an f16 subnormal
        const bits = toBf16(x);
        const out = s.out(bits.length);
        b.kernels.launch("kiln_bf16_to_f16", strideGrid(bits.length), T256, [out, s.u16(bits), bits.length]);
        return compare("bf16 → f16", s.readU16(out, bits.length), toF16(twin.widenBf16(bits)), 0);
      },
    },
  ];
}

/** cuBLASLt with f16 X and W, fp32 Y: products of f16 values are exact in fp32, only sums differ. */
function f16GemmCases(): ParityCase[] {
  return ([[1, 2053, 256, false], [5, 97, 72, false], [19, 83, 96, true]] as const).map(([M, N, K, withBias]): ParityCase => {
    const name = `cuBLASLt f16 GEMM (fp32 out) M=${M} N=${N} K=${K}${withBias ? " with the bias epilogue" : ""}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(157 + K);
        const x = toF16(randomF32(M * K, r));
        const w = toF16(randomF32(N * K, r));
        const bias = withBias ? randomF32(N, r, 4) : undefined;
        const y = s.out(M * N);
        const added = b.blas.matmul("f16", y, s.u16(x), s.u16(w), M, N, K, bias === undefined ? undefined : s.f32(bias));
        const ref = twin.linear(fromF16(x), fromF16(w), M, N, K, bias);
        const result = compare(name, s.read(y, M * N), ref.out, 1e-5, ref.scale);
        return bias === undefined || added ? result : { ...result, ok: false, maxErr: Infinity };
      },
    };
  });
}

/** The GEMV with f16 weights: x rounded to f16 first, as the cast + f16 GEMM path does. */
function f16GemvCases(): ParityCase[] {
  const specs = [
    { M: 1, N: 77, K: 100, bias: true, offset: 0 }, // one element per lane
    { M: 1, N: 300, K: 1024, bias: false, offset: 0 }, // 16-byte loads, warps split along K
    { M: 3, N: 300, K: 1024, bias: true, offset: 0 },
    { M: 8, N: 77, K: 104, bias: false, offset: 0 },
    { M: 2, N: 45, K: 1024, bias: true, offset: 1 }, // W 2 bytes past alignment
  ];
  return specs.map(({ M, N, K, bias, offset }): ParityCase => {
    const name = `GEMV f16 weights M=${M} N=${N} K=${K}${bias ? " + bias" : ""}${offset ? " (W misaligned)" : ""}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(171 + M * 7 + K + offset);
        const x = randomF32(M * K, r, 2);
        const wBits = toF16(randomF32(offset + N * K, r));
        const bb = randomF32(N, r);
        const w = s.u16(wBits) + BigInt(offset * 2);
        const y = s.out(M * N);
        const { grid, block, split } = gemvLaunch(M, N, K, b.device.info.multiprocessors);
        b.kernels.launch("kiln_gemv_f16", grid, block, [y, s.f32(x), w, bias ? s.f32(bb) : w, bias ? 1 : 0, M, N, K, split]);
        const ref = twin.linear(fromF16(toF16(x)), fromF16(wBits).subarray(offset), M, N, K, bias ? bb : undefined);
        return compare(`${name} (split ${split})`, s.read(y, M * N), ref.out, 1e-5, ref.scale);
      },
    };
  });
}

export function f16Cases(): ParityCase[] {
  return [...conversionCases(), ...f16GemmCases(), ...f16GemvCases()];
}
