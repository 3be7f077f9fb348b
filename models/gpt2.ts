/**
 * GPT-2: a pre-LayerNorm decoder with learned absolute positions, fused q/k/v and a GELU (tanh)
 * MLP, under `transformer.`. Its projections are Conv1D modules whose weights are stored
 * transposed ([in, out]); they load into ordinary linears through the `transposed` rule.
 *
 *   h = wte(ids) + wpe(positions)                       // [T, H]
 *   per layer: h = h + c_proj(attn(c_attn(ln_1(h))))     // c_attn: [T, 3H] = q | k | v
 *              h = h + mlp.c_proj(gelu_tanh(c_fc(ln_2(h))))
 *   logits = lm_head(ln_f(h[last rows]))                // [S, V], tied to wte
 */
import type { UnaryOp } from "../compiler/ir.ts";
import type { Tensor } from "../compiler/trace.ts";
import { EPS, LAYERS, POSITIONS, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import { parseActivation } from "./dsl/activation.ts";
import { Attention } from "./dsl/attention.ts";
import { parseAttentionSizes, type AttentionKeys } from "./dsl/attention_sizes.ts";
import type { CausalLM, ModelArgs, ModelInputs, SequenceStateKind } from "./dsl/causal_lm.ts";
import { LearnedPositionalEmbedding, ParallelLMHead, VocabParallelEmbedding } from "./dsl/embedding.ts";
import { ColumnParallelLinear, QKVParallelLinear, RowParallelLinear } from "./dsl/linear.ts";
import { loadWeights, type LoadReport, type WeightRules, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { LayerNorm } from "./dsl/norm.ts";

export interface Gpt2Config {
  readonly hiddenSize: number;
  readonly innerSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly layerNormEps: number;
  readonly tieWordEmbeddings: boolean;
  readonly act: UnaryOp;
  /** scores divided by sqrt(head_dim) (scale_attn_weights) */
  readonly scaleAttnWeights: boolean;
  /** scores of layer i also divided by i + 1 (scale_attn_by_inverse_layer_idx) */
  readonly scaleByInverseLayer: boolean;
}

const GPT2_ATTENTION_KEYS: AttentionKeys = { hidden: "n_embd", heads: "n_head", kvHeads: undefined, headDim: undefined };

export function parseGpt2Config(c: ConfigReader): Gpt2Config {
  const { hiddenSize, numHeads } = parseAttentionSizes(c, GPT2_ATTENTION_KEYS);
  if (c.optBool("add_cross_attention") === true) throw c.error("add_cross_attention", "is true; only decoder-only GPT-2 is supported");
  return {
    hiddenSize,
    innerSize: c.optInt("n_inner", WIDTH) ?? 4 * hiddenSize,
    numLayers: c.int("n_layer", LAYERS),
    numHeads,
    vocabSize: c.int("vocab_size", VOCAB),
    maxPositions: c.int("n_positions", POSITIONS),
    layerNormEps: c.optFloat("layer_norm_epsilon", EPS) ?? 1e-5,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? true,
    act: parseActivation(c, ["activation_function"], "gelu_new"),
    scaleAttnWeights: c.optBool("scale_attn_weights") ?? true,
    scaleByInverseLayer: c.optBool("scale_attn_by_inverse_layer_idx") ?? false,
  };
}

class Gpt2Attention extends Module {
  readonly cAttn: QKVParallelLinear;
  readonly cProj: RowParallelLinear;
  readonly attn: Attention;
  constructor(prefix: string, cfg: Gpt2Config, layer: number, ctx: ModelContext) {
    super(prefix);
    const H = cfg.hiddenSize;
    const D = H / cfg.numHeads;
    // c_attn is stored fused ([q | k | v] rows once transposed) and loads without shard ids
    this.cAttn = new QKVParallelLinear(this.join("c_attn"), H, D, cfg.numHeads, cfg.numHeads, ctx, { bias: true });
    this.cProj = new RowParallelLinear(this.join("c_proj"), H, H, ctx, { bias: true });
    const scale = (cfg.scaleAttnWeights ? D ** -0.5 : 1) / (cfg.scaleByInverseLayer ? layer + 1 : 1);
    const { numHeads, numKvHeads } = this.cAttn.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, scale, numKvHeads);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      const [q, k, v] = this.cAttn.forwardQkv(x);
      return this.cProj.forward(this.attn.forward(q, k, v));
    });
  }
}

