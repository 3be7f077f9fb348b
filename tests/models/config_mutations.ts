/**
 * Test support: mutations of a fixture's config.json. Every numeric field of each architecture's
 * config (nested rope fields included) gets hostile values; what must happen depends on what the
 * field is. A size the model reads must be refused (CONFIG_INVALID) for every value that is not a
 * sane positive integer; a field the model ignores may load; deleting a field may load (defaults).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ErrorCode } from "../../runtime/engine/errors.ts";
import { fixture } from "../fixture_copy.ts";
import { FIXTURES, type FixtureFacts } from "../fixtures/index.ts";

/** One fixture of each architecture (the first of each model type, random weights): every config parser once. */
export const ONE_PER_ARCHITECTURE: readonly FixtureFacts[] = FIXTURES.filter(
  (f, i) => !f.trained && FIXTURES.findIndex((g) => !g.trained && g.modelType === f.modelType) === i,
);

/** What a mutated model folder must do when loaded the way `kiln run` loads it. */
export interface Expectation {
  /** codes a refusal may carry */
  readonly codes: readonly ErrorCode[];
  /** whether loading (and a short generation) may succeed */
  readonly mayLoad: boolean;
  /** a successful load must generate exactly the unmutated folder's tokens */
  readonly sameTokens?: boolean;
}

export interface Mutation {
  readonly fixture: string;
  readonly name: string;
  /** alters the working copy of the fixture folder in place */
  readonly apply: (dir: string) => void;
  readonly expect: Expectation;
}

/** Every code a bad model file may legitimately produce. */
export const FILE_CODES: readonly ErrorCode[] = [
  "CONFIG_INVALID", "SAFETENSORS_INVALID", "SAFETENSORS_DTYPE", "TENSOR_MISSING", "TENSOR_UNUSED",
  "TENSOR_SHAPE", "TOKENIZER_INVALID", "MODEL_NOT_FOUND", "ARCH_UNKNOWN",
];
export const refused = (...codes: ErrorCode[]): Expectation => ({ codes, mayLoad: false });
export const typed: Expectation = { codes: FILE_CODES, mayLoad: true };
const harmless: Expectation = { codes: FILE_CODES, mayLoad: true, sameTokens: true };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const NAN: Json = { __float__: "NaN" };
const INF: Json = { __float__: "Infinity" };
const SIZE_BAD: [string, Json][] = [
  ["-1", -1], ["0", 0], ["1.5", 1.5], ['"NaN"', "NaN"], ["NaN", NAN], ["1e9", 1e9], ["1e300", 1e300], ['"64"', "64"], ["true", true], ["[]", []],
];
const COUNT_BAD = SIZE_BAD.filter(([label]) => label !== "0");
const POSITIVE_BAD: [string, Json][] = [["-1", -1], ["0", 0], ['"NaN"', "NaN"], ["NaN", NAN], ["Infinity", INF], ['"1e-5"', "1e-5"], ["true", true]];
const EPS_BAD: [string, Json][] = [...POSITIVE_BAD, ["1.5", 1.5], ["1e9", 1e9], ["1e300", 1e300]];
const FINITE_BAD: [string, Json][] = [['"NaN"', "NaN"], ["NaN", NAN], ["Infinity", INF], ['"1"', "1"], ["true", true]];
const UNIT_BAD: [string, Json][] = [["-1", -1], ["0", 0], ["1.5", 1.5], ["NaN", NAN], ['"0.5"', "0.5"]];
const NON_NEGATIVE_BAD: [string, Json][] = [["-1", -1], ["NaN", NAN], ["Infinity", INF], ['"50"', "50"]];
/** Values for fields whose reading is conditional or absent: any typed outcome will do. */
const OTHER: [string, Json][] = [["-1", -1], ["1e300", 1e300], ['"x"', "x"]];

type FieldClass = "size" | "count" | "positive" | "eps" | "finite" | "unit" | "nonNegative" | "ignored" | "other";
const BAD_VALUES: Record<Exclude<FieldClass, "ignored" | "other">, [string, Json][]> = {
  size: SIZE_BAD, count: COUNT_BAD, positive: POSITIVE_BAD, eps: EPS_BAD, finite: FINITE_BAD, unit: UNIT_BAD, nonNegative: NON_NEGATIVE_BAD,
};

