/**
 * The config half of the generic decoder's fit: the sizes, norm, activation and positions a
 * checkpoint layout (decoder_layout.ts) needs, read from config.json and checked against the
 * tensors' shapes. Config keys that change the math in ways the generic shape does not model
 * (soft-caps, multipliers, parallel residuals, ...) refuse the fit rather than being ignored.
 */
import type { UnaryOp } from "../../compiler/ir.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { EPS, LAYERS, POSITIONS, VOCAB } from "../config_limits.ts";
import type { ConfigReader, JsonValue } from "../hf_config.ts";
import { checkRotaryDim, parseRope, rotaryDimOf, type RopeConfig } from "../rope_config.ts";
import { parseActivation } from "../dsl/activation.ts";
import { parseAttentionSizes } from "../dsl/attention_sizes.ts";
import { layerTypeList } from "../dsl/layer_types.ts";
import { describeShape } from "./checkpoint_shape.ts";
import type { DecoderLayout, ProjSlot } from "./decoder_layout.ts";

export type NormKind = "rms" | "layer";

export interface GenericDecoderSpec {
  readonly layout: DecoderLayout;
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly norm: NormKind;
  readonly normEps: number;
  readonly act: UnaryOp;
  /** rotary settings, undefined when positions are a learned table */
  readonly rope: { readonly config: RopeConfig; readonly rotaryDim: number } | undefined;
  readonly tieWordEmbeddings: boolean;
  /** per layer: the sliding window, or undefined for full attention */
  readonly slidingWindows: readonly (number | undefined)[];
}

export type SpecMatch = { readonly ok: true; readonly spec: GenericDecoderSpec } | { readonly ok: false; readonly reasons: readonly string[] };

/** Config keys whose non-neutral values change what a layer computes beyond the generic shape. */
const MATH_KEYS: readonly { readonly key: string; readonly neutral: readonly JsonValue[]; readonly why: string }[] = [
  { key: "attn_logit_softcapping", neutral: [0], why: "soft-capped attention scores" },
  { key: "final_logit_softcapping", neutral: [0], why: "soft-capped logits" },
  { key: "query_pre_attn_scalar", neutral: [], why: "a query scale other than head_dim^-0.5" },
  { key: "logit_scale", neutral: [1], why: "scaled logits" },
  { key: "logits_scaling", neutral: [1], why: "scaled logits" },
  { key: "embedding_multiplier", neutral: [1], why: "scaled embeddings" },
  { key: "residual_multiplier", neutral: [1], why: "scaled residuals" },
  { key: "attention_multiplier", neutral: [], why: "a query scale other than head_dim^-0.5" },
  { key: "scale_emb", neutral: [1], why: "scaled embeddings" },
  { key: "scale_depth", neutral: [], why: "scaled residuals" },
  { key: "use_parallel_residual", neutral: [false], why: "attention and MLP in parallel" },
  { key: "parallel_attn", neutral: [false], why: "attention and MLP in parallel" },
  { key: "alibi", neutral: [false], why: "ALiBi positions" },
  { key: "clip_qkv", neutral: [], why: "clipped q/k/v" },
  { key: "do_layer_norm_before", neutral: [true], why: "post-norm layers" },
  { key: "_remove_final_layer_norm", neutral: [false], why: "no final norm" },
  { key: "use_bidirectional_attention", neutral: [false], why: "bidirectional attention" },
  { key: "scale_attn_weights", neutral: [true], why: "unscaled attention scores" },
  { key: "scale_attn_by_inverse_layer_idx", neutral: [false], why: "per-layer score scales" },
];

const EPS_KEYS: readonly { readonly key: string; readonly norm: NormKind }[] = [
  { key: "rms_norm_eps", norm: "rms" },
  { key: "layer_norm_eps", norm: "layer" },
  { key: "layer_norm_epsilon", norm: "layer" },
];

const ACT_KEYS = ["hidden_act", "activation_function", "hidden_activation"] as const;
const INTERMEDIATE_KEYS = ["intermediate_size", "ffn_dim", "n_inner"] as const;
const ROPE_KEYS = ["rope_parameters", "rope_theta", "rope_scaling"] as const;
const LAYER_TYPES = ["full_attention", "sliding_attention"] as const;

