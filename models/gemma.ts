/**
 * Gemma 2 and Gemma 3 (text): Llama-like decoders with interleaved local (sliding-window) and
 * global attention layers, GeGLU MLPs, and Gemma's own habits, all as config data here:
 *
 *   h = embed(ids) · sqrt(H)                       // the scale rounded to f32, as HF does
 *   per layer: h = h + post_attention_norm(o(attn(rope(q), rope(k), v)))     of input_norm(h)
 *              h = h + post_feedforward_norm(down(gelu_tanh(gate) · up))     of pre_feedforward_norm(h)
 *   logits = softcap(lm_head(norm(h[last rows])))  // [S, V]
 *
 * Every RMS norm scales by (1 + w). Scores are scaled by query_pre_attn_scalar^-0.5, not
 * head_dim^-0.5. Gemma 2 soft-caps attention scores and the final logits (cap · tanh(x / cap));
 * Gemma 3 drops the caps, normalizes q and k per head, and gives local and global layers their
 * own rotary bases (5 local : 1 global by default).
 */
import type { UnaryOp } from "../compiler/ir.ts";
import type { Tensor } from "../compiler/trace.ts";
import { KilnError } from "../runtime/engine/errors.ts";
import { EPS, LAYERS, POSITIONS, POSITIVE, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { parseRope, type RopeConfig } from "./rope_config.ts";
import { parseActivation } from "./dsl/activation.ts";
import { parseAttentionSizes } from "./dsl/attention_sizes.ts";
import { layerTypeList } from "./dsl/layer_types.ts";
import type { ModelArgs, ModelInputs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { LlamaAttention, LlamaMLP, type LlamaAttentionSpec } from "./llama.ts";

/** Gemma's RMS norms scale by (1 + w). */
const GEMMA_NORM = { weightOffset: 1 } as const;

export type GemmaLayerType = "sliding_attention" | "full_attention";

export interface GemmaLayerSpec {
  readonly type: GemmaLayerType;
  /** the window of a sliding layer; undefined for full attention */
  readonly slidingWindow: number | undefined;
  readonly rope: RopeConfig;
}

export interface GemmaConfig {
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
  readonly attentionBias: boolean;
  readonly act: UnaryOp;
  /** scores are scaled by queryPreAttnScalar^-0.5 */
  readonly queryPreAttnScalar: number;
  readonly attnSoftcap: number | undefined;
  readonly finalSoftcap: number | undefined;
  readonly qkNorm: boolean;
  readonly layers: readonly GemmaLayerSpec[];
}

/** How one generation of Gemma reads the parts of its config that differ. */
interface GemmaVariant {
  readonly qkNorm: boolean;
  /** the HF config class's defaults for absent soft-cap fields */
  readonly softcapDefaults: { readonly attn: number | undefined; readonly final: number | undefined };
  /** layer i's type when the config has no `layer_types` list */
  readonly defaultLayerType: (c: ConfigReader, layer: number) => GemmaLayerType;
  readonly rope: (c: ConfigReader, type: GemmaLayerType) => RopeConfig;
}

const LAYER_TYPES = ["sliding_attention", "full_attention"] as const;

function layerTypes(c: ConfigReader, numLayers: number, variant: GemmaVariant): GemmaLayerType[] {
  if (!c.has("layer_types")) return Array.from({ length: numLayers }, (_, i) => variant.defaultLayerType(c, i));
  return layerTypeList(c, numLayers, LAYER_TYPES);
}

/**
 * A positive cap, or null (no cap); 0 also means no cap, as HF's `if softcap:` reads it. An absent
 * field takes the architecture's default, as the HF config class would fill it in.
 */
function softcapOf(c: ConfigReader, key: string, fallback: number | undefined): number | undefined {
  if (!Object.hasOwn(c.raw, key)) return fallback;
  const v = c.optFloat(key, { min: 0, max: Number.MAX_VALUE });
  return v === 0 ? undefined : v;
}

export function parseGemmaConfig(c: ConfigReader, variant: GemmaVariant): GemmaConfig {
  const attention = parseAttentionSizes(c);
  const numLayers = c.int("num_hidden_layers", LAYERS);
  const types = layerTypes(c, numLayers, variant);
  // EmbeddingGemma's encoder sets it; a causal LM with a KV cache cannot attend forward
  if (c.optBool("use_bidirectional_attention") === true) throw c.error("use_bidirectional_attention", "is true; only causal attention is supported");
  const window = c.optInt("sliding_window", POSITIONS) ?? 4096;
  // every layer turns its whole head (no partial rotary in Gemma)
  if (attention.headDim % 2 !== 0) throw c.error("head_dim", `is ${attention.headDim}; rotary embedding needs an even head dim`);
  return {
    ...attention,
    intermediateSize: c.int("intermediate_size", WIDTH),
    numLayers,
    vocabSize: c.int("vocab_size", VOCAB),
    rmsNormEps: c.optFloat("rms_norm_eps", EPS) ?? 1e-6,
    maxPositions: c.optInt("max_position_embeddings", POSITIONS) ?? 8192,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? true,
    attentionBias: c.optBool("attention_bias") ?? false,
    // Gemma 2/3 name it hidden_activation; configs converted from Gemma 1 may carry hidden_act
    act: parseActivation(c, ["hidden_activation", "hidden_act"], "gelu_pytorch_tanh"),
    queryPreAttnScalar: c.optFloat("query_pre_attn_scalar", POSITIVE) ?? 256,
    attnSoftcap: softcapOf(c, "attn_logit_softcapping", variant.softcapDefaults.attn),
    finalSoftcap: softcapOf(c, "final_logit_softcapping", variant.softcapDefaults.final),
    qkNorm: variant.qkNorm,
    layers: types.map((type) => ({
      type,
      slidingWindow: type === "sliding_attention" ? window : undefined,
      rope: variant.rope(c, type),
    })),
  };
}

/** A layer's attention: Llama's, with Gemma's (1 + w) q/k norms, query_pre_attn_scalar, soft-cap, and the layer's window and rotary. */
function gemmaAttentionSpec(cfg: GemmaConfig, layer: GemmaLayerSpec): LlamaAttentionSpec {
  return {
    hiddenSize: cfg.hiddenSize,
    numHeads: cfg.numHeads,
    numKvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    qkvBias: cfg.attentionBias,
    oBias: cfg.attentionBias,
    qkNorm: cfg.qkNorm ? { eps: cfg.rmsNormEps, weightOffset: GEMMA_NORM.weightOffset } : undefined,
    rope: layer.rope,
    rotaryDim: cfg.headDim,
    scale: cfg.queryPreAttnScalar ** -0.5,
    slidingWindow: layer.slidingWindow,
    softcap: cfg.attnSoftcap,
  };
}

/** Sandwich norms: each sublayer's output is normalized again before the residual add. */
class GemmaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly preFeedforwardLayernorm: RMSNorm;
  readonly mlp: LlamaMLP;
  readonly postFeedforwardLayernorm: RMSNorm;

  constructor(prefix: string, cfg: GemmaConfig, layer: GemmaLayerSpec, ctx: ModelContext) {
    super(prefix);
    const norm = (name: string): RMSNorm => new RMSNorm(this.join(name), cfg.hiddenSize, cfg.rmsNormEps, GEMMA_NORM);
    this.inputLayernorm = norm("input_layernorm");
    this.selfAttn = new LlamaAttention(this.join("self_attn"), gemmaAttentionSpec(cfg, layer), ctx);
    this.postAttentionLayernorm = norm("post_attention_layernorm");
    this.preFeedforwardLayernorm = norm("pre_feedforward_layernorm");
    this.mlp = new LlamaMLP(this.join("mlp"), cfg, ctx);
    this.postFeedforwardLayernorm = norm("post_feedforward_layernorm");
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const attn = this.selfAttn.forward(positions, this.inputLayernorm.forward(h));
      const a = h.add(this.postAttentionLayernorm.forward(attn));
      const mlp = this.mlp.forward(this.preFeedforwardLayernorm.forward(a));
      return a.add(this.postFeedforwardLayernorm.forward(mlp));
    });
  }
}

