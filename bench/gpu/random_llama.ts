/**
 * Llama-3.2-1B- and Qwen3-0.6B-shaped models with random weights, made in-process from their
 * configs (no download): the real graph and parameter shapes, matrices in bf16, norms in f32
 * (ones). For timing only: the
 * matrices are views of one buffer holding a repeated random block at a small scale, so
 * activations stay finite and the host holds 0.5 GB instead of 2.5 GB.
 */
import type { Graph } from "../../compiler/ir.ts";
import { traceModel } from "../../models/dsl/causal_lm.ts";
import { SINGLE_DEVICE } from "../../models/dsl/module.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { defaultRegistry } from "../../models/registry.ts";
import { architectures, ConfigReader, type JsonObject } from "../../models/hf_config.ts";

/** meta-llama/Llama-3.2-1B's config.json, as far as the model reads it */
export const LLAMA_32_1B: JsonObject = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 2048,
  intermediate_size: 8192,
  num_hidden_layers: 16,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 64,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  rope_scaling: { rope_type: "llama3", factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
  tie_word_embeddings: true,
  attention_bias: false,
  mlp_bias: false,
  hidden_act: "silu",
  torch_dtype: "bfloat16",
};

/** The same architecture at toy size, for --quick runs (the CPU emulator) */
export const TINY_LLAMA: JsonObject = {
  ...LLAMA_32_1B,
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 1000,
};

/** Qwen/Qwen3-0.6B's config.json, as far as the model reads it: tied embeddings, q/k norms, no biases */
export const QWEN3_06B: JsonObject = {
  architectures: ["Qwen3ForCausalLM"],
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  vocab_size: 151936,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  attention_bias: false,
  hidden_act: "silu",
  torch_dtype: "bfloat16",
};

/** Qwen3 at toy size, for --quick runs */
export const TINY_QWEN3: JsonObject = {
  ...QWEN3_06B,
  hidden_size: 128,
  intermediate_size: 384,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  vocab_size: 1000,
};

export interface RandomModel {
  readonly graph: Graph;
  readonly weights: ReadonlyMap<string, WeightData>;
  readonly vocabSize: number;
  readonly parameters: number;
}

export async function randomModel(config: JsonObject, seed = 1): Promise<RandomModel> {
  const reader = new ConfigReader(config, "(in-process config of a random-weight model)");
  const { cls } = await defaultRegistry.resolve(architectures(reader));
  const model = new cls({ config: reader, ctx: { parallel: SINGLE_DEVICE, weightStorage: "bf16" } });
  // one random block of bf16 values in ±0.03, tiled over every matrix
  const block = new Uint16Array(1 << 20);
  let s = seed >>> 0;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < block.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[0] = ((s >>> 8) / 2 ** 24 - 0.5) * 0.06;
    block[i] = u[0]! >>> 16;
  }
  // every matrix is a view of one shared buffer (as large as the largest), filled once
  const params = [...model.parameters()];
  const largest = Math.max(...params.map(([, p]) => (p.storage === "bf16" ? p.numel : 0)));
  const shared = new Uint16Array(largest);
  for (let at = 0; at < largest; at += block.length) shared.set(block.subarray(0, Math.min(block.length, largest - at)), at);
  const weights = new Map<string, WeightData>();
  let parameters = 0;
  for (const [name, p] of params) {
    parameters += p.numel;
    p.data = p.storage === "f32" ? { dtype: "f32", data: new Float32Array(p.numel).fill(1) } : { dtype: "bf16", data: shared.subarray(0, p.numel) };
    weights.set(name, p.data);
  }
  return { graph: traceModel(model), weights, vocabSize: model.vocabSize, parameters };
}
