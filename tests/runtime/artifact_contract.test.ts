/**
 * The compiled program is the contract: loading an engine artifact and running it traces nothing,
 * compiles nothing and builds no kernels; the executor runs the stored program with the stored
 * shared library, whose digest it reports. The compiler entry points are wrapped to record any
 * call made while an artifact loads and runs.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { compileArtifact } from "../../runtime/io/artifact.ts";
import { MANIFEST_FILE } from "../../runtime/io/artifact_loader.ts";
import { createEngine } from "../../runtime/engine/create_engine.ts";
import { FIXTURES, fixtureFacts } from "../fixtures/index.ts";

const guard = vi.hoisted(() => ({ watching: false, calls: [] as string[] }));
vi.mock("../../compiler/pipeline.ts", async (importOriginal) =>
  (await import("../call_recorder.ts")).recordingCalls(await importOriginal<typeof import("../../compiler/pipeline.ts")>(), ["compile"], guard),
);
vi.mock("../../compiler/toolchain.ts", async (importOriginal) =>
  (await import("../call_recorder.ts")).recordingCalls(await importOriginal<typeof import("../../compiler/toolchain.ts")>(), ["compileC", "compileCuda"], guard),
);
vi.mock("../../models/dsl/causal_lm.ts", async (importOriginal) =>
  (await import("../call_recorder.ts")).recordingCalls(await importOriginal<typeof import("../../models/dsl/causal_lm.ts")>(), ["traceModel"], guard),
);

afterEach(() => {
  guard.watching = false;
  guard.calls.length = 0;
});

const tmp = (name: string): string => join(mkdtempSync(join(tmpdir(), "kiln-contract-")), name);

async function greedyText(modelDir: string, prompt: string): Promise<{ text: string; origin: unknown }> {
  const { engine, runner } = await createEngine({ modelDir, maxModelLen: 256 });
  try {
    const [out] = await engine.generateBatch([prompt], { temperature: 0, maxTokens: 12, ignoreEos: true });
    return { text: out!.completions[0]!.text, origin: runner.kernelOrigin };
  } finally {
    engine.close();
    runner.dispose();
  }
}

describe("an artifact runs what was compiled", () => {
  it("the model folder traces and compiles (the wrappers see it)", async () => {
    guard.watching = true;
    await greedyText(fixtureFacts("llama").dir, "hello");
    expect(guard.calls).toContain("traceModel");
    expect(guard.calls).toContain("compile");
  });

  for (const f of FIXTURES.filter((x) => ["fortune-llama", "qwen3-moe", "bamba", "gpt2"].includes(x.name))) {
    it(`${f.name}: loading and running the CPU artifact traces, compiles and builds nothing; the stored library runs`, async () => {
      const out = tmp(f.name);
      await compileArtifact({ modelDir: f.dir, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
      const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")) as { files: Record<string, { sha256: string }> };
      const folder = await greedyText(f.dir, "Once upon a time");
      guard.watching = true;
      const artifact = await greedyText(out, "Once upon a time");
      expect(guard.calls).toEqual([]);
      expect(artifact.origin).toEqual({ origin: "artifact", sha256: manifest.files["kernels/module.so"]!.sha256 });
      expect(artifact.text).toBe(folder.text);
    });
  }

  it("an artifact compiled where no C compiler was found carries source only: it is built at load, and says so", async () => {
    const out = tmp("source-only");
    await compileArtifact({ modelDir: fixtureFacts("llama").dir, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
    const path = join(out, MANIFEST_FILE);
    const manifest = JSON.parse(readFileSync(path, "utf8")) as { module: { binary?: unknown }; files: Record<string, unknown> };
    delete manifest.module.binary;
    delete manifest.files["kernels/module.so"];
    writeFileSync(path, JSON.stringify(manifest));
    const folder = await greedyText(fixtureFacts("llama").dir, "hi");
    guard.watching = true;
    const artifact = await greedyText(out, "hi");
    expect(guard.calls).toEqual(["compileC"]);
    expect(artifact.origin).toMatchObject({ origin: "rebuilt", note: expect.stringMatching(/carries no built kernels; built its stored source/) });
    expect(artifact.text).toBe(folder.text);
  });

  it("a library built for another CPU is rebuilt from the stored source, and says so", async () => {
    const out = tmp("moved");
    await compileArtifact({ modelDir: fixtureFacts("llama").dir, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
    const path = join(out, MANIFEST_FILE);
    const manifest = JSON.parse(readFileSync(path, "utf8")) as { module: { binary: { builtFor: string } } };
    manifest.module.binary.builtFor = "riscv64 some other cpu";
    writeFileSync(path, JSON.stringify(manifest));
    guard.watching = true;
    const { origin } = await greedyText(out, "hi");
    expect(guard.calls).toEqual(["compileC"]);
    expect(origin).toMatchObject({ origin: "rebuilt", note: expect.stringMatching(/built for 'riscv64 some other cpu'; built its stored source/) });
  });

  it("a library built for a portable level (KILN_CPU_ARCH) runs on any CPU that has the level, with nothing rebuilt", async () => {
    const out = tmp("portable");
    vi.stubEnv("KILN_CPU_ARCH", "x86-64"); // the baseline: every x86-64 CPU has it
    try {
      await compileArtifact({ modelDir: fixtureFacts("llama").dir, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
    } finally {
      vi.unstubAllEnvs();
    }
    const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")) as {
      model: { source: string };
      module: { binary: { builtFor: string; flags: string[] } };
      files: Record<string, { sha256: string }>;
    };
    expect(manifest.model.source).toBe("llama"); // the folder's name, not the build machine's path
    expect(manifest.module.binary.flags).toContain("-march=x86-64");
    guard.watching = true;
    const { origin } = await greedyText(out, "hi");
    if (process.arch === "x64") {
      expect(manifest.module.binary.builtFor).toBe("x64 x86-64");
      expect(guard.calls).toEqual([]);
      expect(origin).toEqual({ origin: "artifact", sha256: manifest.files["kernels/module.so"]!.sha256 });
    } else {
      expect(origin).toMatchObject({ origin: "rebuilt" }); // an x86-64 level means nothing on another machine
    }
  });
});