/** `read()`, or undefined with the config error's message added to `reasons`. */
function attempt<T>(reasons: string[], read: () => T): T | undefined {
  try {
    return read();
  } catch (e) {
    if (!isKilnError(e)) throw e;
    reasons.push(e.message);
    return undefined;
  }
}

function expectShape(reasons: string[], what: string, slot: ProjSlot, rows: number, cols: number): void {
  const [r, c] = slot.shape;
  if (r !== rows || c !== cols) reasons.push(`${what} ${slot.name}.weight is ${describeShape(slot.shape)}; the config implies [${rows}, ${cols}]`);
}

function slidingWindows(c: ConfigReader, numLayers: number): (number | undefined)[] {
  const window = c.optInt("sliding_window", POSITIONS);
  if (c.has("layer_types")) return layerTypeList(c, numLayers, LAYER_TYPES).map((t) => (t === "sliding_attention" ? window : undefined));
  if (c.has("use_sliding_window")) {
    const on = c.optBool("use_sliding_window") ?? false;
    const from = c.optInt("max_window_layers", { min: 0, max: LAYERS.max }) ?? 0;
    return Array.from({ length: numLayers }, (_, i) => (on && i >= from ? window : undefined));
  }
  return Array.from({ length: numLayers }, () => window);
}

/** The MLP's intermediate size as the tensors give it, checked for agreement between its projections. */
function intermediateOf(layout: DecoderLayout, hidden: number, reasons: string[]): number | undefined {
  const m = layout.mlpLayout;
  switch (m.kind) {
    case "gated": {
      const I = m.gate.shape[0] ?? 0;
      expectShape(reasons, "MLP gate", m.gate, I, hidden);
      expectShape(reasons, "MLP up", m.up, I, hidden);
      expectShape(reasons, "MLP down", m.down, hidden, I);
      return I;
    }
    case "gated_fused": {
      const I = (m.gateUp.shape[0] ?? 0) / 2;
      expectShape(reasons, "MLP gate_up", m.gateUp, 2 * I, hidden);
      expectShape(reasons, "MLP down", m.down, hidden, I);
      return I;
    }
    case "plain": {
      const I = m.up.shape[0] ?? 0;
      expectShape(reasons, "MLP up", m.up, I, hidden);
      expectShape(reasons, "MLP down", m.down, hidden, I);
      return I;
    }
  }
}

/** The config keys set to values that change the math beyond the generic shape, as reasons. */
export function mathKeyReasons(c: ConfigReader): string[] {
  return MATH_KEYS.flatMap((m) => {
    const v = c.raw[m.key];
    return v !== undefined && v !== null && !m.neutral.includes(v) ? [`config key ${m.key} = ${JSON.stringify(v)} means ${m.why}`] : [];
  });
}

