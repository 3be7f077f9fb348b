/**
 * Kernel parity cases: every hand-written CUDA kernel (and the cuBLASLt GEMM) run on random inputs
 * of awkward sizes and compared with its CPU twin (cpu_twins.ts) or a host reference. (The
 * compiled program's fused kernels are checked end to end against the CPU executor.) Shared by the vitest suites (on the
 * emulator here, on a GPU when there is one) and the GPU check script, which prints the table.
 */
import type { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import type { DevicePtr } from "../../runtime/backends/cuda/device.ts";
import { argmaxPartsBytes, launchArgmax } from "../../runtime/backends/cuda/argmax_plan.ts";
import { strideGrid } from "../../runtime/backends/cuda/kernels.ts";
import { gemvLaunch } from "../../runtime/backends/cuda/node_kernels.ts";
import * as twin from "./cpu_twins.ts";
import { attentionCases } from "./parity_attention.ts";
import { f16Cases } from "./parity_f16.ts";
import { mixerCases } from "./parity_mixers.ts";
import { samplingCases } from "./parity_sampling.ts";
import { compare, randomF32, rng, toBf16, type DeviceScratch, type ParityCase, type ParityResult } from "./parity_support.ts";

export type { ParityCase, ParityResult } from "./parity_support.ts";

const T256: readonly [number, number, number] = [256, 1, 1];

/** The bias add the GEMM path falls back to (kiln_add), and kiln_scale. */
function elementwiseCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  for (const [R, N, bn] of [[7, 129, 7 * 129], [7, 129, 129]] as const) {
    const name = `add ${bn === N ? "row broadcast" : "same shape"} [${R}, ${N}]`;
    cases.push({
      name,
      run: (b, s) => {
        const r = rng(12);
        const a = randomF32(R * N, r);
        const bb = randomF32(bn, r);
        const out = s.out(R * N);
        b.kernels.launch("kiln_add", [3, 1, 1], T256, [out, s.f32(a), s.f32(bb), R * N, bn]);
        return compare(name, s.read(out, R * N), twin.add(a, bb), 2e-7);
      },
    });
  }
  cases.push({
    name: "scale (n=999, 3 blocks: grid-stride)",
    run: (b, s) => {
      const x = randomF32(999, rng(13));
      const out = s.out(999);
      b.kernels.launch("kiln_scale", [3, 1, 1], T256, [out, s.f32(x), 999, -0.37]);
      return compare("scale (n=999, 3 blocks: grid-stride)", s.read(out, 999), Float64Array.from(x, (v) => v * Math.fround(-0.37)), 2e-7);
    },
  });
  return cases;
}

/** The weight conversions the executor's upload and the 16-bit GEMM path launch. */
function conversionCases(): ParityCase[] {
  return [
    {
      name: "f32 → bf16 round-to-nearest-even (n=100003, ties, ±inf)",
      run: (b, s) => {
        const x = randomF32(100003, rng(24), 100);
        const bits = new Uint32Array(x.buffer);
        bits[0] = 0x3f808000; // exactly halfway: to even (0x3f80)
        bits[1] = 0x3f818000; // halfway: to even (0x3f82)
        bits[2] = 0x7f800000; // +inf
        bits[3] = 0xff800000; // -inf
        bits[4] = 0x7f7fffff; // largest f32: rounds to +inf, as torch does
        const out = s.out(x.length);
        b.kernels.launch("kiln_f32_to_bf16", strideGrid(x.length), T256, [out, s.f32(x), x.length]);
        return compare("f32 → bf16 round-to-nearest-even (n=100003, ties, ±inf)", s.readU16(out, x.length), toBf16(x), 0);
      },
    },
    {
      name: "bf16 → f32 (n=100003, 7 blocks)",
      run: (b, s) => {
        const bits = toBf16(randomF32(100003, rng(23), 100));
        const out = s.out(bits.length);
        b.kernels.launch("kiln_bf16_to_f32", [7, 1, 1], T256, [out, s.u16(bits), bits.length]);
        return compare("bf16 → f32 (n=100003, 7 blocks)", s.read(out, bits.length), twin.widenBf16(bits), 0);
      },
    },
  ];
}

