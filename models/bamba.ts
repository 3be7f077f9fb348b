/**
 * Bamba (IBM): a hybrid of Mamba-2 mixers and Llama-style GQA attention with partial rotary
 * embedding (the layers listed in attn_layer_indices), each followed by a SwiGLU MLP.
 *
 *   per layer: h = h + mixer(input_layernorm(h))        // Mamba-2 or attention
 *              h = h + mlp(pre_ff_layernorm(h))
 *   logits = lm_head(final_layernorm(h[last rows]))
 */
import type { Tensor } from "../compiler/trace.ts";
import { CONV_KERNEL, FACTOR, HEAD_DIM, HEADS, STATE_SIZE } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { optLayerIndices } from "./dsl/layer_types.ts";
import { Mamba2Mixer, parseTimeStepLimit, ssmGroups, type Mamba2MixerOptions } from "./dsl/mamba.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { LlamaAttention, llamaAttentionSpec, LlamaMLP, parseLlamaConfig, type LlamaConfig } from "./llama.ts";

export interface BambaConfig extends LlamaConfig {
  readonly mamba: Mamba2MixerOptions;
  /** per layer: attention (true) or Mamba-2 (false) */
  readonly attentionLayers: readonly boolean[];
}

export function parseBambaConfig(c: ConfigReader): BambaConfig {
  const base = parseLlamaConfig(c, { qkvBias: (r) => r.optBool("attention_bias") ?? false, qkNorm: false });
  const H = base.hiddenSize;
  const numHeads = c.optInt("mamba_n_heads", HEADS) ?? 128;
  const expand = c.optInt("mamba_expand", FACTOR) ?? 2;
  const headDim = c.optInt("mamba_d_head", HEAD_DIM) ?? Math.floor((expand * H) / numHeads);
  if (headDim < 1) throw c.error("mamba_n_heads", `is ${numHeads}, more than mamba_expand × hidden_size (${expand} × ${H}); mamba_d_head would be 0`);
  const attn = optLayerIndices(c, "attn_layer_indices", base.numLayers) ?? [];
  return {
    ...base,
    mamba: {
      hiddenSize: H,
      numHeads,
      headDim,
      numGroups: ssmGroups(c, "mamba_n_groups", numHeads),
      stateSize: c.optInt("mamba_d_state", STATE_SIZE) ?? 256,
      convKernel: c.optInt("mamba_d_conv", CONV_KERNEL) ?? 4,
      convBias: c.optBool("mamba_conv_bias") ?? true,
      projBias: c.optBool("mamba_proj_bias") ?? false,
      normEps: base.rmsNormEps,
      ...parseTimeStepLimit(c),
    },
    attentionLayers: Array.from({ length: base.numLayers }, (_, i) => attn.includes(i)),
  };
}

class BambaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly mixer: LlamaAttention | Mamba2Mixer;
  readonly preFfLayernorm: RMSNorm;
  readonly feedForward: LlamaMLP;
  constructor(prefix: string, cfg: BambaConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    this.inputLayernorm = new RMSNorm(this.join("input_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.mixer = cfg.attentionLayers[layer] ? new LlamaAttention(this.join("self_attn"), llamaAttentionSpec(cfg, layer), ctx) : new Mamba2Mixer(this.join("mamba"), cfg.mamba, ctx);
    this.preFfLayernorm = new RMSNorm(this.join("pre_ff_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.feedForward = new LlamaMLP(this.join("feed_forward"), cfg, ctx);
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const x = this.inputLayernorm.forward(h);
      const a = h.add(this.mixer instanceof LlamaAttention ? this.mixer.forward(positions, x) : this.mixer.forward(x));
      return a.add(this.feedForward.forward(this.preFfLayernorm.forward(a)));
    });
  }
}

export class BambaForCausalLM extends DecoderOnlyLM<BambaConfig, BambaDecoderLayer> {
  readonly sequenceState = "hybrid";

  constructor(args: ModelArgs) {
    const cfg = parseBambaConfig(args.config);
    const sizes = { numLayers: cfg.numLayers, normEps: cfg.rmsNormEps, normName: "final_layernorm" };
    super(cfg, sizes, (prefix, i) => new BambaDecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    return loadWeights(this, source, { stacked: LLAMA_STACKED, skip: [/rotary_emb\.inv_freq$/, ...this.tiedSkips()] });
  }
}
