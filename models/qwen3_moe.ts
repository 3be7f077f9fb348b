/**
 * Qwen3-MoE: the Qwen3 decoder (per-head q/k RMSNorm, no biases) with a sparse MoE block in place
 * of the MLP on every `decoder_sparse_step`-th layer not listed in `mlp_only_layers`.
 *
 *   per layer: h = h + o(attn(rope(qnorm(q)), rope(knorm(k)), v))   of rmsnorm(h)
 *              h = h + moe(rmsnorm(h))          // softmax → top-k → renormalize (norm_topk_prob)
 *                  or h + down(silu(gate) * up) // dense layers
 *   logits = lm_head(rmsnorm(h[last rows]))
 */
import type { Tensor } from "../compiler/trace.ts";
import { EXPERTS, LAYERS, WIDTH } from "./config_limits.ts";
import type { ConfigReader } from "./hf_config.ts";
import type { ModelArgs } from "./dsl/causal_lm.ts";
import { DecoderOnlyLM } from "./dsl/decoder_lm.ts";
import { FusedMoE, parseTopK, SparseMoeBlock, type FusedMoEOptions } from "./dsl/fused_moe.ts";
import { optLayerIndices } from "./dsl/layer_types.ts";
import { LLAMA_STACKED, loadWeights, type LoadReport, type WeightSource } from "./dsl/load_weights.ts";
import { Module, type ModelContext } from "./dsl/module.ts";
import { RMSNorm } from "./dsl/norm.ts";
import { LlamaAttention, llamaAttentionSpec, LlamaMLP, parseLlamaConfig, type LlamaConfig } from "./llama.ts";

export interface Qwen3MoeConfig extends LlamaConfig {
  readonly moe: FusedMoEOptions;
  /** per layer: a sparse MoE block (true) or the dense MLP of intermediate_size */
  readonly sparseLayers: readonly boolean[];
}

export function parseQwen3MoeConfig(c: ConfigReader): Qwen3MoeConfig {
  const base = parseLlamaConfig(c, { qkvBias: (r) => r.optBool("attention_bias") ?? false, qkNorm: true });
  // transformers writes num_experts; some exports spell it num_local_experts
  // 0 experts: every layer is dense
  const experts = { min: 0, max: EXPERTS.max };
  const numExperts = c.optInt("num_experts", experts) ?? c.int("num_local_experts", experts);
  const step = c.optInt("decoder_sparse_step", LAYERS) ?? 1;
  const mlpOnly = optLayerIndices(c, "mlp_only_layers", base.numLayers) ?? [];
  return {
    ...base,
    moe: {
      numExperts,
      topK: parseTopK(c, "num_experts_per_tok", numExperts),
      hiddenSize: base.hiddenSize,
      intermediateSize: c.int("moe_intermediate_size", WIDTH),
      routing: (c.optBool("norm_topk_prob") ?? false) ? "softmax_topk_renorm" : "softmax_topk",
    },
    sparseLayers: Array.from({ length: base.numLayers }, (_, i) => !mlpOnly.includes(i) && numExperts > 0 && (i + 1) % step === 0),
  };
}

class Qwen3MoeDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: SparseMoeBlock | LlamaMLP;
  constructor(prefix: string, cfg: Qwen3MoeConfig, layer: number, ctx: ModelContext) {
    super(prefix);
    this.inputLayernorm = new RMSNorm(this.join("input_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.selfAttn = new LlamaAttention(this.join("self_attn"), llamaAttentionSpec(cfg, layer), ctx);
    this.postAttentionLayernorm = new RMSNorm(this.join("post_attention_layernorm"), cfg.hiddenSize, cfg.rmsNormEps);
    this.mlp = cfg.sparseLayers[layer] ? new SparseMoeBlock(this.join("mlp"), cfg.moe, ctx) : new LlamaMLP(this.join("mlp"), cfg, ctx);
  }

  forward(positions: Tensor, h: Tensor): Tensor {
    return this.scoped(h.graph, () => {
      const a = h.add(this.selfAttn.forward(positions, this.inputLayernorm.forward(h)));
      return a.add(this.mlp.forward(this.postAttentionLayernorm.forward(a)));
    });
  }
}

export class Qwen3MoeForCausalLM extends DecoderOnlyLM<Qwen3MoeConfig, Qwen3MoeDecoderLayer> {
  readonly sequenceState = "attention";

  constructor(args: ModelArgs) {
    const cfg = parseQwen3MoeConfig(args.config);
    super(cfg, { numLayers: cfg.numLayers, normEps: cfg.rmsNormEps }, (prefix, i) => new Qwen3MoeDecoderLayer(prefix, cfg, i, args.ctx), args.ctx);
  }

  loadWeights(source: WeightSource): LoadReport {
    const skip = [/rotary_emb\.inv_freq$/];
    if (this.cfg.tieWordEmbeddings) skip.push(/^lm_head\.weight$/);
    const stacked = [...LLAMA_STACKED, ...FusedMoE.expertParamsMapping(this.cfg.moe.numExperts)];
    return loadWeights(this, source, { stacked, skip });
  }
}