function gemmCases(): ParityCase[] {
  return ([[1, 2053, 67], [7, 129, 4099], [33, 97, 256]] as const).map(([M, N, K]): ParityCase => {
    const name = `cuBLASLt f32 GEMM M=${M} N=${N} K=${K}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(51 + K);
        const x = randomF32(M * K, r);
        const w = randomF32(N * K, r);
        const y = s.out(M * N);
        b.blas.matmul("f32", y, s.f32(x), s.f32(w), M, N, K);
        const ref = twin.linear(x, w, M, N, K);
        return compare(name, s.read(y, M * N), ref.out, 1e-5, ref.scale);
      },
    };
  });
}

/** The bias epilogue: y = x · wᵀ + bias, f32 and bf16, the bias added by cuBLASLt itself. */
function biasGemmCases(): ParityCase[] {
  return (["f32", "bf16"] as const).map((dtype): ParityCase => {
    const [M, N, K] = [19, 83, 96];
    const name = `cuBLASLt ${dtype} GEMM with the bias epilogue M=${M} N=${N} K=${K}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(dtype === "f32" ? 58 : 59);
        const x = randomF32(M * K, r);
        const w = randomF32(N * K, r);
        const bias = randomF32(N, r, 4);
        const y = s.out(M * N);
        const bf16 = dtype === "bf16";
        const [xs, ws] = bf16 ? [toBf16(x), toBf16(w)] : [x, w];
        const added = b.blas.matmul(dtype, y, bf16 ? s.u16(xs as Uint16Array) : s.f32(x), bf16 ? s.u16(ws as Uint16Array) : s.f32(w), M, N, K, s.f32(bias));
        const ref = bf16
          ? twin.linear(twin.widenBf16(xs as Uint16Array), twin.widenBf16(ws as Uint16Array), M, N, K, bias)
          : twin.linear(x, w, M, N, K, bias);
        const result = compare(name, s.read(y, M * N), ref.out, 1e-5, ref.scale);
        // cuBLASLt has the epilogue for these types (the emulator for every shape): a fallback fails the case
        return added ? result : { ...result, ok: false, maxErr: Infinity };
      },
    };
  });
}

