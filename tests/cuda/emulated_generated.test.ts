// Kernels the compiler generates, run by the emulator: the fake NVRTC compiles a program whose
// kernels are not built in as host C++ too, and the fake driver loads that with the CUBIN. Here
// the fused residual add + RMS norm of the llama fixture goes through the backend's NVRTC path
// and a launch, and is checked against the same sums in TypeScript.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoweredKernel } from "../../compiler/kernel_ir.ts";
import { compile } from "../../compiler/pipeline.ts";
import { cudaLaunch, renderCudaModule } from "../../compiler/render/cuda.ts";
import { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { CudaError } from "../../runtime/backends/cuda/check.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";
import { randomF32, rng } from "./parity_support.ts";
import { f32ToBf16 } from "../../models/dsl/parameter.ts";
import { f32ToF16 } from "../../runtime/io/artifact_weights.ts";
import { encodeE4m3 } from "./cpu_twins.ts";
import { readFileSync } from "node:fs";
import { compileArtifact, parseTarget } from "../../runtime/io/artifact.ts";
import { MANIFEST_FILE } from "../../runtime/io/artifact_loader.ts";
import { programFromJson } from "../../compiler/program_json.ts";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { findCompiler, nvccFlags } from "../../compiler/toolchain.ts";
import { requireTools } from "../required_tools.ts";


// a fresh CUBIN cache, so every program goes through nvrtcCompileProgram
const cacheDir = mkdtempSync(join(tmpdir(), "kiln-emu-cubin-"));
let backend: CudaBackend;

beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: cacheDir });
  backend = CudaBackend.open();
}, 300_000);

