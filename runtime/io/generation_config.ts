/**
 * Sampling defaults from a model folder's `generation_config.json`. The file is optional: a folder
 * without one has no defaults and no EOS ids (callers then fall back to their own defaults).
 */
import fs from "node:fs";
import nodePath from "node:path";
import { POSITIVE, VOCAB } from "../../models/config_limits.ts";
import { readJsonConfig, type ConfigReader } from "../../models/hf_config.ts";

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
  set("bosTokenId", c.optInt("bos_token_id", TOKEN_ID));
  set("padTokenId", c.optInt("pad_token_id", TOKEN_ID));
  set("doSample", c.optBool("do_sample"));
  set("temperature", c.optFloat("temperature", NON_NEGATIVE));
  set("topP", c.optFloat("top_p", { min: 0, max: 1 }));
  // top_k 0 is transformers' "no top-k filtering": no default at all, not a top-k of 0 (which the
  // sampling parameters refuse), for every reader of these defaults (server, `kiln run`, library)
  const topK = c.optInt("top_k", { min: 0, max: VOCAB.max });
  set("topK", topK === 0 ? undefined : topK);
  set("repetitionPenalty", c.optFloat("repetition_penalty", POSITIVE));
  set("maxNewTokens", c.optInt("max_new_tokens", COUNT));
  return out;
}

/** A token id: non-negative, within the largest vocabulary a config may declare. */
const TOKEN_ID = { min: 0, max: VOCAB.max - 1 } as const;
const NON_NEGATIVE = { min: 0, max: Number.MAX_VALUE } as const;
const COUNT = { min: 0, max: Number.MAX_SAFE_INTEGER } as const;

function eosIds(c: ConfigReader): number[] {
  const v = c.raw["eos_token_id"];
  if (typeof v === "number") return [c.int("eos_token_id", TOKEN_ID)];
  return c.optIntList("eos_token_id", TOKEN_ID) ?? [];
}
