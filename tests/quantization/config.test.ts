/** Reading quantization_config and deciding which layers stay unquantized. */
import { describe, expect, it } from "vitest";
import { ConfigReader, type JsonObject } from "../../models/hf_config.ts";
import { isLayerSkipped, readQuantizationConfig, type QuantizationConfig } from "../../models/dsl/quantization/config.ts";

const read = (q: JsonObject, flag?: string): QuantizationConfig | undefined =>
  readQuantizationConfig(new ConfigReader({ quantization_config: q }, "config.json"), flag);

describe("quantization_config", () => {
  it("reads vLLM's fp8 (per-tensor, or blocks with weight_scale_inv)", () => {
    expect(read({ quant_method: "fp8", activation_scheme: "dynamic" })).toMatchObject({ method: "fp8", strategy: "tensor", scaleName: "weight_scale" });
    expect(read({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 128] })).toMatchObject({
      strategy: "block",
      block: [128, 128],
      scaleName: "weight_scale_inv",
    });
  });

  it("reads compressed-tensors float-quantized schemes", () => {
    const q = read({
      quant_method: "compressed-tensors",
      format: "float-quantized",
      config_groups: { group_0: { targets: ["Linear"], weights: { type: "float", num_bits: 8, strategy: "channel", dynamic: false }, input_activations: { dynamic: true } } },
      ignore: ["lm_head", "re:.*mlp\\.down_proj"],
    });
    expect(q).toMatchObject({ method: "fp8", from: "compressed-tensors", strategy: "channel", staticInputScale: false });
    expect(isLayerSkipped(q!, "model.layers.3.mlp.down_proj")).toBe(true);
    expect(isLayerSkipped(q!, "model.layers.3.mlp.gate_up_proj")).toBe(false);
  });

  it("refuses integer compressed-tensors schemes and other methods with QUANT_UNSUPPORTED", () => {
    expect(() =>
      read({ quant_method: "compressed-tensors", format: "pack-quantized", config_groups: { g: { weights: { type: "int", num_bits: 4, strategy: "group" } } } }),
    ).toThrow(expect.objectContaining({ code: "QUANT_UNSUPPORTED", message: expect.stringContaining("quantization_config.format") }));
    expect(() => read({ quant_method: "awq", bits: 4, group_size: 128, version: "gemv" })).toThrow(expect.objectContaining({ code: "QUANT_UNSUPPORTED" }));
    expect(() => read({ quant_method: "gptq", bits: 2, group_size: 128 })).toThrow(expect.objectContaining({ code: "QUANT_UNSUPPORTED" }));
  });

  it("reads GPTQ's legacy zero offset from checkpoint_format", () => {
    expect(read({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: true, sym: true })).toMatchObject({ zeroOffset: 1, descAct: true });
    expect(read({ quant_method: "gptq", bits: 8, group_size: -1, checkpoint_format: "gptq_v2" })).toMatchObject({ zeroOffset: 0, groupSize: "whole" });
  });

  it("excludes whole dotted names only, and a stacked layer by all of its pieces", () => {
    const q = read({ quant_method: "awq", bits: 4, group_size: 128, modules_to_not_convert: ["layers.1", "self_attn"] })!;
    expect(isLayerSkipped(q, "model.layers.1.mlp.down_proj")).toBe(true);
    expect(isLayerSkipped(q, "model.layers.10.mlp.down_proj")).toBe(false);
    expect(isLayerSkipped(q, "model.layers.5.self_attn.qkv_proj")).toBe(true);
  });

  it("--quantization fp8 on a float checkpoint quantizes it at load", () => {
    const c = new ConfigReader({}, "config.json");
    expect(readQuantizationConfig(c, "fp8")).toMatchObject({ method: "fp8", from: "online", strategy: "tensor" });
    expect(readQuantizationConfig(c)).toBeUndefined();
  });
});
