/** Bad model input gets a typed error naming the file, tensor or field. */
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { copyFixture, editConfig, editWeights } from "../fixture_copy.ts";

async function loadError(dir: string): Promise<{ code: ErrorCode; message: string }> {
  try {
    await loadModel(dir);
  } catch (e) {
    if (isKilnError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected loadModel to fail");
}

describe("model loading errors", () => {
  it("names a missing tensor and the parameter it leaves empty", async () => {
    const dir = copyFixture("llama");
    editWeights(dir, (ts) => ts.filter((t) => t.name !== "model.layers.1.self_attn.k_proj.weight"));
    const e = await loadError(dir);
    expect(e.code).toBe("TENSOR_MISSING");
    expect(e.message).toContain("model.layers.1.self_attn.qkv_proj.weight (shards k)");
    expect(e.message).toContain(dir);
  });

  it("lists every checkpoint tensor no parameter consumed", async () => {
    const dir = copyFixture("llama");
    editWeights(dir, (ts) => [
      ...ts,
      { name: "model.layers.0.extra.weight", dtype: "F32", shape: [2], data: new Float32Array(2) },
      { name: "model.surprise", dtype: "F32", shape: [1], data: new Float32Array(1) },
    ]);
    const e = await loadError(dir);
    expect(e.code).toBe("TENSOR_UNUSED");
    expect(e.message).toContain("model.layers.0.extra.weight");
    expect(e.message).toContain("model.surprise");
  });

  it("refuses a tensor of the wrong shape, naming tensor, file and parameter", async () => {
    const dir = copyFixture("llama");
    editWeights(dir, (ts) =>
      ts.map((t) =>
        t.name === "model.layers.0.mlp.up_proj.weight" ? { ...t, shape: [64, 128], data: new Float32Array(64 * 128) } : t,
      ),
    );
    const e = await loadError(dir);
    expect(e.code).toBe("TENSOR_SHAPE");
    expect(e.message).toContain("model.layers.0.mlp.up_proj.weight");
    expect(e.message).toContain("model.layers.0.mlp.gate_up_proj.weight");
    expect(e.message).toContain("model.safetensors");
  });

  it("refuses a tensor of the wrong dtype", async () => {
    const dir = copyFixture("llama");
    editWeights(dir, (ts) =>
      ts.map((t) => (t.name === "model.norm.weight" ? { ...t, dtype: "I32", data: new Int32Array(64) } : t)),
    );
    const e = await loadError(dir);
    expect(e.code).toBe("SAFETENSORS_DTYPE");
    expect(e.message).toContain("model.norm.weight");
    expect(e.message).toContain("I32");
  });

  // (an unknown *causal LM* of the generic decoder's shape runs through the generic fallback:
  // tests/authoring/generic_decoder.test.ts; a head that is not a causal LM never does)
  it("refuses an unknown architecture that is not a causal LM, listing the known ones", async () => {
    const dir = copyFixture("llama");
    editConfig(dir, (c) => (c["architectures"] = ["NoSuchModelForSequenceClassification"]));
    const e = await loadError(dir);
    expect(e.code).toBe("ARCH_UNKNOWN");
    expect(e.message).toContain("NoSuchModelForSequenceClassification");
    expect(e.message).toContain("LlamaForCausalLM");
  });

  it("names the config field and file when a required field is missing", async () => {
    const dir = copyFixture("qwen3");
    editConfig(dir, (c) => delete c["hidden_size"]);
    const e = await loadError(dir);
    expect(e.code).toBe("CONFIG_INVALID");
    expect(e.message).toContain("hidden_size");
    expect(e.message).toContain("config.json");
  });

  it("refuses a folder that does not exist", async () => {
    const e = await loadError("/nonexistent/kiln-model");
    expect(e.code).toBe("MODEL_NOT_FOUND");
  });
});

/**
 * Config values a tester found trusted before the checkpoint: each used to run for a minute and
 * gigabytes, or to die with a raw stack trace. Each must now be CONFIG_INVALID, naming the file and
 * the field, before anything is sized from the value.
 */
describe("hostile config values fail fast with CONFIG_INVALID", () => {
  const copies: string[] = [];
  afterAll(() => copies.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** Loads a fixture copy with `edit` applied: CONFIG_INVALID, fast, naming config.json and each of `parts`. */
  async function configError(fixtureName: string, edit: (c: Record<string, unknown>) => void, ...parts: string[]): Promise<void> {
    const dir = copyFixture(fixtureName);
    copies.push(dir);
    editConfig(dir, edit);
    const start = performance.now();
    const e = await loadError(dir);
    expect(performance.now() - start, "refused within 2 s").toBeLessThan(2000);
    expect(e.code, e.message).toBe("CONFIG_INVALID");
    for (const part of [`${dir}/config.json`, ...parts]) expect(e.message).toContain(part);
  }

  it("num_hidden_layers: 1000000 (was: >60 s and 4.3 GB building layers)", () =>
    configError("llama", (c) => (c["num_hidden_layers"] = 1_000_000), '"num_hidden_layers"', "1000000"));

  it("head_dim: 1e9 (was: 50 s and 4 GB before a RangeError)", () =>
    configError("qwen3", (c) => (c["head_dim"] = 1e9), '"head_dim"', "1000000000"));

  it("max_position_embeddings: 1e9 is out of range (kiln run sized its KV pool from it)", () =>
    configError("llama", (c) => (c["max_position_embeddings"] = 1e9), '"max_position_embeddings"'));

  it("num_hidden_layers must match the layers the checkpoint holds", async () => {
    await configError("llama", (c) => (c["num_hidden_layers"] = 3), '"num_hidden_layers" is 3', "layers 0..1");
    await configError("gpt2", (c) => (c["n_layer"] = 1), '"n_layer" is 1', "transformer.h");
  });

  it("vocab and hidden sizes must match the token embedding's shape", async () => {
    await configError("llama", (c) => (c["vocab_size"] = 600), '"vocab_size" is 600', "model.embed_tokens.weight", "[512, 64]");
    await configError("mamba", (c) => (c["hidden_size"] = 32), '"hidden_size" is 32', "backbone.embeddings.weight");
  });

  // Each of these died with a raw stack trace (or ran on with a silently wrong model).
  const cases: [string, string, (c: Record<string, unknown>) => void][] = [
    ["llama", "num_attention_heads", (c) => { c["num_attention_heads"] = 3; c["num_key_value_heads"] = 1; delete c["head_dim"]; }],
    ["llama", "num_key_value_heads", (c) => (c["num_key_value_heads"] = 3)],
    ["llama", "num_key_value_heads", (c) => (c["num_key_value_heads"] = 0)],
    ["llama", "head_dim", (c) => (c["head_dim"] = 15)],
    ["llama", "rms_norm_eps", (c) => (c["rms_norm_eps"] = { __float__: "NaN" })],
    ["llama", "rms_norm_eps", (c) => (c["rms_norm_eps"] = -1)],
    ["llama", "intermediate_size", (c) => (c["intermediate_size"] = 0)],
    ["opt", "ffn_dim", (c) => (c["ffn_dim"] = -1)],
    ["mistral-swa", "sliding_window", (c) => (c["sliding_window"] = -1)],
    ["mistral-swa", "sliding_window", (c) => (c["sliding_window"] = 0)],
    ["lfm2", "conv_L_cache", (c) => (c["conv_L_cache"] = 1)],
    ["mamba", "conv_kernel", (c) => (c["conv_kernel"] = 0)],
    ["jamba", "attn_layer_period", (c) => (c["attn_layer_period"] = 0)],
    ["qwen2", "layer_types", (c) => (c["layer_types"] = ["full_attention", "nonsense"])],
    ["mamba2", "time_step_limit", (c) => (c["time_step_limit"] = [{ __float__: "NaN" }, 1])],
  ];
  for (const [name, field, edit] of cases) {
    it(`${name}: a bad ${field} is refused, naming it`, async () => {
      await configError(name, edit, `"${field}`);
    });
  }
});
