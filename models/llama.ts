/**
 * The Llama family: Llama, Mistral, Qwen2 and Qwen3 share one decoder; they differ in config
 * data (biases, per-head q/k norm, sliding windows, tied heads), captured in `LlamaVariant`.
 *
 *   h = embed(ids)                                  // [T, H]
 *   per layer: h = h + o(attn(rope(q), rope(k), v))  of rmsnorm(h)
 *              h = h + down(silu(gate) * up)         of rmsnorm(h)
 *   logits = lm_head(rmsnorm(h[last rows]))          // [S, V]
 */
import type { UnaryOp } from "../compiler/ir.ts";
import type { Tensor } from "../compiler/trace.ts";
import { EPS, LAYERS, POSITIONS, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { checkRotaryDim, parseRope, rotaryDimOf, type RopeConfig } from "./rope_config.ts";
import { Attention } from "./dsl/attention.ts";
import { parseAttentionSizes } from "./dsl/attention_sizes.ts";
import { layerTypeList } from "./dsl/layer_types.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear } from "./dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { RotaryEmbedding } from "./dsl/rotary.ts";

export interface LlamaConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly qkvBias: boolean;
  readonly oBias: boolean;
  readonly mlpBias: boolean;
  readonly qkNorm: boolean;
  /** per layer: the sliding window, or undefined for full attention */
  readonly slidingWindows: readonly (number | undefined)[];
}

/** How one member of the family reads its config. */
export interface LlamaVariant {
  readonly qkvBias: (c: ConfigReader) => boolean;
  readonly qkNorm: boolean;
}

const LAYER_TYPES = ["full_attention", "sliding_attention"] as const;

function slidingWindows(c: ConfigReader, numLayers: number): (number | undefined)[] {
  const window = c.optInt("sliding_window", POSITIONS);
  if (c.has("layer_types")) {
    return layerTypeList(c, numLayers, LAYER_TYPES).map((t) => (t === "sliding_attention" ? window : undefined));
  }
  // older Qwen2 spelling: sliding window only when enabled, from layer max_window_layers on
  if (c.has("use_sliding_window")) {
    const on = c.optBool("use_sliding_window") ?? false;
    const from = c.optInt("max_window_layers", { min: 0, max: LAYERS.max }) ?? 0;
    return Array.from({ length: numLayers }, (_, i) => (on && i >= from ? window : undefined));
  }
  return Array.from({ length: numLayers }, () => window);
}

export function parseLlamaConfig(c: ConfigReader, variant: LlamaVariant): LlamaConfig {
  const attention = parseAttentionSizes(c);
  const numLayers = c.int("num_hidden_layers", LAYERS);
  const act = c.optString("hidden_act") ?? "silu";
  if (act !== "silu") throw c.error("hidden_act", `is '${act}', which is not supported (expected silu)`);
  const rope = parseRope(c);
  checkRotaryDim(c, rope, attention.headDim);
  return {
    ...attention,
    intermediateSize: c.int("intermediate_size", WIDTH),
    numLayers,
    vocabSize: c.int("vocab_size", VOCAB),
    rmsNormEps: c.optFloat("rms_norm_eps", EPS) ?? 1e-6,
    rope,
    maxPositions: c.optInt("max_position_embeddings", POSITIONS) ?? 2048,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? false,
    qkvBias: variant.qkvBias(c),
    oBias: c.optBool("attention_bias") ?? false,
    mlpBias: c.optBool("mlp_bias") ?? false,
    qkNorm: variant.qkNorm,
    slidingWindows: slidingWindows(c, numLayers),
  };
}

/** One attention layer of the Llama shape, as plain sizes and switches (Gemma builds one too). */
export interface LlamaAttentionSpec {
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly qkvBias: boolean;
  readonly oBias: boolean;
  /** per-head RMS norms of q and k (Qwen3, Gemma 3): their eps, and the offset their weights scale by */
  readonly qkNorm: { readonly eps: number; readonly weightOffset: number } | undefined;
  readonly rope: RopeConfig;
  /** the leading dims of each head the rotary turns (partial rotary when < headDim) */
  readonly rotaryDim: number;
  readonly scale: number;
  readonly slidingWindow: number | undefined;
  readonly softcap: number | undefined;
}

/** Layer `layer`'s attention in a Llama-family config. */
export function llamaAttentionSpec(cfg: LlamaConfig, layer: number): LlamaAttentionSpec {
  return {
    hiddenSize: cfg.hiddenSize,
    numHeads: cfg.numHeads,
    numKvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    qkvBias: cfg.qkvBias,
    oBias: cfg.oBias,
    qkNorm: cfg.qkNorm ? { eps: cfg.rmsNormEps, weightOffset: 0 } : undefined,
    rope: cfg.rope,
    rotaryDim: rotaryDimOf(cfg.rope, cfg.headDim),
    scale: cfg.headDim ** -0.5,
    slidingWindow: cfg.slidingWindows[layer],
    softcap: undefined,
  };
}

