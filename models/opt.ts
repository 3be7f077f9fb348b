/**
 * OPT (Meta's Open Pre-trained Transformers): a pre-LayerNorm decoder with learned absolute
 * positions, multi-head attention and a ReLU MLP, biases everywhere, under `model.decoder.`.
 *
 *   h = embed_tokens(ids) + embed_positions(positions)     // [T, H]; position p is table row p + 2
 *   per layer: h = h + out_proj(attn(q, k, v))            of self_attn_layer_norm(h)
 *              h = h + fc2(relu(fc1(x)))                  x = final_layer_norm(h)
 *   logits = lm_head(final_layer_norm(h[last rows]))      // [S, V], tied to embed_tokens
 *
 * The post-norm layout of OPT-350m (`do_layer_norm_before: false`) and its 512 → 1024
 * projections (`word_embed_proj_dim`) are refused with CONFIG_INVALID rather than guessed.
 */
import type { UnaryOp } from "../compiler/ir.ts";
import type { Tensor } from "../compiler/trace.ts";
import { LAYERS, POSITIONS, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { parseActivation } from "./dsl/activation.ts";
import { Attention } from "./dsl/attention.ts";
import { HF_ATTENTION_KEYS, parseAttentionSizes } from "./dsl/attention_sizes.ts";
import type { CausalLM, ModelArgs, ModelInputs, SequenceStateKind } from "./dsl/causal_lm.ts";
import { LearnedPositionalEmbedding, ParallelLMHead, VocabParallelEmbedding } from "./dsl/embedding.ts";
import { ColumnParallelLinear, QKVParallelLinear, RowParallelLinear } from "./dsl/linear.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { LayerNorm } from "./dsl/norm.ts";

/** OPT's position table keeps rows 0 and 1 for padding: position p is row p + 2. */
const OPT_POSITION_OFFSET = 2;

export interface OptConfig {
  readonly hiddenSize: number;
  readonly ffnDim: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly bias: boolean;
  readonly act: UnaryOp;
  /** nn.LayerNorm's default; OPT configs do not set it */
  readonly layerNormEps: number;
}

/** Refuses a config flag whose value selects a layout this model does not build. */
function requireFlag(c: ConfigReader, key: string, expected: boolean, why: string): void {
  const v = c.optBool(key);
  if (v !== undefined && v !== expected) throw c.error(key, `is ${v}; only ${expected} is supported (${why})`);
}

export function parseOptConfig(c: ConfigReader): OptConfig {
  const { hiddenSize, numHeads } = parseAttentionSizes(c, { ...HF_ATTENTION_KEYS, kvHeads: undefined, headDim: undefined });
  const proj = c.optInt("word_embed_proj_dim", WIDTH);
  if (proj !== undefined && proj !== hiddenSize) {
    throw c.error("word_embed_proj_dim", `is ${proj}; only hidden_size (${hiddenSize}) is supported (no project_in/project_out)`);
  }
  requireFlag(c, "do_layer_norm_before", true, "pre-norm layers");
  requireFlag(c, "_remove_final_layer_norm", false, "the final layer norm is applied");
  requireFlag(c, "layer_norm_elementwise_affine", true, "layer norms with weight and bias");
  return {
    hiddenSize,
    ffnDim: c.int("ffn_dim", WIDTH),
    numLayers: c.int("num_hidden_layers", LAYERS),
    numHeads,
    vocabSize: c.int("vocab_size", VOCAB),
    maxPositions: c.int("max_position_embeddings", POSITIONS),
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? true,
    bias: c.optBool("enable_bias") ?? true,
    act: parseActivation(c, ["activation_function"], "relu"),
    layerNormEps: 1e-5,
  };
}

class OptAttention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly outProj: RowParallelLinear;
  readonly attn: Attention;
  constructor(prefix: string, cfg: OptConfig, ctx: ModelContext) {
    super(prefix);
    const D = cfg.hiddenSize / cfg.numHeads;
    const bias = { bias: cfg.bias };
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), cfg.hiddenSize, D, cfg.numHeads, cfg.numHeads, ctx, bias);
    this.outProj = new RowParallelLinear(this.join("out_proj"), cfg.hiddenSize, cfg.hiddenSize, ctx, bias);
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, D ** -0.5, numKvHeads);
  }

  /** x [T, H] → [T, H]; no rotary: positions entered with the embeddings */
  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const [q, k, v] = this.qkvProj.forwardQkv(x);
      return this.outProj.forward(this.attn.forward(q, k, v));
    });
  }
}