abstract class GemmaFamilyForCausalLM extends DecoderOnlyLM<GemmaConfig, GemmaDecoderLayer> {
  readonly sequenceState = "attention";

  constructor(args: ModelArgs, variant: GemmaVariant) {
    const cfg = parseGemmaConfig(args.config, variant);
    const sizes = {
      numLayers: cfg.numLayers,
      normEps: cfg.rmsNormEps,
      normWeightOffset: GEMMA_NORM.weightOffset,
      // HF multiplies by torch.tensor(hidden_size ** 0.5) in the activations' dtype (f32)
      embedScale: Math.fround(Math.sqrt(cfg.hiddenSize)),
    };
    const layer = (prefix: string, i: number): GemmaDecoderLayer => {
      const spec = cfg.layers[i];
      if (!spec) throw new KilnError("CONFIG_INVALID", `${args.config.path}: no layer type for layer ${i}`);
      return new GemmaDecoderLayer(prefix, cfg, spec, args.ctx);
    };
    super(cfg, sizes, layer, args.ctx);
  }

  override forward(inputs: ModelInputs): Tensor {
    const logits = super.forward(inputs);
    return this.cfg.finalSoftcap === undefined ? logits : logits.softcap(this.cfg.finalSoftcap);
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, { stacked: LLAMA_STACKED, skip: [/rotary_emb\.inv_freq$/, ...this.tiedSkips()] });
  }
}

