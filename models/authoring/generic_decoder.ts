/**
 * The generic decoder-only implementation: what an unregistered causal-LM architecture runs on
 * when its checkpoint and config fit kiln's generic shape (as vLLM's Transformers backend serves
 * models it has no native implementation of), built from the same DSL modules the in-tree models use:
 *
 *   h = embed(ids) [+ positions(pos)]                                    // [T, H]
 *   per layer: h = h + o(attn(rope?(qknorm?(q)), rope?(qknorm?(k)), v))  of norm(h)
 *              h = h + down(act(gate) · up)  or  down(act(up))           of norm(h)
 *   logits = lm_head(norm(h[last rows]))                                 // [S, V]
 *
 * Whether it fits is decided from the tensor names and shapes (decoder_layout.ts) and the config
 * (generic_config.ts), never from the architecture's name; a checkpoint that does not fit is
 * ARCH_UNKNOWN with every reason.
 */
import { dirname } from "node:path";
import type { UnaryOp } from "../../compiler/ir.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { ConfigReader } from "../hf_config.ts";
import { Attention } from "../dsl/attention.ts";
import type { CausalLM, CausalLMClass, ModelArgs, ModelInputs, SequenceStateKind } from "../dsl/causal_lm.ts";
import { LearnedPositionalEmbedding, ParallelLMHead, VocabParallelEmbedding } from "../dsl/embedding.ts";
import { ColumnParallelLinear, MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear } from "../dsl/linear.ts";
import { loadWeights, type LoadReport, type StackedParam, type WeightSource } from "../dsl/load_weights.ts";
import { Module, type ModelContext } from "../dsl/module.ts";
import { LayerNorm, RMSNorm } from "../dsl/norm.ts";
import { RotaryEmbedding } from "../dsl/rotary.ts";
import { readCheckpointShape, type CheckpointShape } from "./checkpoint_shape.ts";
import { join, matchDecoderLayout, type DecoderLayout, type NormSlot } from "./decoder_layout.ts";
import { mathKeyReasons, matchGenericSpec, type GenericDecoderSpec, type SpecMatch } from "./generic_config.ts";

/** Checkpoint buffers that are not weights (HF's cached rotary frequencies). */
const BUFFERS = /(?:^|\.)rotary_emb\.inv_freq$/;

/** Does this checkpoint and config fit the generic shape? The spec to build, or every reason it does not. */
export function matchGenericDecoder(config: ConfigReader, tensors: CheckpointShape): SpecMatch {
  const layout = matchDecoderLayout(tensors);
  return layout.ok ? matchGenericSpec(layout.layout, config) : { ok: false, reasons: [...layout.reasons, ...mathKeyReasons(config)] };
}

type Norm = RMSNorm | LayerNorm;

function makeNorm(prefix: string, spec: GenericDecoderSpec, slot: NormSlot): Norm {
  return spec.norm === "rms" ? new RMSNorm(prefix, slot.size, spec.normEps) : new LayerNorm(prefix, slot.size, spec.normEps, { bias: slot.bias });
}

class GenericAttention extends Module {
  readonly qkvProj: QKVParallelLinear;
  readonly oProj: RowParallelLinear;
  readonly qNorm: RMSNorm | undefined;
  readonly kNorm: RMSNorm | undefined;
  readonly rotary: RotaryEmbedding | undefined;
  readonly attn: Attention;

  constructor(prefix: string, spec: GenericDecoderSpec, layer: number, ctx: ModelContext) {
    super(prefix);
    const { layout, headDim: D, hiddenSize: H } = spec;
    // split q/k/v load as shards of one qkv_proj (the stacked map); a fused qkv_proj loads whole
    const qkvBias = layout.qkv.kind === "split" ? layout.qkv.q.bias : layout.qkv.qkv.bias;
    this.qkvProj = new QKVParallelLinear(this.join("qkv_proj"), H, D, spec.numHeads, spec.numKvHeads, ctx, { bias: qkvBias });
    this.oProj = new RowParallelLinear(this.join(layout.o.name), spec.numHeads * D, H, ctx, { bias: layout.o.bias });
    const qk = layout.qkNorm;
    this.qNorm = qk ? new RMSNorm(this.join(qk.q.name), D, spec.normEps) : undefined;
    this.kNorm = qk ? new RMSNorm(this.join(qk.k.name), D, spec.normEps) : undefined;
    this.rotary = spec.rope ? new RotaryEmbedding(D, spec.rope.rotaryDim, spec.rope.config) : undefined;
    const { numHeads, numKvHeads } = this.qkvProj.sizes;
    this.attn = new Attention(this.join("attn"), numHeads, D, D ** -0.5, numKvHeads, { slidingWindow: spec.slidingWindows[layer] });
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
      if (this.rotary) {
        q = this.rotary.apply(q, positions, numHeads);
        k = this.rotary.apply(k, positions, numKvHeads);
      }
      return this.oProj.forward(this.attn.forward(q, k, v));
    });
  }
}

