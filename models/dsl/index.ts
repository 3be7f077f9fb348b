/** The model-author DSL: everything an in-tree or plugin model is written with. */
export { Module, joinPrefix, SINGLE_DEVICE, type LoadTarget, type ModelContext, type ParallelConfig } from "./module.ts";
export { Parameter, defaultLoader, type ParameterOrigin, type SourceTensor, type WeightData, type WeightLoader } from "./parameter.ts";
export {
  ColumnParallelLinear,
  MergedColumnParallelLinear,
  QKVParallelLinear,
  ReplicatedLinear,
  RowParallelLinear,
} from "./linear.ts";
export { LearnedPositionalEmbedding, ParallelLMHead, VocabParallelEmbedding } from "./embedding.ts";
export {
  QUANT_METHODS,
  readQuantizationConfig,
  type AwqQuantization,
  type Fp8Quantization,
  type GptqQuantization,
  type QuantizationConfig,
  type QuantMethodName,
} from "./quantization/config.ts";
export { QuantizedLinearWeights, quantizedFormatFor, type QuantizedFormat } from "./quantization/linear_method.ts";
export { PackedParameter, type LinearGeometry, type OutputShard, type PackedAxis, type PackedSpec } from "./quantization/packed_parameter.ts";
export { HF_ACTIVATIONS, parseActivation, type HfActivation } from "./activation.ts";
export { LayerNorm, RMSNorm } from "./norm.ts";
export { RotaryEmbedding } from "./rotary.ts";
export { Attention } from "./attention.ts";
export {
  FusedMoE,
  GATE_UP_DOWN_PROJ,
  MIXTRAL_EXPERT_NAMES,
  MoeRouter,
  SparseMoeBlock,
  type ExpertNames,
  type FusedMoEOptions,
  type SparseMoeBlockOptions,
} from "./fused_moe.ts";
export {
  LLAMA_STACKED,
  loadWeights,
  type CheckpointRename,
  type LoadReport,
  type StackedParam,
  type WeightRules,
  type WeightSource,
} from "./load_weights.ts";
export { DecoderOnlyLM, DecoderStack, type DecoderLayer, type DecoderLMConfig, type DecoderStackSizes } from "./decoder_lm.ts";
export { traceModel, type CausalLM, type CausalLMClass, type ModelArgs, type ModelInputs } from "./causal_lm.ts";
export { Tensor, GraphBuilder } from "../../compiler/trace.ts";
export type { ConfigReader } from "../hf_config.ts";
export { parseRope, type RopeConfig } from "../rope_config.ts";
export { registerModel, loadPlugins } from "../registry.ts";
