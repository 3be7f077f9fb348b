/**
 * MiniMax-Text-01: lightning (linear) attention layers with per-head decay, interleaved with full
 * GQA attention layers; every layer's MLP is a sparse MoE (Mixtral-style: softmax → top-k →
 * renormalize). Residuals are taken after each norm and mixed with alpha/beta factors:
 *
 *   per layer: x = rmsnorm(h);  h = α_attn · x + β_attn · mixer(x)
 *     linear:  qkv = silu(qkv_proj(x));  out_proj(sigmoid(output_gate(x)) · rmsnorm(lightning(qkv)))
 *     full:    o_proj(attn(rope(q), rope(k), v))
 *              x = rmsnorm(h);  h = α_mlp · x + β_mlp · moe(x)
 *   logits = lm_head(rmsnorm(h[last rows]))
 */
import type { Tensor } from "../compiler/trace.ts";
import { EPS, EXPERTS, FINITE, LAYERS, POSITIONS, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { checkRotaryDim, parseRope, type RopeConfig } from "./rope_config.ts";
import { Attention } from "./dsl/attention.ts";
import { parseAttentionSizes } from "./dsl/attention_sizes.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { FusedMoE, MIXTRAL_EXPERT_NAMES, parseTopK, SparseMoeBlock, type FusedMoEOptions } from "./dsl/fused_moe.ts";
import { checkLayerTypes, layerTypeList } from "./dsl/layer_types.ts";
import { LinearAttention, lightningSlopes } from "./dsl/linear_attention.ts";
import { ColumnParallelLinear, QKVParallelLinear, RowParallelLinear } from "./dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { RotaryEmbedding } from "./dsl/rotary.ts";

export type MiniMaxLayerType = "linear_attention" | "full_attention";

/** A residual mix: h = alpha · residual + beta · branch. */
export interface ResidualFactors {
  readonly alpha: number;
  readonly beta: number;
}

export interface MiniMaxConfig {
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly slidingWindow: number | undefined;
  readonly layerTypes: readonly MiniMaxLayerType[];
  readonly moe: FusedMoEOptions;
  readonly linearAttn: ResidualFactors;
  readonly fullAttn: ResidualFactors;
  readonly mlp: ResidualFactors;
}

const LAYER_TYPES = ["linear_attention", "full_attention"] as const;

function layerTypes(c: ConfigReader, numLayers: number): MiniMaxLayerType[] {
  if (c.has("layer_types")) return layerTypeList(c, numLayers, LAYER_TYPES);
  // older configs: attn_type_list, 0 = linear (lightning) attention, 1 = full attention
  const codes = c.intList("attn_type_list", { min: 0, max: 1 });
  return checkLayerTypes(c, "attn_type_list", numLayers, codes.map((t) => (t === 1 ? "full_attention" : "linear_attention")), LAYER_TYPES);
}

export function parseMiniMaxConfig(c: ConfigReader): MiniMaxConfig {
  const attention = parseAttentionSizes(c);
  const numLayers = c.int("num_hidden_layers", LAYERS);
  const act = c.optString("hidden_act") ?? "silu";
  if (act !== "silu") throw c.error("hidden_act", `is '${act}', which is not supported (expected silu)`);
  const factors = (name: string): ResidualFactors => ({
    alpha: c.optFloat(`${name}_alpha_factor`, FINITE) ?? 1,
    beta: c.optFloat(`${name}_beta_factor`, FINITE) ?? 1,
  });
  const rope = parseRope(c);
  checkRotaryDim(c, { ...rope, partialRotaryFactor: 1 }, attention.headDim);
  const numExperts = c.int("num_local_experts", EXPERTS);
  return {
    ...attention,
    numLayers,
    vocabSize: c.int("vocab_size", VOCAB),
    rmsNormEps: c.optFloat("rms_norm_eps", EPS) ?? 1e-5,
    rope,
    maxPositions: c.optInt("max_position_embeddings", POSITIONS) ?? 4096,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? false,
    slidingWindow: c.optInt("sliding_window", POSITIONS),
    layerTypes: layerTypes(c, numLayers),
    moe: {
      numExperts,
      topK: parseTopK(c, "num_experts_per_tok", numExperts),
      hiddenSize: attention.hiddenSize,
      intermediateSize: c.int("intermediate_size", WIDTH),
      routing: "softmax_topk_renorm",
    },
    linearAttn: factors("linear_attn"),
    fullAttn: factors("full_attn"),
    mlp: factors("mlp"),
  };
}

/** Lightning attention with its projections, output gate and norm (HF MiniMaxLightningAttention). */
class MiniMaxLightningAttention extends Module {
  readonly qkvProj: ColumnParallelLinear;
  readonly lightning: LinearAttention;
  readonly norm: RMSNorm;
  readonly outputGate: ColumnParallelLinear;
  readonly outProj: RowParallelLinear;
  constructor(prefix: string, cfg: MiniMaxConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    const { numHeads: heads, headDim: D, hiddenSize: H } = cfg;
    this.qkvProj = new ColumnParallelLinear(this.join("qkv_proj"), H, heads * 3 * D, ctx);
    this.lightning = new LinearAttention(this.join("attn"), heads, D, lightningSlopes(heads, layer, cfg.numLayers));
    // HF builds this norm with RMSNorm's default eps (1e-6), not rms_norm_eps
    this.norm = new RMSNorm(this.join("norm"), heads * D, 1e-6);
    this.outputGate = new ColumnParallelLinear(this.join("output_gate"), H, heads * D, ctx);
    this.outProj = new RowParallelLinear(this.join("out_proj"), heads * D, H, ctx);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const o = this.norm.forward(this.lightning.forward(this.qkvProj.forward(x).silu()));
      return this.outProj.forward(this.outputGate.forward(x).unary("sigmoid").mul(o));
    });
  }
}