/** down(act(gate) · up) with gate and up stacked, or down(act(up)). */
class GenericMLP extends Module {
  readonly gateUpProj: MergedColumnParallelLinear | undefined;
  readonly upProj: ColumnParallelLinear | undefined;
  readonly downProj: RowParallelLinear;

  constructor(
    prefix: string,
    spec: GenericDecoderSpec,
    ctx: ModelContext,
    readonly act: UnaryOp,
  ) {
    super(prefix);
    const { intermediateSize: I, hiddenSize: H } = spec;
    const m = spec.layout.mlpLayout;
    switch (m.kind) {
      case "gated":
      case "gated_fused": {
        const bias = m.kind === "gated" ? m.gate.bias : m.gateUp.bias;
        this.gateUpProj = new MergedColumnParallelLinear(this.join("gate_up_proj"), H, [I, I], ctx, { bias });
        this.upProj = undefined;
        break;
      }
      case "plain":
        this.gateUpProj = undefined;
        this.upProj = new ColumnParallelLinear(this.join(m.up.name), H, I, ctx, { bias: m.up.bias });
        break;
    }
    this.downProj = new RowParallelLinear(this.join(m.down.name), I, H, ctx, { bias: m.down.bias });
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      if (this.gateUpProj) {
        const per = this.gateUpProj.sizesPerRank[0]!;
        const [gate, up] = this.gateUpProj.forward(x).split([per, per]);
        return this.downProj.forward(gate!.unary(this.act).mul(up!));
      }
      return this.downProj.forward(this.upProj!.forward(x).unary(this.act));
    });
  }
}

class GenericLayer extends Module {
  readonly inputNorm: Norm;
  readonly selfAttn: GenericAttention;
  readonly preMlpNorm: Norm;
  readonly mlp: GenericMLP;

  constructor(prefix: string, spec: GenericDecoderSpec, layer: number, ctx: ModelContext) {
    super(prefix);
    const l = spec.layout;
    this.inputNorm = makeNorm(this.join(l.inputNorm.name), spec, l.inputNorm);
    this.selfAttn = new GenericAttention(this.join(l.attn), spec, layer, ctx);
    this.preMlpNorm = makeNorm(this.join(l.preMlpNorm.name), spec, l.preMlpNorm);
    this.mlp = new GenericMLP(join(prefix, l.mlp), spec, ctx, spec.act);
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.selfAttn.forward(positions, this.inputNorm.forward(h)));
      return a.add(this.mlp.forward(this.preMlpNorm.forward(a)));
    });
  }
}

class GenericStack extends Module {
  readonly embedTokens: VocabParallelEmbedding;
  readonly embedPositions: LearnedPositionalEmbedding | undefined;
  readonly layers: GenericLayer[];
  readonly norm: Norm;

  constructor(prefix: string, spec: GenericDecoderSpec, ctx: ModelContext) {
    super(prefix);
    const l = spec.layout;
    this.embedTokens = new VocabParallelEmbedding(this.join(l.embed.name), spec.vocabSize, spec.hiddenSize, ctx);
    this.embedPositions = l.positions.kind === "learned" ? new LearnedPositionalEmbedding(this.join(l.positions.name), l.positions.rows, spec.hiddenSize) : undefined;
    this.layers = Array.from({ length: l.numLayers }, (_, i) => new GenericLayer(this.join(`${l.layers}.${i}`), spec, i, ctx));
    this.norm = makeNorm(this.join(l.finalNorm.name), spec, l.finalNorm);
  }

  /** final hidden states of the rows in `logitsIndices`: [S, H] */
  forward(inputs: ModelInputs): Tensor {
    let h = this.embedTokens.forward(inputs.inputIds);
    if (this.embedPositions) h = h.add(this.embedPositions.forward(inputs.positions));
    for (const layer of this.layers) h = layer.forward(inputs.positions, h);
    return this.norm.forward(h.gatherRows(inputs.logitsIndices));
  }
}