class Gpt2MLP extends Module {
  readonly cFc: ColumnParallelLinear;
  readonly cProj: RowParallelLinear;
  constructor(
    prefix: string,
    readonly cfg: Gpt2Config,
    ctx: ModelContext,
  ) {
    super(prefix);
    this.cFc = new ColumnParallelLinear(this.join("c_fc"), cfg.hiddenSize, cfg.innerSize, ctx, { bias: true });
    this.cProj = new RowParallelLinear(this.join("c_proj"), cfg.innerSize, cfg.hiddenSize, ctx, { bias: true });
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => this.cProj.forward(this.cFc.forward(x).unary(this.cfg.act)));
  }
}

class Gpt2Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: Gpt2Attention;
  readonly ln2: LayerNorm;
  readonly mlp: Gpt2MLP;
  constructor(prefix: string, cfg: Gpt2Config, layer: number, ctx: ModelContext) {
    super(prefix);
    this.ln1 = new LayerNorm(this.join("ln_1"), cfg.hiddenSize, cfg.layerNormEps);
    this.attn = new Gpt2Attention(this.join("attn"), cfg, layer, ctx);
    this.ln2 = new LayerNorm(this.join("ln_2"), cfg.hiddenSize, cfg.layerNormEps);
    this.mlp = new Gpt2MLP(this.join("mlp"), cfg, ctx);
  }

  forward(h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.attn.forward(this.ln1.forward(h)));
      return a.add(this.mlp.forward(this.ln2.forward(a)));
    });
  }
}

class Gpt2Model extends Module {
  readonly wte: VocabParallelEmbedding;
  readonly wpe: LearnedPositionalEmbedding;
  readonly h: Gpt2Block[];
  readonly lnF: LayerNorm;
  constructor(prefix: string, cfg: Gpt2Config, ctx: ModelContext) {
    super(prefix);
    this.wte = new VocabParallelEmbedding(this.join("wte"), cfg.vocabSize, cfg.hiddenSize, ctx);
    this.wpe = new LearnedPositionalEmbedding(this.join("wpe"), cfg.maxPositions, cfg.hiddenSize);
    this.h = Array.from({ length: cfg.numLayers }, (_, i) => new Gpt2Block(this.join(`h.${i}`), cfg, i, ctx));
    this.lnF = new LayerNorm(this.join("ln_f"), cfg.hiddenSize, cfg.layerNormEps);
  }

  /** final hidden states of the rows in `logitsIndices`: [S, H] */
  forward(inputs: ModelInputs): Tensor {
    let h = this.wte.forward(inputs.inputIds).add(this.wpe.forward(inputs.positions));
    for (const block of this.h) h = block.forward(h);
    return this.lnF.forward(h.gatherRows(inputs.logitsIndices));
  }
}

/** GPT-2's checkpoint layout, as data. */
const GPT2_WEIGHTS: WeightRules = {
  stacked: [],
  // openai-community/gpt2 and other early uploads omit the "transformer." prefix
  rename: [{ from: /^(h\.\d|wte\.|wpe\.|ln_f\.)/, to: "transformer.$1" }],
  // Conv1D weights are [in, out]
  transposed: [/\.(c_attn|c_proj|c_fc)\.weight$/],
  // older checkpoints carry the causal-mask buffers attn.bias and attn.masked_bias
  skip: [/\.attn\.(masked_)?bias$/],
};

export class GPT2LMHeadModel extends Module implements CausalLM {
  readonly sequenceState: SequenceStateKind = "attention";
  readonly cfg: Gpt2Config;
  readonly transformer: Gpt2Model;
  readonly lmHead: ParallelLMHead;

  constructor(args: ModelArgs) {
    super("");
    const cfg = parseGpt2Config(args.config);
    this.cfg = cfg;
    this.transformer = new Gpt2Model("transformer", cfg, args.ctx);
    this.lmHead = new ParallelLMHead("lm_head", cfg.vocabSize, cfg.hiddenSize, args.ctx);
    if (cfg.tieWordEmbeddings) this.lmHead.tieTo(this.transformer.wte);
  }

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get maxPositions(): number {
    return this.cfg.maxPositions;
  }

  forward(inputs: ModelInputs): Tensor {
    return this.lmHead.logits(this.transformer.forward(inputs));
  }

  loadWeights(source: WeightSource): LoadReport {
    const tiedHead = this.cfg.tieWordEmbeddings ? [/^lm_head\.weight$/] : [];
    return loadWeights(this, source, { ...GPT2_WEIGHTS, skip: [...(GPT2_WEIGHTS.skip ?? []), ...tiedHead] });
  }
}
