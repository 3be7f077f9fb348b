/** Bad model input gets a typed error naming the file, tensor or field. */
import { describe, expect, it } from "vitest";
import { isKilnError, type ErrorCode } from "../../runtime/errors.ts";
import { loadModel } from "../../runtime/model_loader.ts";
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

  it("refuses an unknown architecture, listing the known ones", async () => {
    const dir = copyFixture("llama");
    editConfig(dir, (c) => (c["architectures"] = ["NoSuchModelForCausalLM"]));
    const e = await loadError(dir);
    expect(e.code).toBe("ARCH_UNKNOWN");
    expect(e.message).toContain("NoSuchModelForCausalLM");
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
