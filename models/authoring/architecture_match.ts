/**
 * Which architecture kiln knows a checkpoint is closest to, by the structure of its tensor names
 * (layer indices collapsed; Jaccard similarity against each known architecture's names), and the
 * conventions that architecture follows where no tensor shows them (Gemma's (1 + w) norms and
 * scaled embeddings, OPT's two padding rows of positions, GPT-2's transposed Conv1D weights).
 * `kiln new-model` writes a model file from the match (model_writer.ts).
 */
import type { CheckpointShape } from "./checkpoint_shape.ts";

/**
 * decoder: the writer builds it; moe: the writer builds it with a sparse MoE block (FusedMoE) where
 * its tensors show one (moe_layout.ts); stateful: layers kiln builds with custom ops (Mamba mixers,
 * short or linear attention), left as a precise TODO.
 */
export type FamilyKind = "decoder" | "stateful" | "moe";

export interface Family {
  readonly arch: string;
  /** kiln's file implementing it */
  readonly file: string;
  readonly kind: FamilyKind;
  readonly names: readonly string[];
  readonly conventions: Conventions;
  /** the DSL modules (custom ops) its layers are built from, for a stateful or MoE family */
  readonly customOps?: readonly string[];
}

export interface Conventions {
  /** RMS norms scale by (w + offset): Gemma's (1 + w) */
  readonly normOffset: number;
  /** token embeddings are multiplied by sqrt(hidden) (Gemma) */
  readonly embedScale: boolean;
  /** scores are scaled by query_pre_attn_scalar^-0.5 (Gemma) instead of head_dim^-0.5 */
  readonly queryPreAttnScalar: boolean;
  /** the HF config class's soft-cap defaults, when the family soft-caps (Gemma 2: 50 and 30) */
  readonly softcaps: { readonly attn: number | undefined; readonly final: number | undefined } | undefined;
  /** projections stored [in, out] (GPT-2's Conv1D) */
  readonly transposed: boolean;
  /** leading rows of a learned position table that no position reads (OPT: 2) */
  readonly positionOffset: number;
  /** tie_word_embeddings when the config leaves it out (the HF config class's default) */
  readonly tieDefault: boolean;
  /** the norm epsilon when the config states none (OPT: nn.LayerNorm's 1e-5) */
  readonly epsDefault: number | undefined;
  /** the activation when the config states none */
  readonly actDefault: string | undefined;
  /** whether a MoE router's top-k weights are renormalized when the config has no norm_topk_prob (undefined: no MoE convention) */
  readonly topkRenormDefault: boolean | undefined;
}

const PLAIN: Conventions = {
  normOffset: 0,
  embedScale: false,
  queryPreAttnScalar: false,
  softcaps: undefined,
  transposed: false,
  positionOffset: 0,
  tieDefault: false,
  epsDefault: undefined,
  actDefault: undefined,
  topkRenormDefault: undefined,
};
const GEMMA: Conventions = { ...PLAIN, normOffset: 1, embedScale: true, queryPreAttnScalar: true, tieDefault: true, actDefault: "gelu_pytorch_tanh" };

/** "a.{x,y}.b" → ["a.x.b", "a.y.b"]; groups expand left to right, and "{i}" (no comma) stays */
function expand(...patterns: readonly string[]): string[] {
  return patterns.flatMap((p) => {
    const m = /\{([^{}]*,[^{}]*)\}/.exec(p);
    if (m === null || m[1] === undefined) return [p];
    return expand(...m[1].split(",").map((alt) => p.replace(m[0], alt)));
  });
}

const L = "model.layers.{i}.";
const LLAMA = expand("model.embed_tokens.weight", "model.norm.weight", `${L}{input_layernorm,post_attention_layernorm}.weight`, `${L}self_attn.{q_proj,k_proj,v_proj,o_proj}.weight`, `${L}mlp.{gate_proj,up_proj,down_proj}.weight`);
const GEMMA2 = [...LLAMA, ...expand(`${L}{pre_feedforward_layernorm,post_feedforward_layernorm}.weight`)];
const QK_NORM = expand(`${L}self_attn.{q_norm,k_norm}.weight`);
const OPT_L = "model.decoder.layers.{i}.";
const MAMBA_L = "backbone.layers.{i}.";
const HYBRID_ATTN = expand(`${L}self_attn.{q_proj,k_proj,v_proj,o_proj}.weight`, `${L}{input_layernorm,pre_ff_layernorm}.weight`, "model.embed_tokens.weight", "model.final_layernorm.weight");

