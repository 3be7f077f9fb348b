/**
 * Engine artifacts: `compileArtifact` of every fixture and of the fortune model runs greedily
 * exactly as the model folder does, from the stored program; what is inside (weights as the
 * program stores them, weight map, kernels, launch configurations); and every way a broken
 * artifact is refused or, for the weights, found by `verifyArtifact`.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findCompiler } from "../../compiler/toolchain.ts";
import { compileArtifact, parseTarget } from "../../runtime/io/artifact.ts";
import { MANIFEST_FILE, verifyArtifact } from "../../runtime/io/artifact_loader.ts";
import { f32ToF16 } from "../../runtime/io/artifact_weights.ts";
import { greedyTokens } from "../../runtime/engine/greedy.ts";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { loadModel, type LoadedModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { fixture } from "../fixture_copy.ts";
import { FIXTURES } from "../fixtures/index.ts";

const tmp = (name: string): string => join(mkdtempSync(join(tmpdir(), "kiln-artifact-")), name);

/** The runner of a loaded model: an artifact's stored program, or the folder's graph compiled for the CPU. */
function runnerOf(m: LoadedModel, numBlocks = 8): ModelRunner {
  const opts = { numBlocks, blockSize: 16 };
  return m.compiled === undefined ? ModelRunner.forGraph(m.graph, m.weights, m.model.vocabSize, opts) : new ModelRunner(m.compiled, m.weights, m.model.vocabSize, opts);
}

/** Greedy tokens and the logits they came from, for a few prompts (one longer than mistral's window). */
function greedy(m: LoadedModel): { tokens: number[][]; logits: number[] } {
  const runner = runnerOf(m);
  const prompts = [[5, 17, 301, 44], [9, 8, 7, 6, 5, 4, 3, 2, 100, 200, 300, 400, 12]];
  try {
    const tokens = greedyTokens(runner, prompts, 10, { maxModelLen: 64 });
    const slot = runner.statePool?.allocate();
    const logits = Array.from(runner.execute([{ tokens: prompts[1]!, numCached: 0, blockTable: [0, 1], ...(slot === undefined ? {} : { stateSlot: slot }) }]));
    return { tokens, logits };
  } finally {
    runner.dispose();
  }
}

async function refusal(dir: string, code: ErrorCode, message: RegExp, opts = {}): Promise<void> {
  try {
    await loadModel(dir, opts);
  } catch (e) {
    expect(isKilnError(e, code), String(e)).toBe(true);
    expect(String(e)).toMatch(message);
    return;
  }
  throw new Error(`expected ${dir} to be refused`);
}

