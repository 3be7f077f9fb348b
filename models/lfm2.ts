/**
 * LFM2 (Liquid): a hybrid of gated short-convolution layers and GQA attention layers, each
 * followed by a SwiGLU MLP. The conv layers are mamba-like: a fixed-size state per sequence.
 *
 *   per layer: h = h + mixer(rmsnorm(h))
 *     conv:      B, C, x = in_proj(h)            // [T, 3H] → 3 × [T, H]
 *                out_proj(C · conv(B · x))       // causal depthwise conv, kernel L_cache
 *     attention: out_proj(attn(rope(qnorm(q)), rope(knorm(k)), v))
 *              h = h + w2(silu(w1) · w3)         of rmsnorm(h)
 *   logits = lm_head(embedding_norm(h[last rows]))   // "embedding_norm" is the final norm
 */
import type { Tensor } from "../compiler/trace.ts";
import { CONV_KERNEL, describeRange, EPS, inRange, LAYERS, layerIndex, POSITIONS, POSITIVE, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { checkRotaryDim, parseRope, type RopeConfig } from "./rope_config.ts";
import { Attention } from "./dsl/attention.ts";
import { HF_ATTENTION_KEYS, parseAttentionSizes } from "./dsl/attention_sizes.ts";
import { layerTypeList } from "./dsl/layer_types.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear, ColumnParallelLinear } from "./dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type StackedParam, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { RotaryEmbedding } from "./dsl/rotary.ts";
import { CausalShortConv } from "./dsl/short_conv.ts";

export type Lfm2LayerType = "conv" | "full_attention";

export interface Lfm2Config {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly normEps: number;
  readonly rope: RopeConfig;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly convKernel: number;
  readonly convBias: boolean;
  readonly layerTypes: readonly Lfm2LayerType[];
}

/** HF's Lfm2MLP sizing: with block_auto_adjust_ff_dim, 2/3 of the size, scaled, rounded up to a multiple. */
function ffDim(c: ConfigReader): number {
  let size = c.int("intermediate_size", WIDTH);
  if (!(c.optBool("block_auto_adjust_ff_dim") ?? false)) return size;
  size = Math.floor((2 * size) / 3);
  const multiplier = c.optFloat("block_ffn_dim_multiplier", POSITIVE);
  if (multiplier !== undefined) {
    size = Math.floor(multiplier * size);
    const multipleOf = c.optInt("block_multiple_of", WIDTH) ?? 256;
    size = multipleOf * Math.ceil(size / multipleOf);
  }
  if (!inRange(size, WIDTH)) throw c.error("intermediate_size", `adjusted by block_ffn_dim_multiplier and block_multiple_of gives ${size}, outside ${describeRange(WIDTH)}`);
  return size;
}

const LAYER_TYPES = ["conv", "full_attention"] as const;

function layerTypes(c: ConfigReader, numLayers: number): Lfm2LayerType[] {
  if (c.has("layer_types")) return layerTypeList(c, numLayers, LAYER_TYPES);
  const attn = c.intList("full_attn_idxs", layerIndex(numLayers)); // older configs list the attention layers instead
  return Array.from({ length: numLayers }, (_, i) => (attn.includes(i) ? "full_attention" : "conv"));
}

export function parseLfm2Config(c: ConfigReader): Lfm2Config {
  const attention = parseAttentionSizes(c, { ...HF_ATTENTION_KEYS, headDim: undefined });
  const numLayers = c.int("num_hidden_layers", LAYERS);
  const rope = parseRope(c);
  checkRotaryDim(c, { ...rope, partialRotaryFactor: 1 }, attention.headDim, "num_attention_heads");
  return {
    ...attention,
    intermediateSize: ffDim(c),
    numLayers,
    vocabSize: c.int("vocab_size", VOCAB),
    normEps: c.optFloat("norm_eps", EPS) ?? 1e-5,
    rope,
    maxPositions: c.optInt("max_position_embeddings", POSITIONS) ?? 128000,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? c.optBool("tie_embedding") ?? true,
    convKernel: c.int("conv_L_cache", CONV_KERNEL),
    convBias: c.optBool("conv_bias") ?? false,
    layerTypes: layerTypes(c, numLayers),
  };
}

/** The gated short convolution: out_proj(C · conv(B · x)) with B, C, x from one in_proj. */
class Lfm2ShortConv extends Module {
  readonly inProj: ColumnParallelLinear;
  readonly conv: CausalShortConv;
  readonly outProj: RowParallelLinear;
  constructor(prefix: string, cfg: Lfm2Config, ctx: ModelContext) {
    super(prefix);
    const H = cfg.hiddenSize;
    this.inProj = new ColumnParallelLinear(this.join("in_proj"), H, 3 * H, ctx, { bias: cfg.convBias });
    this.conv = new CausalShortConv(this.join("conv"), H, cfg.convKernel, { bias: cfg.convBias });
    this.outProj = new RowParallelLinear(this.join("out_proj"), H, H, ctx, { bias: cfg.convBias });
  }

  forward(h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const H = this.conv.dim;
      const [b, c, x] = this.inProj.forward(h).split([H, H, H]);
      return this.outProj.forward(c!.mul(this.conv.forward(b!.mul(x!))));
    });
  }
}