// prettier-ignore
const SIZE_FIELDS = [
  "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
  "vocab_size", "max_position_embeddings", "sliding_window", "n_embd", "n_head", "n_layer", "n_positions", "ffn_dim",
  "word_embed_proj_dim", "conv_kernel", "state_size", "expand", "time_step_rank", "num_heads", "n_groups", "mamba_d_conv",
  "mamba_d_state", "mamba_dt_rank", "mamba_expand", "mamba_d_head", "mamba_n_groups", "mamba_n_heads", "attn_layer_period",
  "expert_layer_period", "num_experts", "num_experts_per_tok", "num_local_experts", "moe_intermediate_size",
  "decoder_sparse_step", "conv_L_cache",
];
// prettier-ignore
const IGNORED_FIELDS = [
  "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "init_std", "attention_dropout", "dropout", "layerdrop",
  "attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout", "pretraining_tp", "router_aux_loss_coef",
  "router_jitter_noise", "z_loss_coefficient", "num_logits_to_keep", "time_step_floor", "time_step_max", "time_step_min",
  "time_step_scale", "chunk_size", "mamba_chunk_size", "block_size",
];
const CLASS_BY_KEY: Readonly<Record<string, FieldClass>> = {
  ...Object.fromEntries(SIZE_FIELDS.map((k) => [k, "size" as const])),
  ...Object.fromEntries(IGNORED_FIELDS.map((k) => [k, "ignored" as const])),
  attn_layer_offset: "count", expert_layer_offset: "count",
  rms_norm_eps: "eps", layer_norm_epsilon: "eps", norm_eps: "eps",
  rope_theta: "positive", query_pre_attn_scalar: "positive", partial_rotary_factor: "unit",
  attn_logit_softcapping: "nonNegative", final_logit_softcapping: "nonNegative",
  full_attn_alpha_factor: "finite", full_attn_beta_factor: "finite", linear_attn_alpha_factor: "finite",
  linear_attn_beta_factor: "finite", mlp_alpha_factor: "finite", mlp_beta_factor: "finite",
};
/** Fields a fixture's architecture reads only in another configuration, or not at all. */
const NOT_READ: Readonly<Record<string, readonly string[]>> = {
  mamba: ["expand"], // intermediate_size is given
  mamba2: ["time_step_rank"],
  gemma3: ["_sliding_window_pattern"], // layer_types is given
  bamba: ["partial_rotary_factor"], // rope_parameters carries its own
  lfm2: ["block_ffn_dim_multiplier", "block_multiple_of"], // block_auto_adjust_ff_dim is false
  "qwen3-moe": ["num_local_experts"], // 0 is allowed (all dense): tested as "count" below
};

function classOf(fixtureName: string, path: readonly string[]): FieldClass {
  const key = path[path.length - 1] ?? "";
  if (fixtureName === "qwen3-moe" && key === "num_local_experts") return "count";
  if (path.length === 1 && NOT_READ[fixtureName]?.includes(key)) return "other";
  return CLASS_BY_KEY[key] ?? "other";
}

/** Dotted paths of every number in the config (lists of numbers count as one field). */
function numericFields(obj: JsonObject, prefix: readonly string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === "number") out.push([...prefix, k]);
    else if (v !== null && typeof v === "object" && !Array.isArray(v)) out.push(...numericFields(v, [...prefix, k]));
  }
  return out;
}

export function readConfig(name: string): JsonObject {
  return JSON.parse(readFileSync(join(fixture(name), "config.json"), "utf8")) as JsonObject;
}

/** A mutation that rewrites config.json through `edit` (which gets a fresh copy of the original). */
export function configEdit(fixtureName: string, name: string, edit: (c: JsonObject) => void, expect: Expectation): Mutation {
  return {
    fixture: fixtureName,
    name: `config.json ${name}`,
    apply: (dir) => {
      const c = readConfig(fixtureName);
      edit(c);
      writeFileSync(join(dir, "config.json"), JSON.stringify(c));
    },
    expect,
  };
}

function setPath(obj: JsonObject, path: readonly string[], value: Json | undefined): void {
  let o: JsonObject = obj;
  for (const k of path.slice(0, -1)) o = o[k] as JsonObject;
  const last = path[path.length - 1] ?? "";
  if (value === undefined) delete o[last];
  else o[last] = value;
}

/** Hostile values for every numeric field of the fixture's config. */
export function numericFieldMutations(fixtureName: string): Mutation[] {
  const out: Mutation[] = [];
  for (const path of numericFields(readConfig(fixtureName))) {
    const cls = classOf(fixtureName, path);
    const field = path.join(".");
    const values = cls === "ignored" || cls === "other" ? OTHER : BAD_VALUES[cls];
    const expectBad = cls === "ignored" ? harmless : cls === "other" ? typed : refused("CONFIG_INVALID");
    for (const [label, value] of values) out.push(configEdit(fixtureName, `${field} = ${label}`, (c) => setPath(c, path, value), expectBad));
    out.push(configEdit(fixtureName, `${field} deleted`, (c) => setPath(c, path, undefined), cls === "ignored" ? harmless : typed));
  }
  return out;
}