class MiniMaxFullAttention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly oProj: RowParallelLinear;
  readonly rotary: RotaryEmbedding;
  readonly attn: Attention;
  constructor(prefix: string, cfg: MiniMaxConfig, ctx: ModelContext) {
    super(prefix);
    const D = cfg.headDim;
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), cfg.hiddenSize, D, cfg.numHeads, cfg.numKvHeads, ctx);
    this.oProj = new RowParallelLinear(this.join("o_proj"), cfg.numHeads * D, cfg.hiddenSize, ctx);
    this.rotary = new RotaryEmbedding(D, D, cfg.rope);
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, D ** -0.5, numKvHeads, { slidingWindow: cfg.slidingWindow });
  }

  forward(positions: Tensor, x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const { numHeads, numKvHeads } = this.qkvProj.sizes;
      const [q, k, v] = this.qkvProj.forwardQkv(x);
      const qr = this.rotary.apply(q, positions, numHeads);
      const kr = this.rotary.apply(k, positions, numKvHeads);
      return this.oProj.forward(this.attn.forward(qr, kr, v));
    });
  }
}

/** alpha · residual + beta · branch, without ops for factors of 1 */
function mix(residual: Tensor, branch: Tensor, f: ResidualFactors): Tensor {
  const r = f.alpha === 1 ? residual : residual.scale(f.alpha);
  return r.add(f.beta === 1 ? branch : branch.scale(f.beta));
}

class MiniMaxDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: MiniMaxLightningAttention | MiniMaxFullAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly blockSparseMoe: SparseMoeBlock;
  readonly attnFactors: ResidualFactors;
  readonly mlpFactors: ResidualFactors;
  constructor(prefix: string, cfg: MiniMaxConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    const linear = cfg.layerTypes[layer] === "linear_attention";
    this.inputLayernorm = new RMSNorm(this.join("input_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.selfAttn = linear ? new MiniMaxLightningAttention(this.join("self_attn"), cfg, layer, ctx) : new MiniMaxFullAttention(this.join("self_attn"), cfg, ctx);
    this.postAttentionLayernorm = new RMSNorm(this.join("post_attention_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.blockSparseMoe = new SparseMoeBlock(this.join("block_sparse_moe"), cfg.moe, ctx);
    this.attnFactors = linear ? cfg.linearAttn : cfg.fullAttn;
    this.mlpFactors = cfg.mlp;
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const x = this.inputLayernorm.forward(h);
      const attn = this.selfAttn instanceof MiniMaxLightningAttention ? this.selfAttn.forward(x) : this.selfAttn.forward(positions, x);
      const a = this.postAttentionLayernorm.forward(mix(x, attn, this.attnFactors));
      return mix(a, this.blockSparseMoe.forward(a), this.mlpFactors);
    });
  }
}

export class MiniMaxForCausalLM extends DecoderOnlyLM<MiniMaxConfig, MiniMaxDecoderLayer> {
  /** lightning layers keep per-sequence state beside the full attention layers' KV cache */
  readonly sequenceState = "hybrid";

  constructor(args: ModelArgs) {
    const cfg = parseMiniMaxConfig(args.config);
    super(cfg, { numLayers: cfg.numLayers, normEps: cfg.rmsNormEps }, (prefix, i) => new MiniMaxDecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    // the lightning layers' decay buffers are recomputed from the config (lightningSlopes)
    const skip = [/rotary_emb\.inv_freq$/, /self_attn\.(slope_rate|query_decay|key_decay|diagonal_decay)$/];
    if (this.cfg.tieWordEmbeddings) skip.push(/^lm_head\.weight$/);
    const stacked = [...LLAMA_STACKED, ...FusedMoE.expertParamsMapping(this.cfg.moe.numExperts, MIXTRAL_EXPERT_NAMES)];
    return loadWeights(this, source, { stacked, skip });
  }
}