describe("engine artifacts", () => {
  it.each(FIXTURES.map((f) => [f.name, f.dir] as const))("%s: the CPU artifact runs its stored program greedily exactly as the model folder", async (_name, dir) => {
    const out = tmp("engine");
    await compileArtifact({ modelDir: dir, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
    const fromFolder = await loadModel(dir);
    const fromArtifact = await loadModel(out);
    expect(fromFolder.compiled).toBeUndefined();
    expect(fromArtifact.compiled?.module?.binary?.path).toBe(join(out, "kernels/module.so"));
    expect(fromArtifact.artifact?.maxModelLen).toBe(256);
    expect(fromArtifact.model.vocabSize).toBe(fromFolder.model.vocabSize);
    expect(fromArtifact.graph.stateLayers).toEqual(fromFolder.graph.stateLayers);
    const a = greedy(fromFolder);
    const b = greedy(fromArtifact);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.logits).toEqual(a.logits);
    rmSync(out, { recursive: true, force: true });
  });

  it("records a weight map where every checkpoint tensor fills exactly one parameter", async () => {
    const out = tmp("llama");
    await compileArtifact({ modelDir: fixture("llama"), outDir: out, target: { kind: "cpu" } });
    const map = JSON.parse(readFileSync(join(out, "weight_map.json"), "utf8")) as {
      tensors: Record<string, string>;
      parameters: Record<string, string[]>;
      skipped: string[];
    };
    const ckpt = SafetensorsFile.open(join(fixture("llama"), "model.safetensors"));
    const names = [...ckpt.tensors.keys()];
    ckpt.close();
    expect(Object.keys(map.tensors).length + map.skipped.length).toBe(names.length);
    expect(map.tensors["model.layers.0.self_attn.k_proj.weight"]).toBe("model.layers.0.self_attn.qkv_proj.weight[k]");
    expect(map.parameters["model.layers.1.mlp.gate_up_proj.weight"]).toEqual(["model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"]);
    const filled = Object.values(map.parameters).flat();
    expect(new Set(filled).size).toBe(filled.length);
  });

  it("stores CPU weights as the backend reads them: matrices in the dtype, vectors in f32", async () => {
    const out = tmp("llama-bf16");
    await compileArtifact({ modelDir: fixture("llama"), outDir: out, target: { kind: "cpu" }, dtype: "bf16" });
    const w = SafetensorsFile.open(join(out, "weights.safetensors"));
    expect(w.info("model.layers.0.self_attn.qkv_proj.weight")).toMatchObject({ dtype: "BF16", shape: [128, 64] });
    expect(w.info("model.layers.0.input_layernorm.weight").dtype).toBe("F32");
    w.close();
    await expect(compileArtifact({ modelDir: fixture("llama"), outDir: tmp("x"), target: { kind: "cpu" }, dtype: "f16" })).rejects.toThrow(/f32 or bf16/);
    await expect(compileArtifact({ modelDir: fixture("llama"), outDir: tmp("x"), target: { kind: "cpu" }, kvCacheDtype: "bf16" })).rejects.toThrow(/KV cache in f32, not bf16/);
  });

  it("writes a CUDA artifact: matrices in the dtype and the rest in f32, the kernels' source, launch configurations and capture sizes", async () => {
    const out = tmp("cuda");
    const summary = await compileArtifact({ modelDir: fixture("qwen3"), outDir: out, target: parseTarget("cuda:sm_90"), dtype: "f16", kvCacheDtype: "bf16", maxNumSeqs: 20 });
    const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")) as Record<string, unknown> & {
      kernels: { name: string; launch: { grid: unknown[]; block: number[] } }[];
      cudaGraphCaptureSizes: number[];
      pieces: { kind: string }[];
    };
    expect(manifest["target"]).toBe("cuda:sm_90");
    expect(manifest.cudaGraphCaptureSizes).toEqual([1, 2, 4, 8, 16, 24]);
    expect(manifest.pieces.filter((p) => p.kind === "custom")).toHaveLength(2);
    for (const k of manifest.kernels) expect(k.launch.grid[0] === "T" || k.launch.grid[0] === "S").toBe(true);
    expect(readFileSync(join(out, "kernels/module.cu"), "utf8")).toContain('extern "C" __global__');
    const w = SafetensorsFile.open(join(out, "weights.safetensors"));
    expect(w.info("model.layers.0.self_attn.qkv_proj.weight").dtype).toBe("F16");
    expect(w.info("model.embed_tokens.weight").dtype).toBe("F16");
    expect(w.info("model.layers.0.input_layernorm.weight").dtype).toBe("F32");
    w.close();
    const program = JSON.parse(readFileSync(join(out, "program.json"), "utf8")) as { program: { options: unknown } };
    expect(program.program.options).toEqual({ target: { kind: "cuda", arch: "sm_90" }, dtype: "f16", kvDtype: "bf16", captureSizes: [1, 2, 4, 8, 16, 24] });
    expect(summary.compiler !== undefined).toBe(findCompiler("nvcc").version !== undefined);
    await refusal(out, "INVALID_ARGUMENT", /compiled for target "cuda:sm_90", but this backend runs 'cpu'/);
  });

  it("refuses a wrong format version, a missing file, an altered small file and a foreign manifest; verify finds altered weights", async () => {
    const good = tmp("good");
    await compileArtifact({ modelDir: fixture("llama"), outDir: good, target: { kind: "cpu" } });
    const variant = (name: string, edit: (dir: string) => void): string => {
      const dir = tmp(name);
      cpSync(good, dir, { recursive: true });
      edit(dir);
      return dir;
    };
    const editManifest = (dir: string, f: (m: Record<string, unknown>) => void): void => {
      const m = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")) as Record<string, unknown>;
      f(m);
      writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m));
    };
    await refusal(variant("v1", (d) => editManifest(d, (m) => (m["formatVersion"] = 1))), "CONFIG_INVALID", /format version 1 is not the version 2/);
    await refusal(variant("other", (d) => editManifest(d, (m) => (m["format"] = "something-else"))), "CONFIG_INVALID", /not a kiln-engine manifest/);
    await refusal(variant("nograph", (d) => unlinkSync(join(d, "graph.json"))), "MODEL_NOT_FOUND", /graph\.json is missing/);
    const flipByte = (p: string, at: (bytes: Buffer) => number): void => {
      const bytes = readFileSync(p);
      bytes[at(bytes)]! ^= 0x40;
      writeFileSync(p, bytes);
    };
    // a small file is hashed at every load
    await refusal(
      variant("program", (d) => flipByte(join(d, "program.json"), (b) => b.indexOf('"steps"') + 2)),
      "CONFIG_INVALID",
      /program\.json does not match its SHA-256/,
    );
    // the weights only by size at load; verify (and --verify) hash them
    const weights = variant("weights", (d) => flipByte(join(d, "weights.safetensors"), (b) => b.length - 3));
    expect((await loadModel(weights)).artifact).toBeDefined();
    expect(verifyArtifact(good).every((f) => f.ok)).toBe(true);
    expect(verifyArtifact(weights).filter((f) => !f.ok)).toEqual([
      { file: "weights.safetensors", bytes: readFileSync(join(weights, "weights.safetensors")).length, ok: false, problem: "SHA-256 differs from the manifest" },
    ]);
    await refusal(weights, "CONFIG_INVALID", /weights\.safetensors does not match its SHA-256/, { verify: true });
    await refusal(variant("truncated", (d) => writeFileSync(join(d, "graph.json"), "{}")), "CONFIG_INVALID", /graph\.json is \d+ bytes, the manifest says \d+/);
    await refusal(variant("badjson", (d) => writeFileSync(join(d, MANIFEST_FILE), "{")), "CONFIG_INVALID", /manifest\.json cannot be read/);
    await refusal(good, "INVALID_ARGUMENT", /stored as f32; recompile with --dtype bf16/, { weightStorage: "bf16" });
  });

  it("leaves an existing artifact alone unless forced, and nothing half-written on failure", async () => {
    const out = tmp("kept");
    await compileArtifact({ modelDir: fixture("llama"), outDir: out, target: { kind: "cpu" } });
    await expect(compileArtifact({ modelDir: fixture("qwen2"), outDir: out, target: { kind: "cpu" } })).rejects.toThrow(/pass --force/);
    await expect(compileArtifact({ modelDir: fixture("llama"), outDir: out, target: { kind: "cpu" }, maxModelLen: 100_000, force: true })).rejects.toThrow(/--max-model-len/);
    expect((await loadModel(out)).arch).toBe("LlamaForCausalLM"); // the old artifact is intact
    await compileArtifact({ modelDir: fixture("qwen2"), outDir: out, target: { kind: "cpu" }, force: true });
    expect((await loadModel(out)).arch).toBe("Qwen2ForCausalLM");
  });

  it("converts f32 to IEEE half with round-to-nearest-even", () => {
    expect([1, -2, 65504, 65520, 2 ** -24, 2 ** -25, 0.1, 1 + 2 ** -11, Infinity].map(f32ToF16)).toEqual([
      0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x2e66, 0x3c00, 0x7c00,
    ]);
  });
});
