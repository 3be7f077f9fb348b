/**
 * Rotary position embedding settings from an HF config, and the inverse frequencies they imply,
 * computed step by step in float32 exactly as `transformers` (modeling_rope_utils) computes them
 * with torch, so our cos/sin tables match the reference bit for bit (up to the last ulp of pow).
 *
 * Two config spellings exist:
 *   - transformers ≥ 5: `rope_parameters: { rope_type, rope_theta, factor, ... }`, possibly nested
 *     per layer type (`{ full_attention: {...}, sliding_attention: {...} }`);
 *   - older: top-level `rope_theta` plus `rope_scaling: { rope_type | type, factor, ... }` or null.
 */
import { FINITE, POSITIONS, POSITIVE } from "./config_limits.ts";
import { KilnError } from "../runtime/engine/errors.ts";
// Type-only: hf_config.ts re-exports this module, so a value import would be a cycle.
import type { ConfigReader } from "./hf_config.ts";

export type RopeScaling =
  | { readonly type: "default" }
  | { readonly type: "linear"; readonly factor: number }
  | { readonly type: "dynamic"; readonly factor: number; readonly originalMaxPositionEmbeddings: number }
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | {
      readonly type: "yarn";
      /** Effective factor: transformers 5 replaces the configured one by max/original positions when both are given. */
      readonly factor: number;
      readonly originalMaxPositionEmbeddings: number;
      readonly betaFast: number;
      readonly betaSlow: number;
      readonly truncate: boolean;
      /** Multiplies cos and sin (the "mscale"). */
      readonly attentionFactor: number;
    };

export type RopeType = RopeScaling["type"];

export interface RopeConfig {
  readonly theta: number;
  readonly scaling: RopeScaling;
  /** Fraction of head_dim that is rotated (the rest passes through). */
  readonly partialRotaryFactor: number;
}

const DEFAULT_THETA = 10000;

/** Rope settings of a config; `layerType` picks one entry of a per-layer-type `rope_parameters`. */
export function parseRope(reader: ConfigReader, layerType?: string): RopeConfig {
  let params: ConfigReader | undefined;
  if (reader.has("rope_parameters")) {
    params = reader.object("rope_parameters");
    // Per-layer-type form: every value is itself a parameter object.
    const p = params;
    const nested = p.keys().length > 0 && p.keys().every((k) => p.isObject(k));
    if (nested) {
      if (layerType === undefined || !params.has(layerType)) {
        throw reader.error(
          "rope_parameters",
          `is given per layer type (${params.keys().join(", ")}); the layer type "${layerType ?? ""}" is not among them`,
        );
      }
      params = params.object(layerType);
    }
  } else {
    params = reader.optObject("rope_scaling");
  }
  const theta = params?.optFloat("rope_theta", POSITIVE) ?? reader.optFloat("rope_theta", POSITIVE) ?? DEFAULT_THETA;
  const partialRotaryFactor =
    params?.optFloat("partial_rotary_factor") ?? reader.optFloat("partial_rotary_factor") ?? 1;
  if (!(partialRotaryFactor > 0 && partialRotaryFactor <= 1)) {
    throw reader.error("partial_rotary_factor", `must be in (0, 1], got ${partialRotaryFactor}`);
  }
  const scaling = params === undefined ? { type: "default" as const } : parseScaling(reader, params);
  return { theta, scaling, partialRotaryFactor };
}

function parseScaling(reader: ConfigReader, p: ConfigReader): RopeScaling {
  const typeKey = p.has("rope_type") ? "rope_type" : "type";
  const type = p.optString(typeKey) ?? "default";
  const factor = (): number => p.float("factor", POSITIVE);
  const maxPositions = (): number => reader.int("max_position_embeddings", POSITIONS);
  switch (type) {
    case "default":
      return { type };
    case "linear":
      return { type, factor: factor() };
    case "dynamic":
      return {
        type,
        factor: factor(),
        originalMaxPositionEmbeddings: p.optInt("original_max_position_embeddings", POSITIONS) ?? maxPositions(),
      };
    case "llama3":
      return {
        type,
        factor: factor(),
        lowFreqFactor: p.float("low_freq_factor", POSITIVE),
        highFreqFactor: p.float("high_freq_factor", POSITIVE),
        originalMaxPositionEmbeddings: p.int("original_max_position_embeddings", POSITIONS),
      };
    case "yarn":
      return parseYarn(p, factor(), maxPositions);
    default:
      throw p.error(typeKey, `"${type}" is not a supported rope type (default, linear, dynamic, llama3, yarn)`);
  }
}

function parseYarn(p: ConfigReader, configuredFactor: number, maxPositions: () => number): RopeScaling {
  const original = p.optInt("original_max_position_embeddings", POSITIONS);
  // transformers 5 (_compute_yarn_parameters): with an explicit original length the factor becomes
  // max_position_embeddings / original, for DeepSeek-V3-style configs.
  const factor = original === undefined ? configuredFactor : maxPositions() / original;
  const mscale = p.optFloat("mscale", FINITE);
  const mscaleAllDim = p.optFloat("mscale_all_dim", FINITE);
  const yarnMscale = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const attentionFactor =
    p.optFloat("attention_factor", POSITIVE) ??
    (mscale && mscaleAllDim ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor));
  return {
    type: "yarn",
    factor,
    originalMaxPositionEmbeddings: original ?? maxPositions(),
    // Python's `x or default`: a 0 means "use the default" there too.
    betaFast: p.optFloat("beta_fast", FINITE) || 32,
    betaSlow: p.optFloat("beta_slow", FINITE) || 1,
    truncate: p.optBool("truncate") ?? true,
    attentionFactor,
  };
}

