// The CUDA backend end to end on this machine, through the CPU emulator of libcuda, NVRTC and
// cuBLASLt (tests/cuda/emulator): the real koffi bindings, NVRTC calls (compiled by nvcc under
// NVRTC's include rules), module loads, launches with native kernelParams and cuBLASLt
// descriptors, with kiln's own kernels executed by the fiber emulator. What the GPU check script
// runs on the H100, minus the hardware.
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkGraph } from "../../compiler/invariants.ts";
import type { Graph, Node, ValueId } from "../../compiler/ir.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { CpuExecutor } from "../reference/cpu_executor.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { CudaError } from "../../runtime/backends/cuda/check.ts";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { KERNEL_FILES } from "../../runtime/backends/cuda/kernel_catalog.ts";
import { strideGrid } from "../../runtime/backends/cuda/kernels.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { runGolden, type GoldenOptions } from "../../cli/golden_check.ts";
import { packStep } from "../../runtime/backends/kv_cache.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { fixtureFacts, fixturesWhere, type FixtureFacts } from "../fixtures/index.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";
import { PARITY_CASES, runParityCases } from "./parity_cases.ts";
import { compare, randomF32, rng } from "./parity_support.ts";

const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));


/**
 * A toy graph with one Mamba-1 and one Mamba-2 scan (no model uses them yet): embedding →
 * projections → selective_scan → projections → ssd_scan (state size N2) → lm head. Weights are
 * seeded random.
 */
/** a node before it is added: its id and scope come from the graph */
type NodeSpec = Node extends infer M ? (M extends Node ? Omit<M, "id" | "scope"> : never) : never;

function mambaToyGraph(N2 = 10): { graph: Graph; weights: Map<string, WeightData> } {
  const [V, E, I, N, H, P, G] = [40, 24, 20, 6, 4, 12, 2];
  const r = rng(91);
  const nodes: Node[] = [];
  const weights = new Map<string, WeightData>();
  const add = (n: NodeSpec): ValueId => {
    const id = nodes.length;
    nodes.push({ ...n, id, scope: "toy" });
    return id;
  };
  const param = (name: string, shape: number[], scale = 0.5, shift = 0): ValueId => {
    const data = randomF32(shape.reduce((a, b) => a * b, 1), r, scale).map((v) => v + shift);
    weights.set(name, { dtype: "f32", data });
    return add({ kind: "param", dtype: "f32", name, shape, storage: "f32" });
  };
  const linear = (x: ValueId, name: string, K: number, M: number, rows: "T" | "S" = "T"): ValueId =>
    add({ kind: "linear", dtype: "f32", x, weight: param(name, [M, K]), bias: undefined, shape: [rows, M] });
  const ids = add({ kind: "input", dtype: "i32", name: "input_ids", shape: ["T"] });
  const picks = add({ kind: "input", dtype: "i32", name: "logits_indices", shape: ["S"] });
  const x = add({ kind: "embedding", dtype: "f32", table: param("emb", [V, E], 1), ids, shape: ["T", E] });
  const scan1 = add({
    kind: "selective_scan",
    dtype: "f32",
    u: linear(x, "u", E, I),
    delta: linear(x, "delta", E, I),
    aLog: param("a_log", [I, N], 1),
    b: linear(x, "b", E, N),
    c: linear(x, "c", E, N),
    d: param("d", [I]),
    z: linear(x, "z", E, I),
    stateKey: "toy.mamba1",
    stateSize: N,
    shape: ["T", I],
  });
  const scan2 = add({
    kind: "ssd_scan",
    dtype: "f32",
    x: linear(scan1, "x2", I, H * P),
    dt: linear(scan1, "dt2", I, H),
    dtBias: param("dt_bias", [H]),
    aLog: param("a_log2", [H], 1),
    b: linear(scan1, "b2", I, G * N2),
    c: linear(scan1, "c2", I, G * N2),
    d: param("d2", [H]),
    stateKey: "toy.mamba2",
    numHeads: H,
    headDim: P,
    numGroups: G,
    stateSize: N2,
    dtMin: 0.01,
    dtMax: 1.5,
    shape: ["T", H * P],
  });
  const last = add({ kind: "gather_rows", dtype: "f32", x: scan2, indices: picks, shape: ["S", H * P] });
  const logits = linear(last, "lm_head", H * P, V, "S");
  const graph: Graph = {
    nodes,
    outputs: { logits },
    kvLayers: [],
    stateLayers: [
      { stateKey: "toy.mamba1", tensors: [{ name: "ssm", shape: [I, N], dtype: "f32" }] },
      { stateKey: "toy.mamba2", tensors: [{ name: "ssm", shape: [H, P, N2], dtype: "f32" }] },
    ],
  };
  return { graph, weights };
}

