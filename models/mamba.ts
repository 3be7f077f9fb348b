/**
 * Attention-free Mamba language models: Mamba-1 (`MambaForCausalLM`) and Mamba-2
 * (`Mamba2ForCausalLM`). Both are a stack of pre-norm residual mixer blocks under HF's
 * `backbone.` prefix; every sequence keeps only fixed-size state (no KV cache).
 *
 *   per layer: h = h + mixer(rmsnorm(h))
 *   logits = lm_head(norm_f(h[last rows]))
 */
import type { Tensor } from "../compiler/trace.ts";
import { CONV_KERNEL, EPS, FACTOR, HEAD_DIM, HEADS, LAYERS, STATE_SIZE, VOCAB, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import type { CausalLM, ModelArgs, ModelInputs, SequenceStateKind } from "./dsl/causal_lm.ts";
import { ParallelLMHead, VocabParallelEmbedding } from "./dsl/embedding.ts";
import { loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Mamba2Mixer, MambaMixer, parseDtRank, parseTimeStepLimit, ssmGroups, type Mamba2MixerOptions, type MambaMixerOptions } from "./dsl/mamba.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";

/** Attention-free models have no position limit of their own; the engine's context limit applies. */
const STATE_SPACE_MAX_POSITIONS = 1 << 20;

interface BackboneConfig {
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly vocabSize: number;
  readonly normEps: number;
  readonly tieWordEmbeddings: boolean;
}

function parseBackbone(c: ConfigReader, tieByDefault: boolean): BackboneConfig {
  return {
    hiddenSize: c.int("hidden_size", WIDTH),
    numLayers: c.int("num_hidden_layers", LAYERS),
    vocabSize: c.int("vocab_size", VOCAB),
    normEps: c.optFloat("layer_norm_epsilon", EPS) ?? 1e-5,
    tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? tieByDefault,
  };
}

export interface MambaConfig extends BackboneConfig {
  readonly mixer: MambaMixerOptions;
}

export function parseMambaConfig(c: ConfigReader): MambaConfig {
  const base = parseBackbone(c, true);
  const H = base.hiddenSize;
  return {
    ...base,
    mixer: {
      hiddenSize: H,
      intermediateSize: c.optInt("intermediate_size", WIDTH) ?? (c.optInt("expand", FACTOR) ?? 2) * H,
      stateSize: c.optInt("state_size", STATE_SIZE) ?? 16,
      convKernel: c.optInt("conv_kernel", CONV_KERNEL) ?? 4,
      dtRank: parseDtRank(c, "time_step_rank", H),
      convBias: c.optBool("use_conv_bias") ?? true,
      projBias: c.optBool("use_bias") ?? false,
    },
  };
}

export interface Mamba2Config extends BackboneConfig {
  readonly mixer: Mamba2MixerOptions;
}

export function parseMamba2Config(c: ConfigReader): Mamba2Config {
  const base = parseBackbone(c, false);
  const H = base.hiddenSize;
  const numHeads = c.optInt("num_heads", HEADS) ?? 128;
  const headDim = c.optInt("head_dim", HEAD_DIM) ?? 64;
  const expand = c.optInt("expand", FACTOR) ?? 2;
  if (numHeads * headDim !== expand * H) {
    throw c.error("num_heads", `does not tile the expansion: num_heads ${numHeads} × head_dim ${headDim} differs from expand ${expand} × hidden_size ${H}`);
  }
  return {
    ...base,
    mixer: {
      hiddenSize: H,
      numHeads,
      headDim,
      numGroups: ssmGroups(c, "n_groups", numHeads),
      stateSize: c.optInt("state_size", STATE_SIZE) ?? 128,
      convKernel: c.optInt("conv_kernel", CONV_KERNEL) ?? 4,
      convBias: c.optBool("use_conv_bias") ?? true,
      projBias: c.optBool("use_bias") ?? false,
      normEps: base.normEps,
      ...parseTimeStepLimit(c),
    },
  };
}

class MambaBlock extends Module {
  readonly norm: RMSNorm;
  constructor(
    prefix: string,
    hiddenSize: number,
    eps: number,
    readonly mixer: MambaMixer | Mamba2Mixer,
  ) {
    super(prefix);
    this.norm = new RMSNorm(this.join("norm"), hiddenSize, eps);
  }

  forward(h: Tensor): Tensor {
    return this.scoped(h.graph, () => h.add(this.mixer.forward(this.norm.forward(h))));
  }
}

class MambaBackbone extends Module {
  readonly embeddings: VocabParallelEmbedding;
  readonly layers: MambaBlock[];
  readonly normF: RMSNorm;
  constructor(prefix: string, cfg: BackboneConfig, mixer: (prefix: string) => MambaMixer | Mamba2Mixer, ctx: ModelContext) {
    super(prefix);
    this.embeddings = new VocabParallelEmbedding(this.join("embeddings"), cfg.vocabSize, cfg.hiddenSize, ctx);
    this.layers = Array.from({ length: cfg.numLayers }, (_, i) => {
      const p = this.join(`layers.${i}`);
      return new MambaBlock(p, cfg.hiddenSize, cfg.normEps, mixer(`${p}.mixer`));
    });
    this.normF = new RMSNorm(this.join("norm_f"), cfg.hiddenSize, cfg.normEps);
  }

  forward(inputs: ModelInputs): Tensor {
    let h = this.embeddings.forward(inputs.inputIds);
    for (const layer of this.layers) h = layer.forward(h);
    return this.normF.forward(h.gatherRows(inputs.logitsIndices));
  }
}

abstract class MambaLMBase extends Module implements CausalLM {
  readonly sequenceState: SequenceStateKind = "attention_free";
  abstract readonly backbone: MambaBackbone;
  abstract readonly lmHead: ParallelLMHead;
  abstract readonly cfg: BackboneConfig;

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get maxPositions(): number {
    return STATE_SPACE_MAX_POSITIONS;
  }

  forward(inputs: ModelInputs): Tensor {
    return this.lmHead.logits(this.backbone.forward(inputs));
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, { stacked: [], skip: this.cfg.tieWordEmbeddings ? [/^lm_head\.weight$/] : [] });
  }
}

export class MambaForCausalLM extends MambaLMBase {
  readonly cfg: MambaConfig;
  readonly backbone: MambaBackbone;
  readonly lmHead: ParallelLMHead;
  constructor(args: ModelArgs) {
    super("");
    const cfg = parseMambaConfig(args.config);
    this.cfg = cfg;
    this.backbone = new MambaBackbone("backbone", cfg, (p) => new MambaMixer(p, cfg.mixer, args.ctx), args.ctx);
    this.lmHead = new ParallelLMHead("lm_head", cfg.vocabSize, cfg.hiddenSize, args.ctx);
    if (cfg.tieWordEmbeddings) this.lmHead.tieTo(this.backbone.embeddings);
  }
}

export class Mamba2ForCausalLM extends MambaLMBase {
  readonly cfg: Mamba2Config;
  readonly backbone: MambaBackbone;
  readonly lmHead: ParallelLMHead;
  constructor(args: ModelArgs) {
    super("");
    const cfg = parseMamba2Config(args.config);
    this.cfg = cfg;
    this.backbone = new MambaBackbone("backbone", cfg, (p) => new Mamba2Mixer(p, cfg.mixer, args.ctx), args.ctx);
    this.lmHead = new ParallelLMHead("lm_head", cfg.vocabSize, cfg.hiddenSize, args.ctx);
    if (cfg.tieWordEmbeddings) this.lmHead.tieTo(this.backbone.embeddings);
  }
}
