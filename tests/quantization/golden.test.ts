/**
 * Quantized llama fixtures against their dequantized references: each format's checkpoint
 * (packed by tests/quantization/quantize_fixture.ts from the public definitions) loads through the
 * linear method and gives, on the CPU, the logits of the same model stored as plain f32 weights
 * holding the dequantized values (run through the verified f32 path), within 1e-4.
 */
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { editConfig, fixture } from "../fixture_copy.ts";
import { maxAbsDiff, referencePromptLogits, relErr } from "./logits.ts";
import { writeQuantizedFixture, type FixtureFormat, type QuantizedFixture } from "./quantize_fixture.ts";

const CASES: readonly (readonly [title: string, format: FixtureFormat, exclude?: readonly string[]])[] = [
  ["fp8 per-tensor (static input scales)", { kind: "fp8", config: "fp8", strategy: "tensor", staticInput: true }],
  ["fp8 block 32×32 (weight_scale_inv)", { kind: "fp8", config: "fp8", strategy: "block", block: [32, 32] }],
  ["fp8 block 64×64", { kind: "fp8", config: "fp8", strategy: "block", block: [64, 64] }, ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"]],
  ["compressed-tensors fp8 per-tensor", { kind: "fp8", config: "compressed-tensors", strategy: "tensor" }],
  ["compressed-tensors fp8 per-channel", { kind: "fp8", config: "compressed-tensors", strategy: "channel" }],
  ["compressed-tensors fp8 block 16×32", { kind: "fp8", config: "compressed-tensors", strategy: "block", block: [16, 32] }],
  ["awq 4-bit group 32", { kind: "awq", groupSize: 32 }],
  ["awq 4-bit group 64, layer 1's mlp left float", { kind: "awq", groupSize: 64 }, ["layers.1.mlp"]],
  ["gptq 4-bit sym group 32", { kind: "gptq", bits: 4, groupSize: 32, sym: true, descAct: false }],
  ["gptq 4-bit asym group 32 desc_act", { kind: "gptq", bits: 4, groupSize: 32, sym: false, descAct: true }],
  ["gptq 8-bit sym group 64 desc_act", { kind: "gptq", bits: 8, groupSize: 64, sym: true, descAct: true }],
  ["gptq 8-bit asym group 32", { kind: "gptq", bits: 8, groupSize: 32, sym: false, descAct: false }],
  ["gptq_v2 4-bit asym group 64", { kind: "gptq", bits: 4, groupSize: 64, sym: false, descAct: false, v2: true }],
];

/** The mixture-of-experts fixture: attention and every expert quantized (the router stays f32). */
const MOE_CASES: readonly (readonly [title: string, format: FixtureFormat])[] = [
  ["fp8 per-tensor", { kind: "fp8", config: "fp8", strategy: "tensor" }],
  ["compressed-tensors fp8 block 16×32", { kind: "fp8", config: "compressed-tensors", strategy: "block", block: [16, 32] }],
  ["awq 4-bit group 32", { kind: "awq", groupSize: 32 }],
  ["gptq 4-bit asym group 32 desc_act", { kind: "gptq", bits: 4, groupSize: 32, sym: false, descAct: true }],
  ["gptq 8-bit sym group 32", { kind: "gptq", bits: 8, groupSize: 32, sym: true, descAct: false }],
];

for (const [fixtureName, cases] of [
  ["llama", CASES],
  ["qwen3-moe", MOE_CASES],
] as const) describe(`quantized ${fixtureName} against its dequantized reference (CPU)`, () => {
  const made: QuantizedFixture[] = [];
  afterAll(() => made.forEach((m) => m.cleanup()));

  let float: Float32Array[] | undefined;

  it("--quantization fp8 on the float checkpoint: each weight rounded through e4m3 with its own per-tensor scale", async () => {
    // the fixture generator's fp8 per-tensor reference holds exactly those weights
    const fx = writeQuantizedFixture(fixtureName, { kind: "fp8", config: "fp8", strategy: "tensor" });
    made.push(fx);
    const ours = await referencePromptLogits(fixture(fixtureName), 4, "cpu", { quantization: "fp8" });
    const diff = maxAbsDiff(ours, await referencePromptLogits(fx.reference));
    expect(diff).toBeLessThanOrEqual(1e-4);
    float ??= await referencePromptLogits(fixture(fixtureName));
    expect(maxAbsDiff(ours, float)).toBeGreaterThan(1e-3);
    console.log(`online fp8: max |logit diff| ${diff.toExponential(2)}`);
  });

  for (const [title, format, exclude] of cases as typeof CASES) {
    it(title, async () => {
      const fx = writeQuantizedFixture(fixtureName, format, exclude);
      made.push(fx);
      const ours = await referencePromptLogits(fx.quantized);
      const ref = await referencePromptLogits(fx.reference);
      const diff = maxAbsDiff(ours, ref);
      expect(diff).toBeLessThanOrEqual(1e-4);
      // the quantization is real: the logits moved away from the float model's
      float ??= await referencePromptLogits(fixture(fixtureName));
      expect(maxAbsDiff(ours, float)).toBeGreaterThan(1e-3);
      console.log(`${title}: max |logit diff| ${diff.toExponential(2)}`);
    });
  }
});

it("a bf16 checkpoint's dequantized weights are held in bf16 (within bf16 tolerance of the f32 reference)", async () => {
  const fx = writeQuantizedFixture("llama", { kind: "fp8", config: "fp8", strategy: "block", block: [32, 32] });
  try {
    editConfig(fx.quantized, (c) => (c["dtype"] = "bfloat16"));
    const loaded = await loadModel(fx.quantized);
    expect(loaded.weights.get("model.layers.0.self_attn.qkv_proj.weight")?.dtype).toBe("bf16");
    const err = relErr(await referencePromptLogits(fx.quantized, 2), await referencePromptLogits(fx.reference, 2));
    expect(err).toBeLessThan(2e-2);
    expect(err).toBeGreaterThan(0);
  } finally {
    fx.cleanup();
  }
});