afterAll(() => {
  backend?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

async function llamaKernel(name: string): Promise<LoweredKernel> {
  const { graph } = await loadModel(fixture("llama"));
  const k = compile(graph, { target: { kind: "cuda", arch: "sm_90" }, dtype: "f32" }).program.kernels.find((x) => x.name === name);
  if (k === undefined) throw new Error(`no kernel ${name}`);
  return k;
}

/** opt's generated KV write for a cache of `kvDtype`, its parameters checked: x0 [T, 192] (q, k, v), y0 [T, 64], the slots, the k and v caches [slots, 64]. */
async function optKvWrite(kvDtype: "bf16" | "f16" | "fp8"): Promise<LoweredKernel> {
  const { graph } = await loadModel(fixture("opt"));
  const k = compile(graph, { target: { kind: "cuda", arch: "sm_90" }, dtype: "f32", kvDtype }).program.kernels.find((x) => x.ops.join() === "kv_write");
  if (k === undefined) throw new Error("opt has no kv_write kernel");
  expect(k.params.map((p) => [p.name, p.elem, p.shape])).toEqual([
    ["x0", "f32", ["T", 192]],
    ["y0", "f32", ["T", 64]],
    ["slot_mapping", "i32", ["T"]],
    ["k_cache", kvDtype, ["slots", 64]],
    ["v_cache", kvDtype, ["slots", 64]],
  ]);
  return k;
}

/** Compiles `k` through the backend's NVRTC, runs it over T rows on `buffers` (in parameter order) and reads every buffer back in place. */
function runRows(k: LoweredKernel, file: string, T: number, buffers: readonly (Float32Array | Int32Array | Uint16Array | Uint8Array)[]): void {
  const { device, compiler } = backend;
  const { cubin } = compiler.compile({ name: file, source: renderCudaModule([k]), headers: new Map() }, device.info.arch);
  const fn = device.getFunction(device.loadModule(cubin, file), k.name);
  const ptrs = buffers.map((a) => {
    const p = device.alloc(a.byteLength);
    device.upload(p, a);
    return p;
  });
  const launch = cudaLaunch(k);
  device.launch(fn, [T, 1, 1], launch.block, [{ kind: "i64", value: T }, ...ptrs.map((value) => ({ kind: "ptr" as const, value }))], launch.sharedBytes);
  device.synchronize();
  buffers.forEach((a, i) => device.download(a, ptrs[i]!));
  for (const p of ptrs) device.free(p);
}

describe("generated kernels on the emulator", () => {
  it("runs the fused add + RMS norm compiled through NVRTC", async () => {
    const k = await llamaKernel("add_rms_norm_f32");
    const reduce = k.body.find((s) => s.s === "reduce");
    if (reduce?.s !== "reduce" || reduce.finish.k !== "rsqrt_mean_eps") throw new Error("add_rms_norm_f32 has no RMS reduction");
    const eps = reduce.finish.eps;
    const { device, compiler } = backend;
    const { cubin } = compiler.compile({ name: "add_rms_norm_f32.cu", source: renderCudaModule([k]), headers: new Map() }, device.info.arch);
    const fn = device.getFunction(device.loadModule(cubin, "add_rms_norm_f32.cu"), k.name);

    const T = 5;
    const H = 64;
    expect(k.params.map((p) => [p.name, p.shape])).toEqual([
      ["x0", ["T", H]],
      ["x1", ["T", H]],
      ["y0", ["T", H]],
      ["w0", [H]],
      ["y1", ["T", H]],
    ]);
    const r = rng(7);
    const x0 = randomF32(T * H, r);
    const x1 = randomF32(T * H, r);
    const w0 = randomF32(H, r, 2);
    const ptrs = [x0, x1, new Float32Array(T * H), w0, new Float32Array(T * H)].map((a) => {
      const p = device.alloc(a.byteLength);
      device.upload(p, a);
      return p;
    });
    const launch = cudaLaunch(k);
    expect(launch.grid[0]).toBe("T");
    device.launch(fn, [T, 1, 1], launch.block, [{ kind: "i64", value: T }, ...ptrs.map((value) => ({ kind: "ptr" as const, value }))], launch.sharedBytes);
    device.synchronize();
    const y0 = new Float32Array(T * H);
    const y1 = new Float32Array(T * H);
    device.download(y0, ptrs[2]!);
    device.download(y1, ptrs[4]!);
    for (const p of ptrs) device.free(p);

    for (let t = 0; t < T; t++) {
      const sum = Float32Array.from({ length: H }, (_, c) => x0[t * H + c]! + x1[t * H + c]!);
      const inv = 1 / Math.sqrt(sum.reduce((a, v) => a + v * v, 0) / H + eps);
      for (let c = 0; c < H; c++) {
        expect(y0[t * H + c]).toBe(sum[c]);
        expect(Math.abs(y1[t * H + c]! - sum[c]! * inv * w0[c]!)).toBeLessThan(1e-5);
      }
    }
  }, 300_000);

  it("a launch past 48 KiB of dynamic shared memory needs the kernel's opt-in; past the device's limit it is a typed error", async () => {
    const k = await llamaKernel("add_rms_norm_f32");
    const { device, compiler } = backend;
    const { cubin } = compiler.compile({ name: "add_rms_norm_wide.cu", source: renderCudaModule([k]), headers: new Map() }, device.info.arch);
    const fn = device.getFunction(device.loadModule(cubin, "add_rms_norm_wide.cu"), k.name);
    const T = 1;
    const ptrs = [64, 64, 64, 64, 64].map((n) => device.alloc(T * n * 4));
    const args = [{ kind: "i64" as const, value: T }, ...ptrs.map((value) => ({ kind: "ptr" as const, value }))];
    const wide = 64 * 1024; // the row-local arrays of a 16k-wide row
    const launch = cudaLaunch(k);
    expect(() => {
      device.launch(fn, [T, 1, 1], launch.block, args, wide);
      device.synchronize();
    }).toThrow(CudaError);
    device.allowDynamicShared(fn, wide);
    device.launch(fn, [T, 1, 1], launch.block, args, wide);
    device.synchronize();
    expect(() => device.allowDynamicShared(fn, device.info.maxSharedPerBlockOptin + 1)).toThrow(/needs \d+ bytes of shared memory a block/);
    device.allowDynamicShared(fn, 1024); // under the default: nothing to do
    for (const p of ptrs) device.free(p);
  }, 300_000);

  // the generated KV write stores k and v in a 16-bit cache rounded to nearest even: ties, values
  // just past a tie, f16 overflow to ±inf, f16 subnormals and signed zero, bit for bit against the
  // roundings of the weight converters
  for (const half of ["bf16", "f16"] as const) {
    it(`writes a ${half} KV cache rounded to nearest even, bit for bit (opt's kv_write kernel)`, async () => {
      const k = await optKvWrite(half);
      const bits = (u: number): number => new Float32Array(new Uint32Array([u]).buffer)[0]!;
      const edges = [
        bits(0x3f808000), bits(0x3f818000), bits(0x3f808001), bits(0xbf808000), // bf16 ties and just past one
        1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, // f16 ties and just past one
        65504, 65519, 65520, 70000, -1e6, // f16's largest, the last to round down, overflow
        2 ** -24, 2 ** -25, 3 * 2 ** -25, 1e-6, -1e-7, 2 ** -14, // f16 subnormals and their ties
        0, -0, 1e30, -3.4e38, Math.PI, -Math.E, 0.1, 1 / 3,
      ];
      const T = 3;
      const slots = 8;
      const slotMapping = new Int32Array([5, 0, 7]);
      const r = rng(11);
      const x0 = randomF32(T * 192, r, 4);
      for (let i = 0; i < T * 128; i++) x0[Math.floor(i / 128) * 192 + 64 + (i % 128)] = edges[i % edges.length]! * (i >= edges.length * 2 ? 1.5 : 1);
      const y0 = new Float32Array(T * 64);
      const kCache = new Uint16Array(slots * 64);
      const vCache = new Uint16Array(slots * 64);
      runRows(k, `kv_write_${half}.cu`, T, [x0, y0, slotMapping, kCache, vCache]);
      const round = half === "bf16" ? f32ToBf16 : f32ToF16;
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < 64; c++) {
          expect(y0[t * 64 + c]).toBe(x0[t * 192 + c]);
          const slot = slotMapping[t]!;
          expect(kCache[slot * 64 + c], `k[${t}][${c}] = ${x0[t * 192 + 64 + c]}`).toBe(round(x0[t * 192 + 64 + c]!));
          expect(vCache[slot * 64 + c], `v[${t}][${c}] = ${x0[t * 192 + 128 + c]}`).toBe(round(x0[t * 192 + 128 + c]!));
        }
      }
      // the slots no token maps to stay untouched
      for (const slot of [1, 2, 3, 4, 6]) expect(kCache.subarray(slot * 64, slot * 64 + 64).every((b) => b === 0)).toBe(true);
    }, 300_000);
  }

  // an fp8 cache: e4m3 bytes rounded to nearest even and saturated at ±448 (vLLM's conversion),
  // checked by hand at the edges and against the twins' search encoder everywhere
  const f32 = (u: number): number => new Float32Array(new Uint32Array([u]).buffer)[0]!;
  const E4M3_EDGES: readonly (readonly [number, number])[] = [
    [448, 0x7e], // the largest finite value
    [449, 0x7e], // saturates (e4m3 has no infinity; 0x7f is NaN)
    [464, 0x7e], // halfway to 480 (0x7f would be 480 if it were not NaN): saturates
    [1e6, 0x7e],
    [Infinity, 0x7e],
    [-Infinity, 0xfe],
    [-500, 0xfe],
    [240, 0x77], // 1.875 · 2^7
    [2 ** -6, 0x08], // the smallest normal
    [15 * 2 ** -10, 0x08], // halfway between 7 · 2^-9 and 2^-6: even (0x08)
    [2 ** -9, 0x01], // the smallest subnormal
    [2 ** -10, 0x00], // halfway to 2^-9: even (0)
    [2 ** -10 + 2 ** -20, 0x01], // just past it
    [3 * 2 ** -10, 0x02], // halfway between 1 and 2 (· 2^-9): even
    [1, 0x38],
    [1.0625, 0x38], // halfway between 1 and 1.125: even (1)
    [1.1875, 0x3a], // halfway between 1.125 and 1.25: even (1.25)
    [1.0625 + 2 ** -20, 0x39],
    [-1.0625, 0xb8],
    [0, 0x00],
    [-0, 0x80],
    [NaN, 0x7f],
    [f32(0xffc00000), 0xff], // a negative NaN keeps its sign
  ];

  it("the twins' e4m3 encoder gives the hand-checked bytes at the edges", () => {
    for (const [x, want] of E4M3_EDGES) if (!Number.isNaN(x)) expect(encodeE4m3(x), String(x)).toBe(want);
    expect(encodeE4m3(NaN)).toBe(0x7f);
  });

  it("writes an fp8 (e4m3) KV cache rounded to nearest even and saturated, bit for bit (opt's kv_write kernel)", async () => {
    const k = await optKvWrite("fp8");
    const T = 3;
    const slots = 8;
    const slotMapping = new Int32Array([5, 0, 7]);
    const r = rng(12);
    // k rows: the edges, then the edges · 1.5 and random values; v rows: values across e4m3's range
    const x0 = randomF32(T * 192, r, 4);
    const hand = new Map<number, number>();
    for (let i = 0; i < T * 64; i++) {
      const at = Math.floor(i / 64) * 192 + 64 + (i % 64);
      const edge = E4M3_EDGES[i % E4M3_EDGES.length]!;
      if (i < E4M3_EDGES.length) hand.set(at, edge[1]);
      x0[at] = i < E4M3_EDGES.length ? edge[0] : i < 2 * E4M3_EDGES.length ? edge[0] * 1.5 : x0[at]! * 100;
      x0[at + 64] = (r() * 2 - 1) * 2 ** (Math.floor(r() * 22) - 12);
    }
    const y0 = new Float32Array(T * 64);
    const kCache = new Uint8Array(slots * 64);
    const vCache = new Uint8Array(slots * 64);
    runRows(k, "kv_write_fp8.cu", T, [x0, y0, slotMapping, kCache, vCache]);
    // a NaN keeps the sign bit of its f32 pattern (which JS numbers do not show)
    const x0Bits = new Uint32Array(x0.buffer);
    const expected = (at: number): number => hand.get(at) ?? (Number.isNaN(x0[at]) ? ((x0Bits[at]! >>> 24) & 0x80) | 0x7f : encodeE4m3(x0[at]!));
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < 64; c++) {
        expect(y0[t * 64 + c]).toBe(x0[t * 192 + c]);
        const slot = slotMapping[t]!;
        expect(kCache[slot * 64 + c], `k[${t}][${c}] = ${x0[t * 192 + 64 + c]}`).toBe(expected(t * 192 + 64 + c));
        expect(vCache[slot * 64 + c], `v[${t}][${c}] = ${x0[t * 192 + 128 + c]}`).toBe(expected(t * 192 + 128 + c));
      }
    }
    // the slots no token maps to stay untouched
    for (const slot of [1, 2, 3, 4, 6]) expect(kCache.subarray(slot * 64, slot * 64 + 64).every((b) => b === 0)).toBe(true);
  }, 300_000);

  it("nvcc compiles generated fp8 KV writes: vector stores (opt, rows of 64) and scalar ones (llama, rows of 32)", async () => {
    requireTools("nvcc");
    const kernels: LoweredKernel[] = [];
    for (const name of ["opt", "llama"]) {
      const { graph } = await loadModel(fixture(name));
      kernels.push(...compile(graph, { target: { kind: "cuda", arch: "sm_90" }, dtype: "bf16", kvDtype: "fp8" }).program.kernels);
    }
    const names = new Set<string>();
    const source = renderCudaModule(kernels.filter((k) => !names.has(k.name) && names.add(k.name)));
    expect(source).toMatch(/kiln_store4\(k_cache/);
    expect(source).toMatch(/k_cache\[.*\] = kiln_round_e4m3\(/);
    const file = join(cacheDir, "fp8_writes.cu");
    writeFileSync(file, source);
    execFileSync(findCompiler("nvcc").command, [...nvccFlags("sm_90"), "-o", join(cacheDir, "fp8_writes.cubin"), file], { stdio: ["ignore", "pipe", "pipe"] });
  }, 300_000);

  it("a CUDA artifact with an fp8 KV cache records it, and its module (the e4m3 prelude included) builds", async () => {
    const out = join(cacheDir, "fp8-artifact");
    const summary = await compileArtifact({ modelDir: fixture("qwen3"), outDir: out, target: parseTarget("cuda:sm_90"), dtype: "bf16", kvCacheDtype: "fp8", maxNumSeqs: 4 });
    const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")) as Record<string, unknown>;
    expect(manifest["kvCacheDtype"]).toBe("fp8");
    expect(manifest["dtype"]).toBe("bf16");
    const program = programFromJson(readFileSync(join(out, "program.json"), "utf8"));
    expect(program.options.kvDtype).toBe("fp8");
    const caches = program.buffers.filter((b) => b.role.kind === "kv_cache");
    expect(caches.length).toBeGreaterThan(0);
    expect(caches.every((b) => b.elem === "fp8")).toBe(true);
    expect(readFileSync(join(out, "kernels/module.cu"), "utf8")).toContain("kiln_round_e4m3(");
    // built by the NVRTC at hand (here the emulator's, which compiles it as host C++)
    expect(summary.compiler).toMatch(/NVRTC|nvcc/);
  }, 300_000);

  it("reports a program that compiles for the GPU but not for the emulator through the NVRTC log", () => {
    const source = 'extern "C" __global__ void reverse_bits(unsigned int* p) { p[threadIdx.x] = __brev(p[threadIdx.x]); }\n';
    let error: unknown;
    try {
      backend.compiler.compile({ name: "reverse_bits.cu", source, headers: new Map() }, backend.device.info.arch);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CudaError);
    expect((error as CudaError).log).toMatch(/did not compile as host C\+\+[\s\S]*reverse_bits\.cu:1:.*__brev/);
  }, 300_000);
});
