/**
 * What `kiln new-model` decides before writing a decoder model file: the tensor layout
 * (decoder_layout.ts), the closest architecture's conventions (architecture_match.ts), and which
 * config keys hold each value. A value neither the config nor the family's conventions state is
 * recorded as a TODO (written as a call that throws), never guessed. A checkpoint with sparse MoE
 * blocks is planned as the decoder around them (each block read as a stand-in MLP) plus the
 * blocks' own plan (moe_code.ts).
 */
import type { ConfigReader } from "../hf_config.ts";
import type { ArchitectureMatch, Conventions } from "./architecture_match.ts";
import type { DecoderLayout } from "./decoder_layout.ts";
import { mathKeyReasons } from "./generic_config.ts";
import { planMoe, type MoePlan } from "./moe_code.ts";
import type { MoeLayout } from "./moe_layout.ts";

export interface ConfigKeys {
  readonly hidden: string | undefined;
  readonly heads: string | undefined;
  readonly kvHeads: string | undefined;
  readonly headDim: string | undefined;
  readonly layers: string | undefined;
  readonly vocab: string | undefined;
  readonly maxPositions: string | undefined;
  readonly intermediate: string | undefined;
  readonly eps: string | undefined;
  readonly act: string | undefined;
}

export type RopePlan = "learned" | "single" | "per_layer_type";
export type WindowPlan = "layer_types" | "use_sliding_window" | "uniform";

export interface DecoderPlan {
  readonly arch: string;
  /** class-name stem: MyLlamaForCausalLM → MyLlama */
  readonly stem: string;
  readonly match: ArchitectureMatch;
  readonly conv: Conventions;
  readonly layout: DecoderLayout;
  readonly keys: ConfigKeys;
  readonly norm: "rms" | "layer";
  /** the MLP width from the tensors (used when the config states none) */
  readonly intermediateFromTensors: number;
  readonly rope: RopePlan;
  readonly windows: WindowPlan;
  /** the sparse MoE blocks that replace the MLP on some or all layers */
  readonly moe: MoePlan | undefined;
  /** config keys that change the math in ways this plan does not build: each becomes a todo() in forward */
  readonly unbuilt: readonly string[];
}

const first = (c: ConfigReader, keys: readonly string[]): string | undefined => keys.find((k) => c.has(k));

/** Gemma's config keys are part of its conventions; others' math keys are not built. */
const GEMMA_KEYS = /^(attn_logit_softcapping|final_logit_softcapping|query_pre_attn_scalar)\b/;

/** The MLP width from its input projection: [out, in], or [in, out] when stored transposed (Conv1D). */
function intermediateWidth(layout: DecoderLayout, transposed: boolean): number {
  const m = layout.mlpLayout;
  const out = (shape: readonly number[]): number => (transposed ? shape[1] : shape[0]) ?? 0;
  switch (m.kind) {
    case "gated":
      return out(m.gate.shape);
    case "gated_fused":
      return out(m.gateUp.shape) / 2;
    case "plain":
      return out(m.up.shape);
  }
}

export function planDecoder(arch: string, c: ConfigReader, layout: DecoderLayout, match: ArchitectureMatch, moeLayout?: MoeLayout): DecoderPlan {
  const conv = match.family.conventions;
  const keys: ConfigKeys = {
    hidden: first(c, ["hidden_size", "n_embd", "d_model"]),
    heads: first(c, ["num_attention_heads", "n_head"]),
    kvHeads: first(c, ["num_key_value_heads"]),
    headDim: first(c, ["head_dim"]),
    layers: first(c, ["num_hidden_layers", "n_layer"]),
    vocab: first(c, ["vocab_size"]),
    maxPositions: first(c, ["max_position_embeddings", "n_positions"]),
    intermediate: first(c, ["intermediate_size", "ffn_dim", "n_inner"]),
    eps: first(c, ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"]),
    act: first(c, ["hidden_act", "activation_function", "hidden_activation"]),
  };
  const biased = layout.inputNorm.bias || layout.finalNorm.bias;
  const norm = biased || (keys.eps !== undefined && keys.eps !== "rms_norm_eps") ? "layer" : "rms";
  const nestedRope = c.isObject("rope_parameters") && c.object("rope_parameters").keys().every((k) => c.object("rope_parameters").isObject(k));
  const rope: RopePlan = layout.positions.kind === "learned" ? "learned" : nestedRope ? "per_layer_type" : "single";
  const windows: WindowPlan = c.has("layer_types") ? "layer_types" : c.has("use_sliding_window") ? "use_sliding_window" : "uniform";
  const moe = moeLayout === undefined ? undefined : planMoe(c, moeLayout, conv, match.family.arch);
  const unbuilt = [...mathKeyReasons(c).filter((r) => !(conv.queryPreAttnScalar && GEMMA_KEYS.test(r.replace(/^config key /, "")))), ...(moe?.unbuilt ?? [])];
  const stem = arch.replace(/(?:ForCausalLM|LMHeadModel)$/, "") || "Generated";
  return { arch, stem, match, conv, layout, keys, norm, intermediateFromTensors: intermediateWidth(layout, conv.transposed), rope, windows, moe, unbuilt };
}