/** Gemma 2: local and global layers alternate, starting with a local one. */
const GEMMA2: GemmaVariant = {
  qkNorm: false,
  softcapDefaults: { attn: 50, final: 30 },
  defaultLayerType: (_c, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"),
  rope: (c, type) => parseRope(c, type),
};

/** Gemma 3's default for configs that predate `rope_parameters` and lack `rope_theta`. */
const GEMMA3_GLOBAL_THETA = 1_000_000;
const GEMMA3_LOCAL_THETA = 10_000;

/**
 * Gemma 3's rotary settings per layer type. transformers 5 nests them in `rope_parameters`
 * ({ full_attention: {...}, sliding_attention: {...} }); older configs give the global layers
 * `rope_theta` + `rope_scaling` and the local layers only `rope_local_base_freq` (never scaled).
 */
function gemma3Rope(c: ConfigReader, type: GemmaLayerType): RopeConfig {
  if (c.has("rope_parameters")) return parseRope(c, type);
  if (type === "full_attention") {
    const global = parseRope(c);
    return c.has("rope_theta") ? global : { ...global, theta: GEMMA3_GLOBAL_THETA };
  }
  const theta = c.optFloat("rope_local_base_freq", POSITIVE) ?? GEMMA3_LOCAL_THETA;
  return { theta, scaling: { type: "default" }, partialRotaryFactor: 1 };
}

/** Gemma 3: every `sliding_window_pattern`-th layer is global (default 6: 5 local : 1 global). */
const GEMMA3: GemmaVariant = {
  qkNorm: true,
  softcapDefaults: { attn: undefined, final: undefined },
  defaultLayerType: (c, i) => {
    const key = c.has("sliding_window_pattern") ? "sliding_window_pattern" : "_sliding_window_pattern";
    const pattern = c.optInt(key, LAYERS) ?? 6;
    return (i + 1) % pattern === 0 ? "full_attention" : "sliding_attention";
  },
  rope: gemma3Rope,
};

export class Gemma2ForCausalLM extends GemmaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, GEMMA2);
  }
}

export class Gemma3ForCausalLM extends GemmaFamilyForCausalLM {
  constructor(args: ModelArgs) {
    super(args, GEMMA3);
  }
}