let backend: CudaBackend;

beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: CUBIN_CACHE });
  backend = CudaBackend.open();
}, 120_000);

afterAll(() => backend?.dispose());

describe("emulated CUDA backend", () => {
  it("opens the device and compiles every kernel file for its architecture", () => {
    expect(backend.device.info.arch).toBe("sm_90");
    expect(backend.kernels.compileReport.map((r) => r.file)).toEqual([...KERNEL_FILES]);
    expect(backend.describe()).toMatch(/Emulated.*sm_90.*NVRTC 13\.0.*cuBLASLt 130100/);
  });

  describe("kernel parity against the CPU twins", () => {
    for (const c of PARITY_CASES) {
      it(c.name, () => {
        const [r] = runParityCases(backend, [c]);
        expect(r?.maxErr, r?.name).toBeLessThanOrEqual(r?.tol ?? 0);
      });
    }
  });

  const goldenOptions = (f: FixtureFacts): GoldenOptions => ({ tolerance: 1e-5, backend: "cuda", ropeFreqBf16: f.ropeFreqBf16 });

  describe("golden parity through `runGolden(..., { backend: \"cuda\" })`", () => {
    for (const f of fixturesWhere((x) => x.golden)) {
      it(f.name, async () => {
        const cuda = registerCudaBackend();
        try {
          const { summary } = await runGolden(f.dir, goldenOptions(f));
          expect(summary.backend).toBe("cuda");
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }

    // not the MoE fixtures: rounding their activations to bf16 flips near-tied routing decisions,
    // which moves whole rows of logits beyond any fixed bf16 tolerance
    for (const f of fixturesWhere((x) => x.golden && x.halfPrecision)) {
      it(`${f.name} with bf16 weights (bf16 GEMMs, fp32 accumulation; 2e-2)`, async () => {
        const cuda = registerCudaBackend({ weightDtype: "bf16" });
        try {
          const { summary } = await runGolden(f.dir, { ...goldenOptions(f), tolerance: 2e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
          // a bf16 path that silently ran in f32 would land near 1e-7
          expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-4);
        } finally {
          cuda.dispose();
        }
      });
    }

    // every fixture with a KV cache (the fortune model is llama's shape, at 25 s a run here)
    for (const f of fixturesWhere((x) => x.golden && x.attention && x.halfPrecision && !x.trained)) {
      it(`${f.name} with f32 weights and a bf16 KV cache (2e-2)`, async () => {
        const cuda = registerCudaBackend({ kvCacheDtype: "bf16" });
        try {
          const { summary } = await runGolden(f.dir, { ...goldenOptions(f), tolerance: 2e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
          // a cache that silently stayed f32 would land near 1e-7
          expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-5);
        } finally {
          cuda.dispose();
        }
      });
    }

    // an e4m3 cache (scales 1) on a sample: full attention, grouped queries with q/k norms, a
    // sliding window, soft-capping with alternating windows
    for (const name of ["llama", "qwen3", "mistral-swa", "gemma2"]) {
      it(`${name} with f32 weights and an fp8 (e4m3) KV cache (3e-2)`, async () => {
        const cuda = registerCudaBackend({ kvCacheDtype: "fp8" });
        try {
          const { summary } = await runGolden(fixture(name), { ...goldenOptions(fixtureFacts(name)), tolerance: 3e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
          // a cache that silently stayed f32 would land near 1e-7, a 16-bit one near 1e-4
          expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-4);
        } finally {
          cuda.dispose();
        }
      });
    }

    it("mistral-swa with decode attention split along the keys", async () => {
      const cuda = registerCudaBackend({ attention: { minKeysToSplit: 2, keysPerSplit: 4 } });
      try {
        const { summary } = await runGolden(fixture("mistral-swa"), { tolerance: 1e-5, backend: "cuda" });
        expect(summary.ok, JSON.stringify(summary)).toBe(true);
      } finally {
        cuda.dispose();
      }
    });
  });

  describe("the executor", () => {
    it("greedy picks on the device equal the argmax of the logits; buffers grow; dispose frees all", async () => {
      const loaded = await loadModel(fixture("qwen3"));
      const before = backend.device.allocatedBytes;
      const ex = CudaExecutor.fromGraph(loaded.graph, loaded.weights, backend, { numBlocks: 12, blockSize: 16 });
      const table = Array.from({ length: 12 }, (_, i) => i);
      const prompt = Array.from({ length: 70 }, (_, i) => 5 + ((i * 37) % 500));
      const short = packStep([{ tokens: prompt.slice(0, 9), numCached: 0, blockTable: table, allLogits: true }], 16);
      const logits = ex.run(short);
      const picks = ex.runGreedy(short);
      expect(picks.length).toBe(9);
      for (let s = 0; s < 9; s++) {
        const row = logits.subarray(s * 512, (s + 1) * 512);
        expect(picks[s]).toBe(row.indexOf(Math.max(...row)));
      }
      const long = packStep([{ tokens: prompt, numCached: 0, blockTable: table }], 16); // outgrows the arena
      expect(ex.run(long).length).toBe(512);
      ex.dispose();
      expect(backend.device.allocatedBytes).toBe(before);
    });

    it("runs the Mamba-1 and Mamba-2 scans as the CPU executor does, state carried across steps", () => {
      const { graph, weights } = mambaToyGraph();
      expect(checkGraph(graph)).toEqual([]);
      const opts = { numBlocks: 4, blockSize: 16, numStateSlots: 4 };
      const cpu = new CpuExecutor(graph, weights, loadNative(), opts);
      const gpu = CudaExecutor.fromGraph(graph, weights, backend, opts);
      try {
        const prompts = [7, 2, 11].map((len, s) => Array.from({ length: len + 4 }, (_, i) => (5 + 13 * s + 7 * i) % 40));
        const taken = [0, 1, 2, 3].map(() => [cpu.statePool?.allocate(), gpu.statePool?.allocate()]);
        expect(taken).toEqual([0, 1, 2, 3].map((i) => [i, i]));
        const slots = [2, 0, 3];
        let cached = [0, 0, 0];
        // a prefill of three prompts, two decode steps, then chunks of different lengths
        for (const lens of [[7, 2, 11], [1, 1, 1], [1, 1, 1], [2, 1, 2]]) {
          const step = packStep(
            lens.map((len, s) => ({ tokens: prompts[s]!.slice(cached[s], cached[s]! + len), numCached: cached[s]!, blockTable: [s], stateSlot: slots[s]!, allLogits: s === 2 })),
            16,
          );
          cached = cached.map((c, s) => c + lens[s]!);
          const want = cpu.run(step);
          const got = gpu.run(step);
          expect(compare(`logits after ${String(cached)} tokens`, got, want, 1e-5).maxErr).toBeLessThan(1e-5);
        }
      } finally {
        gpu.dispose();
        cpu.dispose();
      }
    });

    it("refuses an SSM state larger than the scan kernels keep", () => {
      const { graph, weights } = mambaToyGraph(300);
      let err: unknown;
      try {
        CudaExecutor.fromGraph(graph, weights, backend, { numBlocks: 4, blockSize: 16, numStateSlots: 4 }).dispose();
      } catch (e) {
        err = e;
      }
      expect(isKilnError(err, "INVALID_ARGUMENT"), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/SSM state size 300 exceeds the CUDA scan kernels' 256/);
    });

    it("refuses bad steps before any kernel reads them", async () => {
      const loaded = await loadModel(fixture("llama"));
      const ex = CudaExecutor.fromGraph(loaded.graph, loaded.weights, backend, { numBlocks: 2, blockSize: 4 });
      try {
        const bad = (tokens: number[], blockTable: number[]): unknown => {
          try {
            ex.run(packStep([{ tokens, numCached: 0, blockTable }], 4));
          } catch (e) {
            return e;
          }
          return undefined;
        };
        expect(isKilnError(bad([1, 512], [0]), "INVALID_ARGUMENT")).toBe(true);
        expect(isKilnError(bad([1, 2], [5]), "KV_EXHAUSTED")).toBe(true);
      } finally {
        ex.dispose();
      }
    });
  });

  describe("driver, NVRTC and graphs", () => {
    it("a compile error carries NVRTC's log and the program name", () => {
      const err = (() => {
        try {
          backend.compiler.compile({ name: "broken.cu", source: 'extern "C" __global__ void f(float* x) { x[0] = undefined_thing; }', headers: new Map() }, "sm_90");
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(CudaError);
      expect((err as CudaError).message).toMatch(/nvrtcCompileProgram\(broken\.cu.*NVRTC_ERROR_COMPILATION[\s\S]*undefined_thing/);
    });

    it("a system header NVRTC cannot see fails the compile, as under NVRTC", () => {
      expect(() =>
        backend.compiler.compile({ name: "stdint.cu", source: '#include <cstdint>\nextern "C" __global__ void f() {}', headers: new Map() }, "sm_90"),
      ).toThrow(/cannot open source file "cstdint"/);
    });

    it("driver errors name the call and carry the driver's text", () => {
      const p = backend.device.alloc(16);
      try {
        expect(() => backend.device.download(new Float32Array(8), p)).toThrow(/cuMemcpyDtoH\(32 bytes\) failed: CUDA_ERROR_INVALID_VALUE \(1\)/);
      } finally {
        backend.device.free(p);
      }
    });

    it("a captured CUDA graph replays its launches on new inputs", () => {
      const dev = backend.device;
      const x = dev.alloc(4 * 100);
      const y = dev.alloc(4 * 100);
      try {
        dev.upload(x, Float32Array.from({ length: 100 }, (_, i) => i));
        const g = dev.captureGraph(() => backend.kernels.launch("kiln_scale", strideGrid(100), [256, 1, 1], [y, x, 100, 2]));
        const out = new Float32Array(100);
        dev.replay(g);
        dev.download(out, y);
        expect(out[99]).toBe(198);
        dev.upload(x, new Float32Array(100).fill(-1));
        dev.replay(g);
        dev.download(out, y);
        expect(out[0]).toBe(-2);
        dev.destroyGraph(g);
        expect(() => dev.captureGraph(() => dev.upload(x, new Float32Array(1)))).toThrow(/STREAM_CAPTURE/);
      } finally {
        dev.free(x);
        dev.free(y);
      }
    });

    it("a driver that does not initialise, or has no device, is CUDA_UNAVAILABLE", () => {
      for (const [key, value, pattern] of [
        ["KILN_FAKE_CUDA_INIT_ERROR", "100", /did not initialise.*CUDA_ERROR_NO_DEVICE/s],
        ["KILN_FAKE_CUDA_DEVICES", "0", /reports 0 CUDA device/],
      ] as const) {
        process.env[key] = value;
        try {
          let err: unknown;
          try {
            CudaBackend.open();
          } catch (e) {
            err = e;
          }
          expect(isKilnError(err, "CUDA_UNAVAILABLE"), String(err)).toBe(true);
          expect((err as Error).message).toMatch(pattern);
        } finally {
          delete process.env[key];
        }
      }
    });
  });
});
