/**
 * A tokenizer's vocabulary as xgrammar's TokenizerInfo takes it: every token's encoded text by id,
 * how to decode that text to bytes (the vocab type), whether the tokenizer prepends a space, and
 * the stop tokens that end a grammar.
 *
 * The vocab type and add_prefix_space are read from tokenizer.json by the rules of xgrammar's
 * `TokenizerInfo.from_huggingface` (HFTokenizerAnalyzer in cpp/tokenizer_info.cc): the decoder, or
 * the first of a Sequence decoder's parts, that is ByteLevel → BYTE_LEVEL, ByteFallback →
 * BYTE_FALLBACK, otherwise RAW; a prefix space when the normalizer (or a part of a Sequence) is
 * Prepend "▁", or the pre-tokenizer is Metaspace with prepend_scheme "always" or "first".
 *
 * One deliberate difference from from_huggingface: added tokens marked special (BOS, pad,
 * <|im_start|>, reserved tokens) get empty text, which xgrammar treats as never part of a grammar.
 * from_huggingface keeps their literal text, so "<|bos|>" can appear inside a JSON string, and the
 * server's default skip_special_tokens then drops it from the text, changing the output the
 * grammar vouched for.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { KilnError } from "../errors.ts";
import { isRecord } from "../../io/tokenizer_json.ts";

export const VOCAB_TYPES = ["RAW", "BYTE_FALLBACK", "BYTE_LEVEL"] as const;
export type VocabType = (typeof VOCAB_TYPES)[number];

/** What the grammar needs of kiln's tokenizer; KilnTokenizer has it. */
export interface GrammarTokenizer {
  /** The model folder holding tokenizer.json. */
  readonly dir: string;
  /** Largest id + 1, added tokens included. */
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  /** The token's text as stored in the vocabulary (byte-level "Ġthe", byte-fallback "<0x0A>"). */
  idToToken(id: number): string | undefined;
}

export interface GrammarVocabularyOptions {
  /**
   * Width of the model's logits row (config.json vocab_size), which may exceed the tokenizer's
   * (padding: Phi-3, DeepSeek-V2) or fall short of it (added tokens the head lacks). Ids from the
   * tokenizer's size up to this are never allowed. Default: the tokenizer's vocabSize.
   */
  readonly vocabSize?: number;
  /**
   * Tokens that end the grammar's output: EOS plus generation_config.json's other eos ids.
   * Default [eosTokenId]; with neither, xgrammar guesses them from token text (</s>, <|eot_id|>, …).
   */
  readonly stopTokenIds?: readonly number[];
}

export interface GrammarVocabulary {
  /** [min(tokenizer vocabSize, vocabSize)] token texts by id; "" = never part of a grammar. */
  readonly encodedVocab: readonly string[];
  readonly vocabType: VocabType;
  readonly addPrefixSpace: boolean;
  /** Ids a bitmask covers: the logits row width the masks are made for. */
  readonly vocabSize: number;
  /** Empty: xgrammar detects stop tokens itself. */
  readonly stopTokenIds: readonly number[];
}

type JsonRecord = Readonly<Record<string, unknown>>;

/** The vocabulary of `tokenizer`, with metadata from `<dir>/tokenizer.json`. */
export function readGrammarVocabulary(tokenizer: GrammarTokenizer, options: GrammarVocabularyOptions = {}): GrammarVocabulary {
  const path = nodePath.join(tokenizer.dir, "tokenizer.json");
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(path, "utf8"));
  } catch (e) {
    throw new KilnError("TOKENIZER_INVALID", `${path}: cannot read tokenizer.json for grammar decoding`, { cause: e });
  }
  if (!isRecord(json)) throw new KilnError("TOKENIZER_INVALID", `${path}: is not a JSON object`);
  return grammarVocabulary(tokenizer, json, options);
}

export function grammarVocabulary(tokenizer: GrammarTokenizer, tokenizerJson: JsonRecord, options: GrammarVocabularyOptions = {}): GrammarVocabulary {
  const vocabSize = options.vocabSize ?? tokenizer.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new KilnError("INVALID_ARGUMENT", `grammar vocabSize must be a positive integer, not ${vocabSize}`);
  }
  const stopTokenIds = options.stopTokenIds ?? (tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId]);
  for (const id of stopTokenIds) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new KilnError("INVALID_ARGUMENT", `grammar stop token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
  }
  const stops = new Set(stopTokenIds);
  const special = specialTokenIds(tokenizerJson);
  const encodedVocab: string[] = [];
  for (let id = 0; id < Math.min(tokenizer.vocabSize, vocabSize); id++) {
    const text = tokenizer.idToToken(id) ?? "";
    encodedVocab.push(special.has(id) && !stops.has(id) ? "" : text);
  }
  return {
    encodedVocab,
    vocabType: detectVocabType(tokenizerJson),
    addPrefixSpace: detectAddPrefixSpace(tokenizerJson),
    vocabSize,
    stopTokenIds,
  };
}

export function detectVocabType(tokenizerJson: JsonRecord): VocabType {
  const decoder = tokenizerJson["decoder"];
  if (!isRecord(decoder)) return "RAW";
  const parts = decoder["type"] === "Sequence" ? decoder["decoders"] : [decoder];
  if (!Array.isArray(parts)) return "RAW";
  for (const part of parts) {
    if (!isRecord(part)) return "RAW";
    if (part["type"] === "ByteLevel") return "BYTE_LEVEL";
    if (part["type"] === "ByteFallback") return "BYTE_FALLBACK";
  }
  return "RAW";
}

export function detectAddPrefixSpace(tokenizerJson: JsonRecord): boolean {
  const normalizer = tokenizerJson["normalizer"];
  if (isRecord(normalizer)) {
    const parts = normalizer["type"] === "Sequence" ? normalizer["normalizers"] : [normalizer];
    if (Array.isArray(parts) && parts.some((p) => isRecord(p) && p["type"] === "Prepend" && p["prepend"] === "▁")) return true;
  }
  const pre = tokenizerJson["pre_tokenizer"];
  return isRecord(pre) && pre["type"] === "Metaspace" && (pre["prepend_scheme"] === "always" || pre["prepend_scheme"] === "first");
}

/** Ids of tokenizer.json's added tokens marked `special: true`. */
function specialTokenIds(tokenizerJson: JsonRecord): Set<number> {
  const ids = new Set<number>();
  const added = tokenizerJson["added_tokens"];
  if (!Array.isArray(added)) return ids;
  for (const token of added) {
    if (isRecord(token) && token["special"] === true && typeof token["id"] === "number") ids.add(token["id"]);
  }
  return ids;
}