/** int(head_dim * partial_rotary_factor), as transformers sizes the rotated part. */
export function rotaryDimOf(rope: RopeConfig, headDim: number): number {
  return Math.trunc(headDim * rope.partialRotaryFactor);
}

/**
 * Checks, where the config is read, that the rotated part of each head is a positive even number
 * of dims (rotation turns pairs); `headDimKey` names the field a user would fix.
 */
export function checkRotaryDim(reader: ConfigReader, rope: RopeConfig, headDim: number, headDimKey = "head_dim"): void {
  const dim = rotaryDimOf(rope, headDim);
  if (dim >= 2 && dim % 2 === 0) return;
  const partial = rope.partialRotaryFactor === 1 ? "" : ` × partial_rotary_factor ${rope.partialRotaryFactor}`;
  throw reader.error(headDimKey, `is ${headDim}${partial}, giving ${dim} rotary dims; rotary embedding needs a positive even number`);
}

/** Factor applied to cos/sin; 1 except for yarn. */
export function ropeAttentionScaling(rope: RopeConfig): number {
  return rope.scaling.type === "yarn" ? rope.scaling.attentionFactor : 1;
}

const f32 = Math.fround;

/** theta^(-2i/dim) for i < dim/2, each step rounded to float32 as torch does. */
function defaultInvFreq(theta: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < out.length; i++) out[i] = f32(1 / f32(Math.pow(f32(theta), f32((2 * i) / dim))));
  return out;
}

/**
 * Inverse frequencies [rotaryDim / 2] for positions within the trained context. For "dynamic"
 * this is the default table: dynamic NTK only changes it for longer sequences, which
 * `ropeInvFreqForLength` handles.
 */
export function ropeInvFreq(rope: RopeConfig, rotaryDim: number): Float32Array {
  if (!(Number.isInteger(rotaryDim) && rotaryDim > 0 && rotaryDim % 2 === 0)) {
    throw new KilnError("INVALID_ARGUMENT", `rotary dimension must be a positive even integer, got ${rotaryDim}`);
  }
  const s = rope.scaling;
  const inv = defaultInvFreq(rope.theta, rotaryDim);
  switch (s.type) {
    case "default":
    case "dynamic":
      return inv;
    case "linear":
      return inv.map((x) => f32(x / f32(s.factor)));
    case "llama3":
      return llama3InvFreq(inv, s);
    case "yarn":
      return yarnInvFreq(rope.theta, rotaryDim, s);
  }
}

/**
 * Inverse frequencies for a sequence of `seqLen` positions (max position id + 1). Only dynamic
 * NTK depends on length: past `maxPos` (config.max_position_embeddings, which is what
 * transformers compares against) the base grows to theta * ((factor * seqLen / maxPos) - (factor - 1))^(dim / (dim - 2)).
 * transformers computes that base from a tensor, hence in float32 here too.
 */
export function ropeInvFreqForLength(rope: RopeConfig, rotaryDim: number, seqLen: number, maxPos: number): Float32Array {
  const s = rope.scaling;
  if (s.type !== "dynamic" || seqLen <= maxPos) return ropeInvFreq(rope, rotaryDim);
  const factor = f32(s.factor);
  const ratio = f32(f32(f32(f32(seqLen) * factor) / f32(maxPos)) - f32(s.factor - 1));
  const base = f32(f32(rope.theta) * f32(Math.pow(ratio, f32(rotaryDim / (rotaryDim - 2)))));
  return ropeInvFreq({ ...rope, theta: base, scaling: { type: "default" } }, rotaryDim);
}

type Llama3 = Extract<RopeScaling, { type: "llama3" }>;

/** Llama 3.1: keep high frequencies, divide low ones by factor, blend linearly in between. */
function llama3InvFreq(inv: Float32Array, s: Llama3): Float32Array {
  const factor = f32(s.factor);
  const old = s.originalMaxPositionEmbeddings;
  const lowWavelen = f32(old / s.lowFreqFactor);
  const highWavelen = f32(old / s.highFreqFactor);
  const out = new Float32Array(inv.length);
  for (let i = 0; i < inv.length; i++) {
    const x = inv[i] ?? 0;
    const wavelen = f32(f32(2 * Math.PI) / x);
    if (wavelen < highWavelen) out[i] = x;
    else if (wavelen > lowWavelen) out[i] = f32(x / factor);
    else {
      const smooth = f32(f32(f32(f32(old) / wavelen) - f32(s.lowFreqFactor)) / f32(s.highFreqFactor - s.lowFreqFactor));
      out[i] = f32(f32(f32(f32(1 - smooth) * x) / factor) + f32(smooth * x));
    }
  }
  return out;
}

type Yarn = Extract<RopeScaling, { type: "yarn" }>;

/** YaRN: interpolate (divide by factor) low frequencies, extrapolate high ones, ramp between. */
function yarnInvFreq(theta: number, dim: number, s: Yarn): Float32Array {
  // Dimension whose wavelength fits `rotations` times in the original context (plain float64, as in Python).
  const correctionDim = (rotations: number): number =>
    (dim * Math.log(s.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(s.betaFast);
  let high = correctionDim(s.betaSlow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // avoid dividing by zero in the ramp
  const factor = f32(s.factor);
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < out.length; i++) {
    const posFreq = f32(Math.pow(f32(theta), f32((2 * i) / dim)));
    const extrapolation = f32(1 / posFreq);
    const interpolation = f32(1 / f32(factor * posFreq));
    const ramp = Math.min(1, Math.max(0, f32(f32(i - f32(low)) / f32(high - low))));
    const extrapolationWeight = f32(1 - ramp);
    out[i] = f32(f32(interpolation * f32(1 - extrapolationWeight)) + f32(extrapolation * extrapolationWeight));
  }
  return out;
}
