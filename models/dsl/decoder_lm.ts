/**
 * The shape most decoder-only checkpoints share, written once:
 *
 *   <prefix>.embed_tokens → <prefix>.layers.{i} → <prefix>.<final norm> (rows whose logits are wanted)
 *   lm_head (tied to embed_tokens when the config says so)
 *
 * A model supplies its layers (each `forward(positions, h)`), its final norm's name and its
 * config's sizes; the stack and the causal-LM wrapper do the rest.
 */
import type { Tensor } from "../../compiler/trace.ts";
import type { CausalLM, ModelInputs, SequenceStateKind } from "./causal_lm.ts";
import { ParallelLMHead, VocabParallelEmbedding } from "./embedding.ts";
import type { LoadReport, WeightSource } from "./load_weights.ts";
import { Module, type ModelContext } from "./module.ts";
import { RMSNorm } from "./norm.ts";

export interface DecoderLayer {
  forward(positions: Tensor, h: Tensor): Tensor;
}

export interface DecoderStackSizes {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly numLayers: number;
  /** eps of the final RMS norm */
  readonly normEps: number;
  /** the final norm's name under the stack (default "norm") */
  readonly normName?: string;
  /** the final norm scales by (w + offset): Gemma's (1 + w) is 1 (default 0) */
  readonly normWeightOffset?: number;
  /** token embeddings are multiplied by this (Gemma: sqrt(hidden), rounded to f32) (default 1) */
  readonly embedScale?: number;
}

/** Token embedding, the decoder layers and the final RMS norm, under one checkpoint prefix. */
export class DecoderStack<L extends DecoderLayer> extends Module {
  readonly embedTokens: VocabParallelEmbedding;
  readonly layers: L[];
  readonly norm: RMSNorm;
  readonly embedScale: number;

  constructor(prefix: string, sizes: DecoderStackSizes, layer: (prefix: string, index: number) => L, ctx: ModelContext) {
    super(prefix);
    this.embedTokens = new VocabParallelEmbedding(this.join("embed_tokens"), sizes.vocabSize, sizes.hiddenSize, ctx);
    this.layers = Array.from({ length: sizes.numLayers }, (_, i) => layer(this.join(`layers.${i}`), i));
    this.norm = new RMSNorm(this.join(sizes.normName ?? "norm"), sizes.hiddenSize, sizes.normEps, {
      weightOffset: sizes.normWeightOffset ?? 0,
    });
    this.embedScale = sizes.embedScale ?? 1;
  }

  /** final hidden states of the rows in `logitsIndices`: [S, H] */
  forward(inputs: ModelInputs): Tensor {
    let h = this.embedTokens.forward(inputs.inputIds);
    if (this.embedScale !== 1) h = this.scoped(h.graph, () => h.scale(this.embedScale));
    for (const layer of this.layers) h = layer.forward(inputs.positions, h);
    return this.norm.forward(h.gatherRows(inputs.logitsIndices));
  }
}

export interface DecoderLMConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
}

/** A causal LM over a DecoderStack named `model` and an LM head named `lm_head`. */
export abstract class DecoderOnlyLM<C extends DecoderLMConfig, L extends DecoderLayer> extends Module implements CausalLM {
  readonly model: DecoderStack<L>;
  readonly lmHead: ParallelLMHead;
  abstract readonly sequenceState: SequenceStateKind;

  constructor(
    readonly cfg: C,
    sizes: Omit<DecoderStackSizes, "vocabSize" | "hiddenSize">,
    layer: (prefix: string, index: number) => L,
    ctx: ModelContext,
  ) {
    super("");
    this.model = new DecoderStack("model", { ...sizes, vocabSize: cfg.vocabSize, hiddenSize: cfg.hiddenSize }, layer, ctx);
    this.lmHead = new ParallelLMHead("lm_head", cfg.vocabSize, cfg.hiddenSize, ctx);
    if (cfg.tieWordEmbeddings) this.lmHead.tieTo(this.model.embedTokens);
  }

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get maxPositions(): number {
    return this.cfg.maxPositions;
  }

  forward(inputs: ModelInputs): Tensor {
    return this.lmHead.logits(this.model.forward(inputs));
  }

  /** checkpoint names a tied head does not read */
  protected tiedSkips(): RegExp[] {
    return this.cfg.tieWordEmbeddings ? [/^lm_head\.weight$/] : [];
  }

  abstract loadWeights(source: WeightSource): LoadReport;
}
