/** A malformed quantized checkpoint gets a typed error (QUANT_INVALID / QUANT_UNSUPPORTED) naming the tensor or field. */
import { afterAll, describe, expect, it } from "vitest";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import type { LoadOptions } from "../../runtime/io/loaded_model.ts";
import { editConfig, editWeights, fixture } from "../fixture_copy.ts";
import { writeQuantizedFixture, type FixtureFormat, type QuantizedFixture } from "./quantize_fixture.ts";

async function loadError(dir: string, opts: LoadOptions = {}): Promise<{ code: ErrorCode; message: string }> {
  try {
    await loadModel(dir, opts);
  } catch (e) {
    if (isKilnError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected loadModel to fail");
}

const AWQ: FixtureFormat = { kind: "awq", groupSize: 32 };
const GPTQ: FixtureFormat = { kind: "gptq", bits: 4, groupSize: 32, sym: false, descAct: true };

describe("quantized checkpoint errors", () => {
  const made: QuantizedFixture[] = [];
  afterAll(() => made.forEach((m) => m.cleanup()));
  const make = (f: FixtureFormat, exclude: readonly string[] = []): string => {
    const fx = writeQuantizedFixture("llama", f, exclude);
    made.push(fx);
    return fx.quantized;
  };

  it("a packed weight of the wrong shape names the tensor and the shape expected", async () => {
    const dir = make(AWQ);
    const name = "model.layers.0.mlp.down_proj.qweight"; // [128, 64/8]
    editWeights(dir, (ts) => ts.map((t) => (t.name === name ? { ...t, shape: [64, 16] } : t)));
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_INVALID");
    expect(e.message).toContain(name);
    expect(e.message).toContain("expected [128, 8]");
  });

  it("missing scales name the stacked tensor and the shard left empty", async () => {
    const dir = make(AWQ);
    editWeights(dir, (ts) => ts.filter((t) => t.name !== "model.layers.1.self_attn.k_proj.scales"));
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_INVALID");
    expect(e.message).toContain("model.layers.1.self_attn.qkv_proj.scales (shards k)");
  });

  it("a packed weight stored as floats is refused", async () => {
    const dir = make(GPTQ);
    const name = "model.layers.0.self_attn.o_proj.qweight";
    editWeights(dir, (ts) => ts.map((t) => (t.name === name ? { ...t, dtype: "F32" } : t)));
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_INVALID");
    expect(e.message).toContain(name);
    expect(e.message).toContain("F32");
  });

  it("a g_idx pointing outside the groups names the tensor", async () => {
    const dir = make(GPTQ);
    const name = "model.layers.0.mlp.up_proj.g_idx";
    editWeights(dir, (ts) => ts.map((t) => (t.name === name ? { ...t, data: new Int32Array(64).fill(7) } : t)));
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_INVALID");
    expect(e.message).toContain("model.layers.0.mlp.gate_up_proj.g_idx");
    expect(e.message).toContain("group 7");
  });

  it("fp8 blocks that do not divide a stacked shard are refused, naming the scale tensor", async () => {
    const dir = make({ kind: "fp8", config: "fp8", strategy: "block", block: [128, 128] });
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_INVALID");
    expect(e.message).toContain("k_proj.weight_scale_inv");
  });

  it("unsupported bits, methods and options name the config field", async () => {
    const cases: readonly [(q: Record<string, unknown>) => void, string][] = [
      [(q) => (q["bits"] = 3), "quantization_config.bits"],
      [(q) => (q["quant_method"] = "bitsandbytes"), "quantization_config.quant_method"],
      [(q) => (q["checkpoint_format"] = "marlin"), "quantization_config.checkpoint_format"],
      [(q) => (q["lm_head"] = true), "quantization_config.lm_head"],
    ];
    for (const [edit, field] of cases) {
      const dir = make(GPTQ);
      editConfig(dir, (c) => edit(c["quantization_config"] as Record<string, unknown>));
      const e = await loadError(dir);
      expect(e.code).toBe("QUANT_UNSUPPORTED");
      expect(e.message).toContain(field);
    }
  });

  it("excluding only some of a stacked layer's pieces is refused", async () => {
    const dir = make(AWQ);
    editConfig(dir, (c) => ((c["quantization_config"] as Record<string, unknown>)["modules_to_not_convert"] = ["layers.0.self_attn.q_proj"]));
    const e = await loadError(dir);
    expect(e.code).toBe("QUANT_UNSUPPORTED");
    expect(e.message).toContain("model.layers.0.self_attn.qkv_proj");
  });

  it("--quantization must name the checkpoint's method", async () => {
    expect((await loadError(make(AWQ), { quantization: "gptq" })).code).toBe("QUANT_INVALID");
    // only fp8 quantizes a float checkpoint at load
    expect((await loadError(fixture("llama"), { quantization: "awq" })).code).toBe("QUANT_UNSUPPORTED");
    expect((await loadError(fixture("llama"), { quantization: "int3" })).code).toBe("QUANT_UNSUPPORTED");
    await expect(loadModel(make(AWQ), { quantization: "awq" })).resolves.toBeDefined();
  });
});