export function matchGenericSpec(layout: DecoderLayout, c: ConfigReader): SpecMatch {
  const reasons: string[] = mathKeyReasons(c);
  // Gemma's sandwich norms come with (1 + w) weights and scaled embeddings, which no tensor shows
  if (layout.sandwich) reasons.push(`layers normalize the attention and MLP outputs again (${layout.sandwich.postAttn.name}, ${layout.sandwich.postMlp.name}): sandwich norms are not the generic shape`);
  const sizes = attempt(reasons, () => parseAttentionSizes(c));
  const vocabSize = attempt(reasons, () => c.int("vocab_size", VOCAB));
  const numLayers = attempt(reasons, () => c.int("num_hidden_layers", LAYERS));
  if (numLayers !== undefined && numLayers !== layout.numLayers) reasons.push(`num_hidden_layers is ${numLayers}; the checkpoint has ${layout.numLayers} layers`);
  const maxPositions = attempt(reasons, () => c.int("max_position_embeddings", POSITIONS));

  const epsKey = EPS_KEYS.find((e) => c.has(e.key));
  if (epsKey === undefined) reasons.push(`no norm epsilon (${EPS_KEYS.map((e) => e.key).join(", ")}): the norm's epsilon is not stated`);
  const normEps = epsKey === undefined ? undefined : attempt(reasons, () => c.float(epsKey.key, EPS));
  const norms = [layout.inputNorm, layout.preMlpNorm, layout.finalNorm];
  if (epsKey?.norm === "rms" && norms.some((n) => n.bias)) reasons.push("the config gives rms_norm_eps but the norms have biases (LayerNorm)");
  if (norms.some((n) => n.bias) !== norms.every((n) => n.bias)) reasons.push("some norms have a bias and some do not");

  const actKey = ACT_KEYS.find((k) => c.has(k));
  if (actKey === undefined) reasons.push(`no activation (${ACT_KEYS.join(", ")}) is stated`);
  const act = actKey === undefined ? undefined : attempt(reasons, () => parseActivation(c, [actKey], "silu"));

  let rope: GenericDecoderSpec["rope"];
  if (layout.positions.kind === "rotary") {
    if (!ROPE_KEYS.some((k) => c.has(k))) reasons.push(`no learned position table and no rotary settings (${ROPE_KEYS.join(", ")}): the positions are not stated`);
    else if (sizes) {
      const config = attempt(reasons, () => parseRope(c));
      const checked = config !== undefined && attempt(reasons, () => (checkRotaryDim(c, config, sizes.headDim), true)) === true;
      if (config && checked) rope = { config, rotaryDim: rotaryDimOf(config, sizes.headDim) };
    }
  } else if (maxPositions !== undefined && layout.positions.rows !== maxPositions) {
    reasons.push(`the position table ${layout.positions.name} has ${layout.positions.rows} rows for max_position_embeddings ${maxPositions}: where position 0 starts is not stated`);
  }

  const tieKey = c.raw["tie_word_embeddings"];
  const tied = attempt(reasons, () => c.optBool("tie_word_embeddings"));
  if (!layout.lmHead && tied === false) reasons.push("lm_head.weight is absent but tie_word_embeddings is false");
  if (layout.lmHead && (tieKey === undefined || tieKey === null)) reasons.push("lm_head.weight is stored but tie_word_embeddings is not stated (whether the head is tied is not stated)");

  let intermediateSize: number | undefined;
  if (sizes && vocabSize !== undefined) {
    const { hiddenSize: H, numHeads, numKvHeads, headDim: D } = sizes;
    const [V, EH] = layout.embed.shape;
    if (V !== vocabSize || EH !== H) reasons.push(`the embedding is ${describeShape(layout.embed.shape)}; vocab_size and hidden_size imply [${vocabSize}, ${H}]`);
    if (layout.qkv.kind === "split") {
      expectShape(reasons, "attention", layout.qkv.q, numHeads * D, H);
      expectShape(reasons, "attention", layout.qkv.k, numKvHeads * D, H);
      expectShape(reasons, "attention", layout.qkv.v, numKvHeads * D, H);
      const { q, k, v } = layout.qkv;
      if (q.bias !== k.bias || k.bias !== v.bias) reasons.push("q, k and v do not all have (or all lack) a bias");
    } else expectShape(reasons, "attention", layout.qkv.qkv, (numHeads + 2 * numKvHeads) * D, H);
    expectShape(reasons, "attention", layout.o, H, numHeads * D);
    for (const n of norms) if (n.size !== H) reasons.push(`norm ${n.name} has size ${n.size}; hidden_size is ${H}`);
    if (layout.qkNorm) {
      for (const n of [layout.qkNorm.q, layout.qkNorm.k]) {
        if (n.size !== D) reasons.push(`${n.name} has size ${n.size}; the generic shape normalizes q and k per head (head_dim ${D})`);
        if (n.bias) reasons.push(`${n.name} has a bias; per-head q/k norms are RMS norms`);
      }
    }
    intermediateSize = intermediateOf(layout, H, reasons);
    const iKey = INTERMEDIATE_KEYS.find((k) => c.has(k));
    const stated = iKey === undefined ? undefined : attempt(reasons, () => c.int(iKey));
    if (iKey !== undefined && stated !== undefined && stated !== intermediateSize) reasons.push(`${iKey} is ${stated}; the MLP tensors are ${intermediateSize} wide`);
  }
  const windows = numLayers === undefined ? undefined : attempt(reasons, () => slidingWindows(c, numLayers));

  if (reasons.length > 0 || !sizes || vocabSize === undefined || maxPositions === undefined || normEps === undefined || !epsKey) return { ok: false, reasons };
  if (act === undefined || intermediateSize === undefined || windows === undefined) return { ok: false, reasons };
  return {
    ok: true,
    spec: {
      layout,
      ...sizes,
      intermediateSize,
      vocabSize,
      maxPositions,
      norm: epsKey.norm,
      normEps,
      act,
      rope,
      tieWordEmbeddings: tied ?? !layout.lmHead,
      slidingWindows: windows,
    },
  };
}