/** The stacked-parameter map of a layout: its q/k/v and gate/up spellings fill qkv_proj and gate_up_proj. */
export function genericStackedMap(layout: DecoderLayout): StackedParam[] {
  const out: StackedParam[] = [];
  if (layout.qkv.kind === "split") {
    const { q, k, v } = layout.qkv;
    out.push({ param: ".qkv_proj", checkpoint: `.${q.name}`, shard: "q" }, { param: ".qkv_proj", checkpoint: `.${k.name}`, shard: "k" }, { param: ".qkv_proj", checkpoint: `.${v.name}`, shard: "v" });
  }
  const m = layout.mlpLayout;
  if (m.kind === "gated") out.push({ param: ".gate_up_proj", checkpoint: `.${m.gate.name}`, shard: "0" }, { param: ".gate_up_proj", checkpoint: `.${m.up.name}`, shard: "1" });
  return out;
}

export class GenericDecoderForCausalLM extends Module implements CausalLM {
  readonly sequenceState: SequenceStateKind = "attention";
  readonly spec: GenericDecoderSpec;
  readonly stack: GenericStack;
  readonly lmHead: ParallelLMHead;

  /** `arch` and `unknown` (the registry's message) go into the refusal when the checkpoint does not fit. */
  constructor(args: ModelArgs, arch: string, unknown: string) {
    super("");
    const match = matchGenericDecoder(args.config, readCheckpointShape(dirname(args.config.path)));
    if (!match.ok) {
      throw new KilnError("ARCH_UNKNOWN", `${unknown} Nor does ${arch} fit kiln's generic decoder-only implementation: ${match.reasons.join("; ")}`);
    }
    const spec = match.spec;
    this.spec = spec;
    this.stack = new GenericStack(spec.layout.root, spec, args.ctx);
    this.lmHead = new ParallelLMHead("lm_head", spec.vocabSize, spec.hiddenSize, args.ctx);
    if (spec.tieWordEmbeddings) this.lmHead.tieTo(this.stack.embedTokens);
    process.stderr.write(`kiln: ${arch} is not registered; running it with kiln's generic decoder-only implementation (${describeSpec(spec)})\n`);
  }

  get vocabSize(): number {
    return this.spec.vocabSize;
  }

  get maxPositions(): number {
    return this.spec.maxPositions;
  }

  forward(inputs: ModelInputs): Tensor {
    return this.lmHead.logits(this.stack.forward(inputs));
  }

  loadWeights(source: WeightSource): LoadReport {
    const tiedCopy = this.spec.tieWordEmbeddings && this.spec.layout.lmHead ? [/^lm_head\.weight$/] : [];
    return loadWeights(this, source, { stacked: genericStackedMap(this.spec.layout), skip: [BUFFERS, ...tiedCopy] });
  }
}

/** "2 × [rms norm, attention (rotary), rms norm, gated MLP]": what the notice says was matched. */
export function describeSpec(spec: GenericDecoderSpec): string {
  const l = spec.layout;
  const pos = spec.rope ? "rotary" : "learned positions";
  const attn = [pos, l.qkNorm ? "q/k norm" : "", spec.numKvHeads < spec.numHeads ? `GQA ${spec.numHeads}/${spec.numKvHeads}` : ""].filter((x) => x).join(", ");
  const mlp = l.mlpLayout.kind === "plain" ? "MLP" : "gated MLP";
  return `${l.numLayers} × [${spec.norm} norm, attention (${attn}), ${spec.norm} norm, ${mlp}], matched from its tensors and config`;
}

/** Only causal-LM head classes fall back: a `…Model` or `…ForSequenceClassification` computes something else. */
const CAUSAL_LM_NAME = /(?:ForCausalLM|LMHeadModel)$/;

/** The registry's fallback: a class that serves `arch` generically, or undefined when the name is not a causal LM's. */
export function genericDecoderFallback(arch: string, unknown: string): CausalLMClass | undefined {
  if (!CAUSAL_LM_NAME.test(arch)) return undefined;
  return class extends GenericDecoderForCausalLM {
    constructor(args: ModelArgs) {
      super(args, arch, unknown);
    }
  };
}