export const FAMILIES: readonly Family[] = [
  { arch: "LlamaForCausalLM", file: "models/llama.ts", kind: "decoder", names: LLAMA, conventions: PLAIN },
  { arch: "Qwen2ForCausalLM", file: "models/llama.ts", kind: "decoder", names: [...LLAMA, ...expand(`${L}self_attn.{q_proj,k_proj,v_proj}.bias`)], conventions: { ...PLAIN, tieDefault: false } },
  { arch: "Qwen3ForCausalLM", file: "models/llama.ts", kind: "decoder", names: [...LLAMA, ...QK_NORM], conventions: PLAIN },
  { arch: "Gemma2ForCausalLM", file: "models/gemma.ts", kind: "decoder", names: GEMMA2, conventions: { ...GEMMA, softcaps: { attn: 50, final: 30 } } },
  { arch: "Gemma3ForCausalLM", file: "models/gemma.ts", kind: "decoder", names: [...GEMMA2, ...QK_NORM], conventions: { ...GEMMA, softcaps: { attn: undefined, final: undefined } } },
  {
    arch: "OPTForCausalLM",
    file: "models/opt.ts",
    kind: "decoder",
    names: expand("model.decoder.{embed_tokens,embed_positions}.weight", "model.decoder.final_layer_norm.{weight,bias}", `${OPT_L}self_attn.{q_proj,k_proj,v_proj,out_proj}.weight`, `${OPT_L}self_attn.{q_proj,k_proj,v_proj,out_proj}.bias`, `${OPT_L}{self_attn_layer_norm,final_layer_norm,fc1,fc2}.weight`, `${OPT_L}{self_attn_layer_norm,final_layer_norm,fc1,fc2}.bias`),
    conventions: { ...PLAIN, positionOffset: 2, tieDefault: true, epsDefault: 1e-5, actDefault: "relu" },
  },
  {
    arch: "GPT2LMHeadModel",
    file: "models/gpt2.ts",
    kind: "decoder",
    names: expand("transformer.{wte,wpe}.weight", "transformer.ln_f.{weight,bias}", "transformer.h.{i}.{ln_1,ln_2,attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.weight", "transformer.h.{i}.{ln_1,ln_2,attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.bias"),
    conventions: { ...PLAIN, transposed: true, tieDefault: true, epsDefault: 1e-5, actDefault: "gelu_new" },
  },
  { arch: "MambaForCausalLM", file: "models/mamba.ts", kind: "stateful", names: expand("backbone.{embeddings,norm_f}.weight", `${MAMBA_L}norm.weight`, `${MAMBA_L}mixer.{A_log,D,conv1d.weight,conv1d.bias,dt_proj.weight,dt_proj.bias,in_proj.weight,out_proj.weight,x_proj.weight}`), conventions: PLAIN, customOps: ["MambaMixer"] },
  { arch: "Mamba2ForCausalLM", file: "models/mamba.ts", kind: "stateful", names: expand("backbone.{embeddings,norm_f}.weight", `${MAMBA_L}norm.weight`, `${MAMBA_L}mixer.{A_log,D,conv1d.weight,conv1d.bias,dt_bias,in_proj.weight,norm.weight,out_proj.weight}`), conventions: PLAIN, customOps: ["Mamba2Mixer"] },
  { arch: "JambaForCausalLM", file: "models/jamba.ts", kind: "stateful", names: [...HYBRID_ATTN, ...expand(`${L}mamba.{A_log,D,conv1d.weight,dt_proj.weight,in_proj.weight,out_proj.weight,x_proj.weight,b_layernorm.weight,c_layernorm.weight,dt_layernorm.weight}`, `${L}feed_forward.router.weight`)], conventions: PLAIN, customOps: ["MambaMixer", "SparseMoeBlock"] },
  { arch: "BambaForCausalLM", file: "models/bamba.ts", kind: "stateful", names: [...HYBRID_ATTN, ...expand(`${L}mamba.{A_log,D,conv1d.weight,conv1d.bias,dt_bias,in_proj.weight,norm.weight,out_proj.weight}`)], conventions: PLAIN, customOps: ["Mamba2Mixer"] },
  { arch: "Lfm2ForCausalLM", file: "models/lfm2.ts", kind: "stateful", names: expand("model.{embed_tokens,embedding_norm}.weight", `${L}conv.{conv,in_proj,out_proj}.weight`, `${L}feed_forward.{w1,w2,w3}.weight`, `${L}{ffn_norm,operator_norm}.weight`, `${L}self_attn.{q_layernorm,k_layernorm,q_proj,k_proj,v_proj,out_proj}.weight`), conventions: PLAIN, customOps: ["CausalShortConv"] },
  { arch: "MiniMaxForCausalLM", file: "models/minimax.ts", kind: "stateful", names: expand("model.{embed_tokens,norm}.weight", `${L}block_sparse_moe.gate.weight`, `${L}block_sparse_moe.experts.{i}.{w1,w2,w3}.weight`, `${L}self_attn.{qkv_proj,output_gate,out_proj,norm}.weight`, `${L}self_attn.{slope_rate,query_decay,key_decay,diagonal_decay}`), conventions: PLAIN, customOps: ["LinearAttention", "SparseMoeBlock"] },
  { arch: "Qwen3MoeForCausalLM", file: "models/qwen3_moe.ts", kind: "moe", names: [...LLAMA.filter((n) => !n.includes(".mlp.")), ...QK_NORM, ...expand(`${L}mlp.gate.weight`, `${L}mlp.experts.{i}.{gate_proj,up_proj,down_proj}.weight`)], conventions: { ...PLAIN, topkRenormDefault: false }, customOps: ["SparseMoeBlock"] },
];

/** Tensor names with every index segment as {i}, without the head (tied or not says nothing of structure). */
export function structureOf(names: Iterable<string>): Set<string> {
  return new Set([...names].map((n) => n.replace(/\.\d+(?=\.|$)/g, ".{i}")).filter((n) => n !== "lm_head.weight"));
}

export interface ArchitectureMatch {
  readonly family: Family;
  /** |shared| / |either|, 1 for the same tensor names */
  readonly similarity: number;
  /** tensors (per layer as {i}) the family does not have, and the family's the checkpoint lacks */
  readonly extra: readonly string[];
  readonly missing: readonly string[];
}

/** Every known architecture, closest first (ties keep the table's order). */
export function rankArchitectures(tensors: CheckpointShape): ArchitectureMatch[] {
  const ours = structureOf(tensors.keys());
  return FAMILIES.map((family) => {
    const theirs = structureOf(family.names);
    const shared = [...ours].filter((n) => theirs.has(n)).length;
    return {
      family,
      similarity: shared / (ours.size + theirs.size - shared),
      extra: [...ours].filter((n) => !theirs.has(n)),
      missing: [...theirs].filter((n) => !ours.has(n)),
    };
  }).sort((a, b) => b.similarity - a.similarity);
}
