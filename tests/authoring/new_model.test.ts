/**
 * kiln new-model: the model file it writes for each decoder fixture, loaded as a plugin under a
 * new architecture name (so no built-in registration applies), passes that fixture's HF golden
 * (Qwen3-MoE's sparse blocks included); stateful checkpoints, and MoE blocks FusedMoE cannot
 * hold, get a file whose model is a precise TODO that throws.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { checkModelFile } from "../../models/authoring/model_check.ts";
import { writeNewModel } from "../../models/authoring/model_writer.ts";
import { defaultRegistry, loadPlugins } from "../../models/registry.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import type { TensorToWrite } from "../../runtime/io/safetensors_writer.ts";
import { copyFixture, editConfig, editWeights, fixture } from "../fixture_copy.ts";
import { fixtureFacts } from "../fixtures/index.ts";
import { expectGoldenParity } from "../models/golden_support.ts";

const OUT = mkdtempSync(join(tmpdir(), "kiln-new-model-"));

/** Writes the fixture's model file under `arch`, loads it as a plugin and renames a copy of the fixture to `arch`. */
async function generated(name: string): Promise<{ dir: string; arch: string; todos: readonly string[]; closest: string }> {
  const arch = `Written${name.replace(/\W/g, "")}ForCausalLM`;
  // .mts: an ES module wherever it lies, so it shares kiln's registry with the test
  const r = await writeNewModel(fixture(name), join(OUT, `${name}.mts`), { arch });
  await loadPlugins([r.file]);
  expect(defaultRegistry.has(arch)).toBe(true);
  const dir = copyFixture(name);
  editConfig(dir, (c) => (c["architectures"] = [arch]));
  return { dir, arch, todos: r.todos, closest: r.closest.family.arch };
}

/** A zero-filled F32 tensor: the MoE cases below test structure, not values. */
const zeros = (name: string, shape: readonly number[]): TensorToWrite => ({ name, dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

/** The loading error of `dir` (undefined when it loads). */
const loadError = (dir: string): Promise<unknown> =>
  loadModel(dir).then(
    () => undefined,
    (err: unknown) => err,
  );

describe("kiln new-model", () => {
  afterEach(() => void vi.restoreAllMocks());

  for (const [name, closest] of [
    ["llama", "LlamaForCausalLM"],
    ["qwen2", "Qwen2ForCausalLM"],
    ["qwen3", "Qwen3ForCausalLM"],
    ["mistral-swa", "LlamaForCausalLM"],
    ["gemma2", "Gemma2ForCausalLM"],
    ["gemma3", "Gemma3ForCausalLM"],
    ["opt", "OPTForCausalLM"],
    ["gpt2", "GPT2LMHeadModel"],
    // sparse MoE blocks become the DSL's SparseMoeBlock (FusedMoE), with the experts' stacked map
    ["qwen3-moe", "Qwen3MoeForCausalLM"],
  ] as const) {
    it(`writes ${name} as a plugin that passes its golden`, async () => {
      const spy = vi.spyOn(process.stderr, "write");
      const g = await generated(name);
      expect(g.closest).toBe(closest);
      expect(g.todos).toEqual([]);
      await expectGoldenParity(g.dir, { ropeFreqBf16: fixtureFacts(name).ropeFreqBf16 });
      // the written model ran, not the generic fallback
      expect(spy.mock.calls.map((c) => String(c[0])).filter((s) => s.includes("generic decoder-only"))).toEqual([]);
    });
  }

  for (const [name, closest, op] of [
    ["mamba", "MambaForCausalLM", "MambaMixer"],
    ["bamba", "BambaForCausalLM", "Mamba2Mixer"],
  ] as const) {
    it(`writes ${name} as a registered model whose layers are a precise TODO`, async () => {
      const g = await generated(name);
      expect(g.closest).toBe(closest);
      expect(g.todos).toHaveLength(1);
      const e = await loadError(g.dir);
      expect(e).toMatchObject({ code: "MODEL_INCOMPLETE" });
      const message = (e as Error).message;
      expect(message).toContain(`the closest architecture kiln knows is ${closest}`);
      expect(message).toContain(op);
    });
  }

  it("writes a MoE file that check-model passes against its checkpoint", async () => {
    const r = await writeNewModel(fixture("qwen3-moe"), join(OUT, "qwen3-moe-checked.mts"), { arch: "CheckedQwen3MoeForCausalLM" });
    const ds = await checkModelFile(r.file, { checkpoint: fixture("qwen3-moe") });
    expect(ds.map((d) => `${d.line}: [${d.rule}] ${d.message}`)).toEqual([]);
  });

  it("builds dense layers beside sparse ones where mlp_only_layers says, and says so when the config disagrees", async () => {
    // layer 1 holds a dense MLP of intermediate_size (128) instead of the experts
    const dir = copyFixture("qwen3-moe");
    editWeights(dir, (ts) => [
      ...ts.filter((t) => !t.name.startsWith("model.layers.1.mlp.")),
      zeros("model.layers.1.mlp.gate_proj.weight", [128, 64]),
      zeros("model.layers.1.mlp.up_proj.weight", [128, 64]),
      zeros("model.layers.1.mlp.down_proj.weight", [64, 128]),
    ]);
    const disagreeing = await writeNewModel(dir, join(OUT, "mixed-disagreeing.mts"), { arch: "DisagreeingMoeForCausalLM" });
    expect(disagreeing.todos).toEqual([expect.stringContaining("the checkpoint has it on layers [0], the config (decoder_sparse_step and mlp_only_layers) on [0, 1]")]);

    editConfig(dir, (c) => {
      c["mlp_only_layers"] = [1];
      c["architectures"] = ["MixedMoeForCausalLM"];
    });
    const r = await writeNewModel(dir, join(OUT, "mixed.mts"), { arch: "MixedMoeForCausalLM" });
    expect(r.todos).toEqual([]);
    await loadPlugins([r.file]);
    // every tensor, the dense layer's included, is consumed and every parameter filled
    expect(await loadError(dir)).toBeUndefined();
  });

  it("leaves a MoE block with shared experts as a TODO that names them", async () => {
    const dir = copyFixture("qwen3-moe");
    editWeights(dir, (ts) => [
      ...ts,
      ...[0, 1].flatMap((i) => [
        zeros(`model.layers.${i}.mlp.shared_expert.gate_proj.weight`, [32, 64]),
        zeros(`model.layers.${i}.mlp.shared_expert.up_proj.weight`, [32, 64]),
        zeros(`model.layers.${i}.mlp.shared_expert.down_proj.weight`, [64, 32]),
        zeros(`model.layers.${i}.mlp.shared_expert_gate.weight`, [1, 64]),
      ]),
    ]);
    editConfig(dir, (c) => (c["architectures"] = ["SharedExpertMoeForCausalLM"]));
    const r = await writeNewModel(dir, join(OUT, "shared-experts.mts"), { arch: "SharedExpertMoeForCausalLM" });
    expect(r.closest.family.arch).toBe("Qwen3MoeForCausalLM");
    expect(r.todos).toHaveLength(1);
    await loadPlugins([r.file]);
    const e = await loadError(dir);
    expect(e).toMatchObject({ code: "MODEL_INCOMPLETE" });
    const message = (e as Error).message;
    expect(message).toContain("its MoE blocks have pieces kiln's FusedMoE does not build: shared experts (mlp.shared_expert.down_proj.weight, mlp.shared_expert.gate_proj.weight, mlp.shared_expert.up_proj.weight, mlp.shared_expert_gate.weight)");
    expect(message).toContain("SparseMoeBlock");
  });
});
