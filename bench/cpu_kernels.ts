// GEMM throughput of the native CPU kernels (npx tsx bench/cpu_kernels.ts). Prints figures only.
// Shapes are Linear layers of a small model: x [M, K] · w [N, K]ᵀ; M = 1 is decode (GEMV, bound by
// reading w, so GB/s of weight is printed too), M = 128 / 512 prefill. A plain JS triple loop on a
// small shape gives the baseline.
import { loadNative } from "../runtime/backends/cpu/native.ts";

const native = loadNative();

function random(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

function bf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(bits, (b) => b >>> 16);
}

// Median seconds per call over enough calls to fill ~0.3 s after a warm-up.
function timeIt(fn: () => void): number {
  fn();
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    const ms = performance.now() - t0;
    if (ms > 30) break;
    reps *= 2;
  }
  const samples: number[] = [];
  for (let s = 0; s < 9; s++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    samples.push((performance.now() - t0) / 1000 / reps);
  }
  samples.sort((a, b) => a - b);
  return samples[4] ?? Number.NaN;
}

function jsGemm(out: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number) {
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (x[m * K + k] ?? 0) * (w[n * K + k] ?? 0);
      out[m * N + n] = s;
    }
  }
}

const fmt = (v: number, digits = 1) => v.toFixed(digits).padStart(8);
const shape = (M: number, N: number, K: number) => [M, N, K].map((v) => String(v).padStart(5)).join(" ");

console.log(`native CPU kernels, ${native.numThreads()} threads`);
console.log("    M     N     K |  f32 GFLOP/s   bf16 GFLOP/s | f32 w GB/s  bf16 w GB/s");
const shapes = [
  [768, 256],
  [256, 768],
  [2048, 256],
] as const;
for (const M of [1, 128, 512]) {
  for (const [N, K] of shapes) {
    const x = random(M * K);
    const w = random(N * K);
    const wb = bf16(w);
    const bias = random(N);
    const out = new Float32Array(M * N);
    const tF = timeIt(() => native.gemmF32(out, x, w, bias, M, N, K));
    const tB = timeIt(() => native.gemmBf16(out, x, wb, bias, M, N, K));
    const flops = 2 * M * N * K;
    let line = `${shape(M, N, K)} | ${fmt(flops / tF / 1e9)}       ${fmt(flops / tB / 1e9)}   |`;
    if (M === 1) line += ` ${fmt((N * K * 4) / tF / 1e9)}    ${fmt((N * K * 2) / tB / 1e9)}`;
    console.log(line);
  }
}

{
  // A decode GEMV whose weights (128 MiB f32, 64 MiB bf16) cannot stay in the 32 MiB L3: DRAM bound.
  const [N, K] = [8192, 4096];
  const x = random(K);
  const w = random(N * K);
  const wb = bf16(w);
  const out = new Float32Array(N);
  const tF = timeIt(() => native.gemmF32(out, x, w, null, 1, N, K));
  const tB = timeIt(() => native.gemmBf16(out, x, wb, null, 1, N, K));
  const flops = 2 * N * K;
  console.log(
    `${shape(1, N, K)} | ${fmt(flops / tF / 1e9)}       ${fmt(flops / tB / 1e9)}   |` +
      ` ${fmt((N * K * 4) / tF / 1e9)}    ${fmt((N * K * 2) / tB / 1e9)}   (weights beyond L3)`,
  );
}

{
  const [M, N, K] = [32, 256, 256];
  const x = random(M * K);
  const w = random(N * K);
  const out = new Float32Array(M * N);
  const flops = 2 * M * N * K;
  const tJs = timeIt(() => jsGemm(out, x, w, M, N, K));
  const tF = timeIt(() => native.gemmF32(out, x, w, null, M, N, K));
  console.log(
    `\nbaseline M=${M} N=${N} K=${K}: JS triple loop ${fmt(flops / tJs / 1e9, 2)} GFLOP/s, ` +
      `gemmF32 ${fmt(flops / tF / 1e9, 2)} GFLOP/s (${(tJs / tF).toFixed(0)}x)`,
  );
}
