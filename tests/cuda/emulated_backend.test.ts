// The CUDA backend end to end on this machine, through the CPU emulator of libcuda, NVRTC and
// cuBLASLt (tests/cuda/emulator): the real koffi bindings, NVRTC calls (compiled by nvcc under
// NVRTC's include rules), module loads, launches with native kernelParams and cuBLASLt
// descriptors, with kiln's own kernels executed by the fiber emulator. What the GPU check script
// runs on the H100, minus the hardware.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CudaBackend } from "../../runtime/cuda/backend.ts";
import { CudaError } from "../../runtime/cuda/check.ts";
import { CudaExecutor } from "../../runtime/cuda/executor.ts";
import { KERNEL_FILES } from "../../runtime/cuda/kernel_catalog.ts";
import { strideGrid } from "../../runtime/cuda/kernels.ts";
import { registerCudaBackend } from "../../runtime/cuda/register.ts";
import { isKilnError } from "../../runtime/errors.ts";
import { runGolden, type GoldenOptions } from "../../runtime/golden_check.ts";
import { packStep } from "../../runtime/kv_cache.ts";
import { loadModel } from "../../runtime/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";
import { PARITY_CASES, runParityCases } from "./parity_cases.ts";

const FORTUNE = fileURLToPath(new URL("../../assets/fortune-llama", import.meta.url));
const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));

/** The emulator needs g++ to build and nvcc behind its NVRTC; without them the suite is skipped. */
function missingTools(): string | undefined {
  for (const tool of ["g++", "nvcc"]) {
    try {
      execFileSync(tool, ["--version"], { stdio: "ignore" });
    } catch {
      return tool;
    }
  }
  return undefined;
}
const missing = missingTools();

let backend: CudaBackend;

beforeAll(() => {
  if (missing !== undefined) return;
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: CUBIN_CACHE });
  backend = CudaBackend.open();
}, 120_000);

afterAll(() => backend?.dispose());

describe.skipIf(missing !== undefined)(`emulated CUDA backend${missing === undefined ? "" : ` — skipped: ${missing} is not on the PATH`}`, () => {
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

  const GOLDEN: [string, string, GoldenOptions][] = [
    ["llama", fixture("llama"), { tolerance: 1e-5, backend: "cuda" }],
    ["llama-bf16", fixture("llama-bf16"), { tolerance: 1e-5, backend: "cuda", ropeFreqBf16: true }],
    ["qwen2", fixture("qwen2"), { tolerance: 1e-5, backend: "cuda" }],
    ["qwen3", fixture("qwen3"), { tolerance: 1e-5, backend: "cuda" }],
    ["mistral-swa", fixture("mistral-swa"), { tolerance: 1e-5, backend: "cuda" }],
    ["fortune-llama", FORTUNE, { tolerance: 1e-5, backend: "cuda" }],
    ["lfm2", fixture("lfm2"), { tolerance: 1e-5, backend: "cuda" }],
  ];
  // f32 only: rounding a MoE model's activations to bf16 flips near-tied routing decisions, which
  // moves whole rows of logits beyond any fixed bf16 tolerance
  const GOLDEN_F32_ONLY: [string, string, GoldenOptions][] = [
    ["qwen3-moe", fixture("qwen3-moe"), { tolerance: 1e-5, backend: "cuda" }],
    ["minimax", fixture("minimax"), { tolerance: 1e-5, backend: "cuda" }],
  ];

  describe("golden parity through `runGolden(..., { backend: \"cuda\" })`", () => {
    for (const [name, dir, opts] of [...GOLDEN, ...GOLDEN_F32_ONLY]) {
      it(name, async () => {
        const cuda = registerCudaBackend();
        try {
          const { summary } = await runGolden(dir, opts);
          expect(summary.backend).toBe("cuda");
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
        } finally {
          cuda.dispose();
        }
      });
    }

    for (const [name, dir, opts] of GOLDEN) {
      it(`${name} with bf16 weights (bf16 GEMMs, fp32 accumulation; 2e-2)`, async () => {
        const cuda = registerCudaBackend({ weightDtype: "bf16" });
        try {
          const { summary } = await runGolden(dir, { ...opts, tolerance: 2e-2 });
          expect(summary.ok, JSON.stringify(summary)).toBe(true);
          // a bf16 path that silently ran in f32 would land near 1e-7
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
      const ex = new CudaExecutor(loaded.graph, loaded.weights, backend, { numBlocks: 12, blockSize: 16 });
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

    it("refuses bad steps before any kernel reads them", async () => {
      const loaded = await loadModel(fixture("llama"));
      const ex = new CudaExecutor(loaded.graph, loaded.weights, backend, { numBlocks: 2, blockSize: 4 });
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
