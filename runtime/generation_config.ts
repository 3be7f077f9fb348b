/**
 * Sampling defaults from a model folder's `generation_config.json`. The file is optional: a folder
 * without one has no defaults and no EOS ids (callers then fall back to their own defaults).
 */
import fs from "node:fs";
import nodePath from "node:path";
import { readJsonConfig, type ConfigReader } from "./hf_config.ts";

export interface GenerationDefaults {
  /** Every id that ends generation (`eos_token_id` may be one int or a list). */
  readonly eosTokenIds: readonly number[];
  readonly bosTokenId?: number;
  readonly padTokenId?: number;
  readonly doSample?: boolean;
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly repetitionPenalty?: number;
  readonly maxNewTokens?: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function loadGenerationConfig(modelDir: string): GenerationDefaults {
  const path = nodePath.join(modelDir, "generation_config.json");
  if (!fs.existsSync(path)) return { eosTokenIds: [] };
  const c = readJsonConfig(path, "CONFIG_INVALID");
  const out: Mutable<GenerationDefaults> = { eosTokenIds: eosIds(c) };
  // Assign only what the file states, so absence stays `undefined` rather than a made-up default.
  const set = <K extends Exclude<keyof GenerationDefaults, "eosTokenIds">>(
    key: K,
    value: GenerationDefaults[K] | undefined,
  ): void => {
    if (value !== undefined) out[key] = value;
  };
  set("bosTokenId", c.optInt("bos_token_id"));
  set("padTokenId", c.optInt("pad_token_id"));
  set("doSample", c.optBool("do_sample"));
  set("temperature", nonNegative(c, "temperature"));
  set("topP", nonNegative(c, "top_p"));
  set("topK", nonNegative(c, "top_k", true));
  set("repetitionPenalty", nonNegative(c, "repetition_penalty"));
  set("maxNewTokens", nonNegative(c, "max_new_tokens", true));
  return out;
}

function eosIds(c: ConfigReader): number[] {
  const v = c.raw["eos_token_id"];
  if (typeof v === "number") return [c.int("eos_token_id")];
  return c.optIntList("eos_token_id") ?? [];
}

function nonNegative(c: ConfigReader, key: string, integer = false): number | undefined {
  const v = integer ? c.optInt(key) : c.optFloat(key);
  if (v !== undefined && !(v >= 0)) throw c.error(key, `must be non-negative, got ${v}`);
  return v;
}
