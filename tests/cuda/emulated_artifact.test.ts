/**
 * CUDA engine artifacts on the emulated device (sm_90): `kiln compile --target cuda:sm_90` builds
 * the program's module with NVRTC (the emulator's), and loading the artifact on the CUDA backend
 * traces and compiles nothing: the executor loads the stored CUBIN (its digest is the manifest's)
 * and NVRTC is asked only for kiln's own hand-written kernels (from the on-disk cache), never for
 * the program's module. An artifact built for another sm_XX is re-JITted from its stored CUDA
 * source, with a note. Every fixture's CUDA artifact generates the tokens its model folder does on
 * the same backend.
 */
import { readFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { compileArtifact, parseTarget } from "../../runtime/io/artifact.ts";
import { MANIFEST_FILE } from "../../runtime/io/artifact_loader.ts";
import { registerCudaBackend, type CudaRegistration } from "../../runtime/backends/cuda/register.ts";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { FIXTURES } from "../fixtures/index.ts";
import { useEmulator } from "./emulator/build_emulator.ts";

const guard = vi.hoisted(() => ({ watching: false, calls: [] as string[] }));
vi.mock("../../compiler/pipeline.ts", async (importOriginal) =>
  (await import("../call_recorder.ts")).recordingCalls(await importOriginal<typeof import("../../compiler/pipeline.ts")>(), ["compile"], guard),
);
vi.mock("../../models/dsl/causal_lm.ts", async (importOriginal) =>
  (await import("../call_recorder.ts")).recordingCalls(await importOriginal<typeof import("../../models/dsl/causal_lm.ts")>(), ["traceModel"], guard),
);

let cuda: CudaRegistration;
beforeAll(() => {
  useEmulator();
  cuda = registerCudaBackend({ weightDtype: "auto" });
  const compiler = cuda.backend().compiler;
  // every NVRTC compile, by program name
  const compile = compiler.compile.bind(compiler);
  compiler.compile = (program, arch) => {
    if (guard.watching) guard.calls.push(`nvrtc:${program.name}`);
    return compile(program, arch);
  };
}, 180_000);
afterAll(() => cuda?.dispose());
afterEach(() => {
  guard.watching = false;
  guard.calls.length = 0;
});

const tmp = (name: string): string => join(mkdtempSync(join(tmpdir(), "kiln-cuda-artifact-")), name);

async function greedy(modelDir: string): Promise<{ tokens: number[][]; origin: unknown }> {
  const { engine, runner } = await createEngine({ modelDir, backend: "cuda", numBlocks: 32, maxModelLen: 128 });
  try {
    const prompts = [[5, 17, 301, 44], [9, 8, 7, 6, 5, 4, 3, 2, 100, 200, 300, 400, 12]];
    const outs = await engine.generateBatch(prompts, { temperature: 0, maxTokens: 8, ignoreEos: true });
    return { tokens: outs.map((o) => [...o.completions[0]!.tokenIds]), origin: runner.kernelOrigin };
  } finally {
    engine.close();
    runner.dispose();
  }
}

describe("CUDA engine artifacts on the emulated device", () => {
  for (const f of FIXTURES.filter((x) => !x.trained)) {
    it(`${f.name}: the sm_90 artifact loads its stored CUBIN, compiles nothing, and generates as the model folder`, async () => {
      const out = tmp(f.name);
      const summary = await compileArtifact({ modelDir: f.dir, outDir: out, target: parseTarget("cuda:sm_90"), maxModelLen: 128, maxNumSeqs: 4 });
      expect(summary.compiler).toMatch(/^NVRTC/);
      const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")) as { files: Record<string, { sha256: string }> };
      const folder = await greedy(f.dir);
      guard.watching = true;
      const artifact = await greedy(out);
      expect(guard.calls.filter((c) => !/^nvrtc:(?!module\.cu$)/.test(c))).toEqual([]);
      expect(artifact.origin).toEqual({ origin: "artifact", sha256: manifest.files["kernels/module.cubin"]!.sha256 });
      expect(artifact.tokens).toEqual(folder.tokens);
    }, 120_000);
  }

  it("an artifact built for sm_80 is compiled from its stored source for this sm_90 device, and says so", async () => {
    const out = tmp("sm80");
    await compileArtifact({ modelDir: FIXTURES[0]!.dir, outDir: out, target: parseTarget("cuda:sm_80"), maxModelLen: 128, maxNumSeqs: 4 });
    const folder = await greedy(FIXTURES[0]!.dir);
    guard.watching = true;
    const artifact = await greedy(out);
    expect(guard.calls.filter((c) => c === "compile" || c === "traceModel")).toEqual([]);
    expect(guard.calls).toContain("nvrtc:module.cu");
    expect(artifact.origin).toMatchObject({ origin: "rebuilt", note: expect.stringMatching(/a CUBIN for sm_80; compiled its stored CUDA source for this sm_90 device/) });
    expect(artifact.tokens).toEqual(folder.tokens);
  }, 120_000);
});
