/**
 * Jamba (AI21): a hybrid of Mamba-1 mixers and GQA attention layers without any positional
 * encoding, each followed by a dense SwiGLU MLP or a sparse MoE block.
 *
 *   layer i mixes with attention when i % attn_layer_period == attn_layer_offset, else Mamba-1
 *   (with RMS norms on dt, B and C); its feed-forward is MoE when
 *   i % expert_layer_period == expert_layer_offset, else dense.
 *
 *   per layer: h = h + mixer(input_layernorm(h))
 *              h = h + feed_forward(pre_ff_layernorm(h))
 *   logits = lm_head(final_layernorm(h[last rows]))
 *
 * The router picks the top-k of the softmax and keeps those probabilities as they are
 * (no renormalization).
 */
import type { Tensor } from "../compiler/trace.ts";
import { CONV_KERNEL, EPS, EXPERTS, FACTOR, LAYERS, POSITIONS, STATE_SIZE, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { Attention } from "./dsl/attention.ts";
import { HF_ATTENTION_KEYS, parseAttentionSizes } from "./dsl/attention_sizes.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { FusedMoE, parseTopK, SparseMoeBlock, type SparseMoeBlockOptions } from "./dsl/fused_moe.ts";
import { QKVParallelLinear, RowParallelLinear } from "./dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { MambaMixer, parseDtRank, type MambaMixerOptions } from "./dsl/mamba.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { LlamaMLP } from "./llama.ts";

export interface JambaConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly mamba: MambaMixerOptions;
  readonly moe: SparseMoeBlockOptions;
  /** per layer: attention (true) or Mamba (false) */
  readonly attentionLayers: readonly boolean[];
  /** per layer: a sparse MoE block (true) or the dense MLP (false) */
  readonly expertLayers: readonly boolean[];
}

/** Layer i is chosen when i % period == offset (`<name>_period`, `<name>_offset`). */
function everyPeriod(c: ConfigReader, name: string, numLayers: number, defaults: { period: number; offset: number }): boolean[] {
  const period = c.optInt(`${name}_period`, LAYERS) ?? defaults.period;
  const offset = c.optInt(`${name}_offset`, { min: 0, max: period - 1 }) ?? defaults.offset;
  return Array.from({ length: numLayers }, (_, i) => i % period === offset);
}

export function parseJambaConfig(c: ConfigReader): JambaConfig {
  const attention = parseAttentionSizes(c, { ...HF_ATTENTION_KEYS, headDim: undefined });
  const { hiddenSize } = attention;
  const numLayers = c.int("num_hidden_layers", LAYERS);
  const intermediateSize = c.int("intermediate_size", WIDTH);
  const rmsNormEps = c.optFloat("rms_norm_eps", EPS) ?? 1e-6;
  const numExperts = c.optInt("num_experts", EXPERTS) ?? 16;
  return {
    ...attention,
    intermediateSize,
    numLayers,
    vocabSize: c.int("vocab_size", VOCAB),
    rmsNormEps,
    maxPositions: c.optInt("max_position_embeddings", POSITIONS) ?? 262144,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? false,
    mamba: {
      hiddenSize,
      intermediateSize: (c.optInt("mamba_expand", FACTOR) ?? 2) * hiddenSize,
      stateSize: c.optInt("mamba_d_state", STATE_SIZE) ?? 16,
      convKernel: c.optInt("mamba_d_conv", CONV_KERNEL) ?? 4,
      dtRank: parseDtRank(c, "mamba_dt_rank", hiddenSize),
      convBias: c.optBool("mamba_conv_bias") ?? true,
      projBias: c.optBool("mamba_proj_bias") ?? false,
      innerNormEps: rmsNormEps,
    },
    moe: {
      numExperts,
      topK: parseTopK(c, "num_experts_per_tok", numExperts, 2),
      hiddenSize,
      intermediateSize,
      routing: "softmax_topk",
      routerName: "router",
    },
    attentionLayers: everyPeriod(c, "attn_layer", numLayers, { period: 8, offset: 4 }),
    expertLayers: everyPeriod(c, "expert_layer", numLayers, { period: 2, offset: 1 }),
  };
}

/** GQA attention with no positional encoding at all. */
class JambaAttention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly oProj: RowParallelLinear;
  readonly attn: Attention;
  constructor(prefix: string, cfg: JambaConfig, ctx: ModelContext) {
    super(prefix);
    const D = cfg.headDim;
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), cfg.hiddenSize, D, cfg.numHeads, cfg.numKvHeads, ctx);
    this.oProj = new RowParallelLinear(this.join("o_proj"), cfg.numHeads * D, cfg.hiddenSize, ctx);
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, D ** -0.5, numKvHeads);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const [q, k, v] = this.qkvProj.forwardQkv(x);
      return this.oProj.forward(this.attn.forward(q, k, v));
    });
  }
}

class JambaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly mixer: JambaAttention | MambaMixer;
  readonly preFfLayernorm: RMSNorm;
  readonly feedForward: SparseMoeBlock | LlamaMLP;
  constructor(prefix: string, cfg: JambaConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    this.inputLayernorm = new RMSNorm(this.join("input_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.mixer = cfg.attentionLayers[layer] ? new JambaAttention(this.join("self_attn"), cfg, ctx) : new MambaMixer(this.join("mamba"), cfg.mamba, ctx);
    this.preFfLayernorm = new RMSNorm(this.join("pre_ff_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.feedForward = cfg.expertLayers[layer] ? new SparseMoeBlock(this.join("feed_forward"), cfg.moe, ctx) : new LlamaMLP(this.join("feed_forward"), cfg, ctx);
  }

  /** positions are unused: Jamba's attention has no positional encoding */
  forward(_positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.mixer.forward(this.inputLayernorm.forward(h)));
      return a.add(this.feedForward.forward(this.preFfLayernorm.forward(a)));
    });
  }
}

export class JambaForCausalLM extends DecoderOnlyLM<JambaConfig, JambaDecoderLayer> {
  readonly sequenceState = "hybrid";

  constructor(args: ModelArgs) {
    const cfg = parseJambaConfig(args.config);
    const sizes = { numLayers: cfg.numLayers, normEps: cfg.rmsNormEps, normName: "final_layernorm" };
    super(cfg, sizes, (prefix, i) => new JambaDecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    const stacked = [...LLAMA_STACKED, ...FusedMoE.expertParamsMapping(this.cfg.moe.numExperts)];
    return loadWeights(this, source, { stacked, skip: this.tiedSkips() });
  }
}