function bf16GemmCases(): ParityCase[] {
  return ([[1, 2053, 256], [5, 97, 72]] as const).map(([M, N, K]): ParityCase => {
    const name = `cuBLASLt bf16 GEMM (fp32 out) M=${M} N=${N} K=${K}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(57 + K);
        const x = toBf16(randomF32(M * K, r));
        const w = toBf16(randomF32(N * K, r));
        const y = s.out(M * N);
        b.blas.matmul("bf16", y, s.u16(x), s.u16(w), M, N, K);
        // the products of bf16 values are exact in fp32: only the accumulation differs
        const ref = twin.linear(twin.widenBf16(x), twin.widenBf16(w), M, N, K);
        return compare(name, s.read(y, M * N), ref.out, 1e-5, ref.scale);
      },
    };
  });
}

/**
 * The decode GEMV against the same twin as the GEMMs: rows M ∈ {1, 3, 8}; K = 100 (f32: 16-byte
 * loads, bf16: one element per lane) and K = 1024 (16-byte loads, warps split along K); N not a
 * multiple of the 8 warps of a block; with and without bias. With bf16 weights the reference
 * rounds x to bf16 first, as the kernel (and the cast + bf16 GEMM path) does. Then the fallbacks:
 * a weight that starts 2 / 4 bytes past 16-byte alignment, an odd K with 8 warps per column.
 */
function gemvCases(): ParityCase[] {
  type Spec = { dtype: "bf16" | "f32"; M: number; N: number; K: number; bias: boolean; offset?: number };
  const specs: Spec[] = [];
  for (const dtype of ["bf16", "f32"] as const) {
    for (const M of [1, 3, 8]) {
      for (const [N, K] of [[77, 100], [300, 1024]] as const) {
        for (const bias of [false, true]) specs.push({ dtype, M, N, K, bias });
      }
    }
    specs.push({ dtype, M: 2, N: 45, K: 1024, bias: true, offset: 1 });
    specs.push({ dtype, M: 5, N: 33, K: 4099, bias: false });
  }
  return specs.map(({ dtype, M, N, K, bias, offset = 0 }): ParityCase => {
    const name = `GEMV ${dtype} weights M=${M} N=${N} K=${K}${bias ? " + bias" : ""}${offset ? " (W misaligned)" : ""}`;
    return {
      name,
      run: (b, s) => {
        const r = rng(71 + M * 7 + K + (bias ? 1 : 0) + offset);
        const x = randomF32(M * K, r);
        const wf = randomF32(offset + N * K, r);
        const bb = randomF32(N, r);
        const elem = dtype === "bf16" ? 2 : 4;
        const wBits = toBf16(wf);
        const w = (dtype === "bf16" ? s.u16(wBits) : s.f32(wf)) + BigInt(offset * elem);
        const y = s.out(M * N);
        const biasPtr = bias ? s.f32(bb) : w;
        const { grid, block, split } = gemvLaunch(M, N, K, b.device.info.multiprocessors);
        b.kernels.launch(dtype === "bf16" ? "kiln_gemv_bf16" : "kiln_gemv_f32", grid, block, [y, s.f32(x), w, biasPtr, bias ? 1 : 0, M, N, K, split]);
        const ref =
          dtype === "bf16"
            ? twin.linear(twin.widenBf16(toBf16(x)), twin.widenBf16(wBits).subarray(offset), M, N, K, bias ? bb : undefined)
            : twin.linear(x, wf.subarray(offset), M, N, K, bias ? bb : undefined);
        return compare(`${name} (split ${split})`, s.read(y, M * N), ref.out, 1e-5, ref.scale);
      },
    };
  });
}

function argmaxCase(): ParityCase {
  const name = "argmax rows S=5 V=2053 (ties, NaN, -inf row)";
  return {
    name,
    run: (b, s) => {
      const V = 2053;
      const logits = randomF32(5 * V, rng(61), 10);
      logits[1 * V + 700] = 50;
      logits[1 * V + 1900] = 50; // tie: the first wins
      logits[2 * V + 3] = NaN;
      logits[2 * V + 2000] = 99;
      logits.fill(-Infinity, 3 * V, 4 * V);
      const out = s.outI32(5);
      b.kernels.launch("kiln_argmax_rows", [5, 1, 1], T256, [out, s.f32(logits), 5, V]);
      return compare(name, s.readI32(out, 5), twin.argmaxRows(logits, 5, V), 0);
    },
  };
}

/**
 * The split greedy pick (kiln_argmax_partial + kiln_argmax_final) against the same twin: rows whose
 * starts fall off 16-byte boundaries (odd V), real vocabularies, block counts that leave ragged and
 * empty chunks, a tie across two chunks, NaN, a row of -inf, the maximum at a row's first and last
 * entries (the scalar head and tail around the float4 body).
 */
function splitArgmaxCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  for (const [V, B] of [[2053, 3], [4099, 7], [128_256, 37], [151_936, 64], [131, 64]] as const) {
    const S = 4;
    const name = `split argmax S=${S} V=${V} B=${B} (ties across chunks, NaN, -inf row, row ends)`;
    cases.push({
      name,
      run: (b, s) => {
        const logits = randomF32(S * V, rng(V + B), 10);
        logits[0 * V + Math.floor(V / 3)] = 60;
        logits[0 * V + V - 2] = 60; // the same maximum in a later chunk: the first index wins
        logits[1 * V + 0] = NaN;
        logits[1 * V + V - 1] = 70; // the last entry of a row starting off alignment
        logits.fill(-Infinity, 2 * V, 3 * V);
        logits[3 * V] = 80; // the first entry
        const out = s.outI32(S);
        launchArgmax(b.kernels, out, s.out(argmaxPartsBytes(S) / 4), s.f32(logits), S, V, B); // as the executor queues it
        return compare(name, s.readI32(out, S), twin.argmaxRows(logits, S, V), 0);
      },
    });
  }
  return cases;
}

export const PARITY_CASES: readonly ParityCase[] = [
  ...conversionCases(),
  ...elementwiseCases(),
  ...gemmCases(),
  ...bf16GemmCases(),
  ...biasGemmCases(),
  ...gemvCases(),
  ...f16Cases(),
  argmaxCase(),
  ...splitArgmaxCases(),
  ...samplingCases(),
  ...attentionCases(),
  ...mixerCases(),
];

/**
 * Runs every case with fresh device buffers, freed afterwards. A case that throws (a launch the
 * driver refuses, a kernel fault) fails with the error in its name and the rest still run, so the
 * first failure in the list is the one to read.
 */
export function runParityCases(b: CudaBackend, cases: readonly ParityCase[] = PARITY_CASES): ParityResult[] {
  return cases.map((c) => {
    const s = new Scratch(b);
    try {
      return c.run(b, s);
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";
      return { name: `${c.name} — threw: ${why}`, maxErr: Infinity, tol: 0, ok: false };
    } finally {
      try {
        s.free();
      } catch {
        // after a kernel fault every call fails; the case above already says so
      }
    }
  });
}

class Scratch implements DeviceScratch {
  private readonly ptrs: DevicePtr[] = [];
  constructor(private readonly b: CudaBackend) {}
  private put(data: ArrayBufferView): DevicePtr {
    const p = this.b.device.alloc(data.byteLength);
    this.ptrs.push(p);
    this.b.device.upload(p, data);
    return p;
  }
  f32 = (x: Float32Array): DevicePtr => this.put(x);
  i32 = (x: Int32Array): DevicePtr => this.put(x);
  u16 = (x: Uint16Array): DevicePtr => this.put(x);
  out = (n: number): DevicePtr => this.put(new Float32Array(n).fill(NaN));
  outI32 = (n: number): DevicePtr => this.put(new Int32Array(n).fill(-7));
  read = (p: DevicePtr, n: number): Float32Array => {
    const h = new Float32Array(n);
    this.b.device.download(h, p);
    return h;
  };
  readI32 = (p: DevicePtr, n: number): Int32Array => {
    const h = new Int32Array(n);
    this.b.device.download(h, p);
    return h;
  };
  readU16 = (p: DevicePtr, n: number): Uint16Array => {
    const h = new Uint16Array(n);
    this.b.device.download(h, p);
    return h;
  };
  free(): void {
    this.b.device.synchronize();
    for (const p of this.ptrs) this.b.device.free(p);
  }
}
