import { configDefaults, defineConfig } from "vitest/config";

/**
 * The test tiers (see DESIGN.md "Tests in tiers"): `vitest run` (npm test, what CI runs) runs both
 * projects; `npm run test:fast` the fast one alone (about 2 minutes on 2 cores), `npm run test:slow`
 * the slow one. Slow: the CUDA emulator (g++ and nvcc build it), nvcc compiles, servers started as
 * processes with real clients, load and fuzz tests, and any file that takes more than ~10 s. The
 * slow tier fails, saying what to install, where nvcc or g++ is missing (tests/required_tools.ts).
 */
const SLOW = [
  // the CUDA backend on the CPU emulator of libcuda, NVRTC and cuBLASLt
  "tests/cuda/emulated_*.test.ts",
  "tests/cuda/decode_graphs.test.ts",
  "tests/cuda/device_sampling.test.ts",
  "tests/cuda/step_profile.test.ts",
  "tests/cuda/structured_outputs.test.ts",
  "tests/cuda/gpu_bundle.test.ts",
  "tests/server/cuda_serve.test.ts",
  // nvcc compiles of every kernel
  "tests/cuda/nvcc_compile.test.ts",
  "tests/compiler/render_cuda_nvcc.test.ts",
  // a real GPU where there is one (skipped, saying so, where there is none)
  "tests/cuda/gpu_parity.test.ts",
  // the CLI and servers started as processes, real clients under load, hostile clients, fuzz
  // (measured on 2 busy cores: each of these files takes 4-23 s)
  "tests/cli/run.test.ts",
  "tests/cli/serve_flags.test.ts",
  "tests/cuda/unavailable.test.ts",
  "tests/models/plugin.test.ts",
  "tests/runtime/artifact_cli.test.ts",
  "tests/server/serve_process.test.ts",
  "tests/server/shutdown.test.ts",
  "tests/server/ai_sdk.test.ts",
  "tests/server/langchain.test.ts",
  "tests/server/structured_outputs.test.ts",
  "tests/server/tool_calling.test.ts",
  "tests/server/hardening.test.ts",
  "tests/server/hostile_clients.test.ts",
  "tests/models/model_file_mutation.test.ts",
  // model-author tooling: ts-morph type-checks every model file (about 25 s); the CLI as a process
  "tests/authoring/model_check.test.ts",
  "tests/authoring/cli.test.ts",
  // tools/nightly.sh, then the tarball installed and run with no compiler on the PATH (~3.5 min)
  "tests/packaging/*.test.ts",
  // quantized checkpoints: the CLI as a process; goldens on the CUDA emulator
  "tests/quantization/cli.test.ts",
  "tests/quantization/emulated_cuda.test.ts",
  // ONNX: the CLI as a process; the imported graph on the CUDA emulator
  "tests/onnx/cli.test.ts",
  "tests/onnx/cuda_emulated.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      { extends: true, test: { name: "fast", include: ["tests/**/*.test.ts"], exclude: [...configDefaults.exclude, ...SLOW] } },
      // a cold start builds the CUDA emulator (g++ over every kernel) in a hook, and one golden of
      // the fortune model on the emulator takes up to a minute on busy cores
      { extends: true, test: { name: "slow", include: SLOW, testTimeout: 180_000, hookTimeout: 300_000 } },
    ],
  },
});