export class LlamaAttention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly oProj: RowParallelLinear;
  readonly qNorm: RMSNorm | undefined;
  readonly kNorm: RMSNorm | undefined;
  readonly rotary: RotaryEmbedding;
  readonly attn: Attention;

  constructor(prefix: string, spec: LlamaAttentionSpec, ctx: ModelContext) {
    super(prefix);
    const D = spec.headDim;
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), spec.hiddenSize, D, spec.numHeads, spec.numKvHeads, ctx, {
      bias: spec.qkvBias,
    });
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.oProj = new RowParallelLinear(this.join("o_proj"), spec.numHeads * D, spec.hiddenSize, ctx, { bias: spec.oBias });
    const norm = spec.qkNorm;
    this.qNorm = norm ? new RMSNorm(this.join("q_norm"), D, norm.eps, { weightOffset: norm.weightOffset }) : undefined;
    this.kNorm = norm ? new RMSNorm(this.join("k_norm"), D, norm.eps, { weightOffset: norm.weightOffset }) : undefined;
    this.rotary = new RotaryEmbedding(D, spec.rotaryDim, spec.rope); // partial rotary: only the first dims turn
    this.attn = new Attention(this.join("attn"), numHeads, D, spec.scale, numKvHeads, {
      slidingWindow: spec.slidingWindow,
      softcap: spec.softcap,
    });
  }

  forward(positions: Tensor, x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const { numHeads, numKvHeads } = this.qkvProj.sizes;
      const [q0, k0, v] = this.qkvProj.forwardQkv(x);
      let q = q0;
      let k = k0;
      if (this.qNorm && this.kNorm) {
        q = this.qNorm.forward(q);
        k = this.kNorm.forward(k);
      }
      q = this.rotary.apply(q, positions, numHeads);
      k = this.rotary.apply(k, positions, numKvHeads);
      return this.oProj.forward(this.attn.forward(q, k, v));
    });
  }
}

/** A gated MLP: down(act(gate) · up), gate and up stacked as gate_up_proj; SwiGLU (act = silu) unless told. */
export class LlamaMLP extends Module {
  readonly gateUpProj: MergedColumnParallelLinear;
  readonly downProj: RowParallelLinear;
  readonly act: UnaryOp;
  constructor(
    prefix: string,
    cfg: Pick<LlamaConfig, "hiddenSize" | "intermediateSize"> & { readonly mlpBias?: boolean; readonly act?: UnaryOp },
    ctx: ModelContext,
  ) {
    super(prefix);
    const I = cfg.intermediateSize;
    const bias = cfg.mlpBias ?? false;
    this.act = cfg.act ?? "silu";
    this.gateUpProj = new MergedColumnParallelLinear(this.join("gate_up_proj"), cfg.hiddenSize, [I, I], ctx, { bias });
    this.downProj = new RowParallelLinear(this.join("down_proj"), I, cfg.hiddenSize, ctx, { bias });
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const per = this.gateUpProj.sizesPerRank[0]!;
      const [gate, up] = this.gateUpProj.forward(x).split([per, per]);
      return this.downProj.forward(gate!.unary(this.act).mul(up!));
    });
  }
}

class LlamaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: LlamaMLP;
  constructor(prefix: string, cfg: LlamaConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    this.inputLayernorm = new RMSNorm(this.join("input_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.selfAttn = new LlamaAttention(this.join("self_attn"), llamaAttentionSpec(cfg, layer), ctx);
    this.postAttentionLayernorm = new RMSNorm(this.join("post_attention_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.mlp = new LlamaMLP(this.join("mlp"), cfg, ctx);
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.selfAttn.forward(positions, this.inputLayernorm.forward(h)));
      return a.add(this.mlp.forward(this.postAttentionLayernorm.forward(a)));
    });
  }
}

export abstract class LlamaFamilyForCausalLM extends DecoderOnlyLM<LlamaConfig, LlamaDecoderLayer> {
  readonly sequenceState = "attention";

  constructor(args: ModelArgs, variant: LlamaVariant) {
    const cfg = parseLlamaConfig(args.config, variant);
    super(cfg, { numLayers: cfg.numLayers, normEps: cfg.rmsNormEps }, (prefix, i) => new LlamaDecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, { stacked: LLAMA_STACKED, skip: [/rotary_emb\.inv_freq$/, ...this.tiedSkips()] });
  }
}

export class LlamaForCausalLM extends LlamaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, { qkvBias: (c) => c.optBool("attention_bias") ?? false, qkNorm: false });
  }
}

export class MistralForCausalLM extends LlamaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, { qkvBias: () => false, qkNorm: false });
  }
}

/** Qwen2 always has q/k/v biases (and none on o_proj). */
export class Qwen2ForCausalLM extends LlamaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, { qkvBias: () => true, qkNorm: false });
  }
}

/** Qwen3 drops the q/k/v biases and normalizes q and k per head. */
export class Qwen3ForCausalLM extends LlamaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, { qkvBias: (c) => c.optBool("attention_bias") ?? false, qkNorm: true });
  }
}