class OptDecoderLayer extends Module {
  readonly selfAttnLayerNorm: LayerNorm;
  readonly selfAttn: OptAttention;
  readonly finalLayerNorm: LayerNorm;
  readonly fc1: ColumnParallelLinear;
  readonly fc2: RowParallelLinear;
  constructor(
    prefix: string,
    readonly cfg: OptConfig,
    ctx: ModelContext,
  ) {
    super(prefix);
    const H = cfg.hiddenSize;
    this.selfAttnLayerNorm = new LayerNorm(this.join("self_attn_layer_norm"), H, cfg.layerNormEps);
    this.selfAttn = new OptAttention(this.join("self_attn"), cfg, ctx);
    this.finalLayerNorm = new LayerNorm(this.join("final_layer_norm"), H, cfg.layerNormEps);
    this.fc1 = new ColumnParallelLinear(this.join("fc1"), H, cfg.ffnDim, ctx, { bias: cfg.bias });
    this.fc2 = new RowParallelLinear(this.join("fc2"), cfg.ffnDim, H, ctx, { bias: cfg.bias });
  }

  forward(h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.selfAttn.forward(this.selfAttnLayerNorm.forward(h)));
      return a.add(this.fc2.forward(this.fc1.forward(this.finalLayerNorm.forward(a)).unary(this.cfg.act)));
    });
  }
}

class OptDecoder extends Module {
  readonly embedTokens: VocabParallelEmbedding;
  readonly embedPositions: LearnedPositionalEmbedding;
  readonly layers: OptDecoderLayer[];
  readonly finalLayerNorm: LayerNorm;
  constructor(prefix: string, cfg: OptConfig, ctx: ModelContext) {
    super(prefix);
    const H = cfg.hiddenSize;
    this.embedTokens = new VocabParallelEmbedding(this.join("embed_tokens"), cfg.vocabSize, H, ctx);
    this.embedPositions = new LearnedPositionalEmbedding(this.join("embed_positions"), cfg.maxPositions, H, {
      offset: OPT_POSITION_OFFSET,
    });
    this.layers = Array.from({ length: cfg.numLayers }, (_, i) => new OptDecoderLayer(this.join(`layers.${i}`), cfg, ctx));
    this.finalLayerNorm = new LayerNorm(this.join("final_layer_norm"), H, cfg.layerNormEps);
  }

  /** final hidden states of the rows in `logitsIndices`: [S, H] */
  forward(inputs: ModelInputs): Tensor {
    let h = this.embedTokens.forward(inputs.inputIds).add(this.embedPositions.forward(inputs.positions));
    for (const layer of this.layers) h = layer.forward(h);
    return this.finalLayerNorm.forward(h.gatherRows(inputs.logitsIndices));
  }
}

export class OPTForCausalLM extends Module implements CausalLM {
  readonly sequenceState: SequenceStateKind = "attention";
  readonly cfg: OptConfig;
  readonly decoder: OptDecoder;
  readonly lmHead: ParallelLMHead;

  constructor(args: ModelArgs) {
    super("");
    const cfg = parseOptConfig(args.config);
    this.cfg = cfg;
    this.decoder = new OptDecoder("model.decoder", cfg, args.ctx);
    this.lmHead = new ParallelLMHead("lm_head", cfg.vocabSize, cfg.hiddenSize, args.ctx);
    if (cfg.tieWordEmbeddings) this.lmHead.tieTo(this.decoder.embedTokens);
  }

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get maxPositions(): number {
    return this.cfg.maxPositions;
  }

  forward(inputs: ModelInputs): Tensor {
    return this.lmHead.logits(this.decoder.forward(inputs));
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, {
      stacked: LLAMA_STACKED,
      // the original facebook/opt-* checkpoints name the decoder without the "model." prefix
      rename: [{ from: /^decoder\./, to: "model.decoder." }],
      skip: this.cfg.tieWordEmbeddings ? [/^lm_head\.weight$/] : [],
    });
  }
}