class Lfm2Attention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly outProj: RowParallelLinear;
  readonly qLayernorm: RMSNorm;
  readonly kLayernorm: RMSNorm;
  readonly rotary: RotaryEmbedding;
  readonly attn: Attention;
  constructor(prefix: string, cfg: Lfm2Config, ctx: ModelContext) {
    super(prefix);
    const D = cfg.headDim;
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), cfg.hiddenSize, D, cfg.numHeads, cfg.numKvHeads, ctx);
    this.outProj = new RowParallelLinear(this.join("out_proj"), cfg.numHeads * D, cfg.hiddenSize, ctx);
    this.qLayernorm = new RMSNorm(this.join("q_layernorm"), D, cfg.normEps);
    this.kLayernorm = new RMSNorm(this.join("k_layernorm"), D, cfg.normEps);
    this.rotary = new RotaryEmbedding(D, D, cfg.rope);
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, D ** -0.5, numKvHeads);
  }

  forward(positions: Tensor, x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const { numHeads, numKvHeads } = this.qkvProj.sizes;
      const [q, k, v] = this.qkvProj.forwardQkv(x);
      const qr = this.rotary.apply(this.qLayernorm.forward(q), positions, numHeads);
      const kr = this.rotary.apply(this.kLayernorm.forward(k), positions, numKvHeads);
      return this.outProj.forward(this.attn.forward(qr, kr, v));
    });
  }
}

/** SwiGLU with LFM2's names: w1 (gate) and w3 (up) stacked as gate_up_proj, w2 (down). */
class Lfm2MLP extends Module {
  readonly gateUpProj: MergedColumnParallelLinear;
  readonly w2: RowParallelLinear;
  constructor(prefix: string, cfg: Lfm2Config, ctx: ModelContext) {
    super(prefix);
    const I = cfg.intermediateSize;
    this.gateUpProj = new MergedColumnParallelLinear(this.join("gate_up_proj"), cfg.hiddenSize, [I, I], ctx);
    this.w2 = new RowParallelLinear(this.join("w2"), I, cfg.hiddenSize, ctx);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const per = this.gateUpProj.sizesPerRank[0]!;
      const [gate, up] = this.gateUpProj.forward(x).split([per, per]);
      return this.w2.forward(gate!.silu().mul(up!));
    });
  }
}

class Lfm2DecoderLayer extends Module {
  readonly operatorNorm: RMSNorm;
  readonly mixer: Lfm2ShortConv | Lfm2Attention;
  readonly ffnNorm: RMSNorm;
  readonly feedForward: Lfm2MLP;
  constructor(prefix: string, cfg: Lfm2Config, layer: number, ctx: ModelContext) {
    super(prefix);
    this.operatorNorm = new RMSNorm(this.join("operator_norm"), cfg.hiddenSize, cfg.normEps);
    this.mixer =
      cfg.layerTypes[layer] === "conv" ? new Lfm2ShortConv(this.join("conv"), cfg, ctx) : new Lfm2Attention(this.join("self_attn"), cfg, ctx);
    this.ffnNorm = new RMSNorm(this.join("ffn_norm"), cfg.hiddenSize, cfg.normEps);
    this.feedForward = new Lfm2MLP(this.join("feed_forward"), cfg, ctx);
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const x = this.operatorNorm.forward(h);
      const mixed = this.mixer instanceof Lfm2ShortConv ? this.mixer.forward(x) : this.mixer.forward(positions, x);
      const a = h.add(mixed);
      return a.add(this.feedForward.forward(this.ffnNorm.forward(a)));
    });
  }
}

const LFM2_STACKED: readonly StackedParam[] = [
  ...LLAMA_STACKED,
  { param: ".gate_up_proj.", checkpoint: ".w1.", shard: "0" },
  { param: ".gate_up_proj.", checkpoint: ".w3.", shard: "1" },
];

export class Lfm2ForCausalLM extends DecoderOnlyLM<Lfm2Config, Lfm2DecoderLayer> {
  /** conv layers keep per-sequence state beside the attention layers' KV cache */
  readonly sequenceState = "hybrid";

  constructor(args: ModelArgs) {
    const cfg = parseLfm2Config(args.config);
    // LFM2 calls its final norm "embedding_norm"
    const sizes = { numLayers: cfg.numLayers, normEps: cfg.normEps, normName: "embedding_norm" };
    super(cfg, sizes, (prefix, i) => new Lfm2DecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, { stacked: LFM2_STACKED, skip: [/rotary_emb\.inv_freq$/, ...this.tiedSkips()] });
  }
}
