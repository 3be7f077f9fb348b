/**
 * The head layout of an attention layer, read from an HF config once and checked where it is
 * read: sizes in range, kv heads dividing the query heads (GQA groups must be whole), and the
 * hidden size dividing into heads when the config leaves head_dim to be derived. Every model with
 * attention reads its sizes here, so the checks cannot drift apart between architectures.
 */
import type { ConfigReader } from "../hf_config.ts";
import { HEAD_DIM, HEADS, WIDTH } from "../config_limits.ts";

export interface AttentionSizes {
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/** The config fields an architecture spells the sizes with; absent kvHeads/headDim: not configurable. */
export interface AttentionKeys {
  readonly hidden: string;
  readonly heads: string;
  readonly kvHeads: string | undefined;
  readonly headDim: string | undefined;
}

export const HF_ATTENTION_KEYS: AttentionKeys = {
  hidden: "hidden_size",
  heads: "num_attention_heads",
  kvHeads: "num_key_value_heads",
  headDim: "head_dim",
};

export function parseAttentionSizes(c: ConfigReader, keys: AttentionKeys = HF_ATTENTION_KEYS): AttentionSizes {
  const hiddenSize = c.int(keys.hidden, WIDTH);
  const numHeads = c.int(keys.heads, HEADS);
  const numKvHeads = (keys.kvHeads === undefined ? undefined : c.optInt(keys.kvHeads, HEADS)) ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw c.error(keys.kvHeads ?? keys.heads, `is ${numKvHeads}, which does not divide ${keys.heads} ${numHeads} (each kv head serves a whole group of query heads)`);
  }
  const explicit = keys.headDim === undefined ? undefined : c.optInt(keys.headDim, HEAD_DIM);
  if (explicit !== undefined) return { hiddenSize, numHeads, numKvHeads, headDim: explicit };
  if (hiddenSize % numHeads !== 0) {
    const derived = keys.headDim === undefined ? "" : ` (${keys.headDim} is not given, so it is ${keys.hidden} / ${keys.heads})`;
    throw c.error(keys.heads, `is ${numHeads}, which does not divide ${keys.hidden} ${hiddenSize}${derived}`);
  }
  return { hiddenSize, numHeads, numKvHeads, headDim: hiddenSize / numHeads };
}
