/**
 * The vocabulary handed to xgrammar: vocab type and prefix-space detection by the rules of
 * xgrammar's TokenizerInfo.from_huggingface (HFTokenizerAnalyzer), on the shapes real
 * tokenizer.json files have (Llama-2's byte-fallback SentencePiece BPE, Llama-3/Qwen's byte-level
 * BPE, Mistral/Gemma-style Metaspace), and the fortune tokenizer as read from its folder.
 */
import { describe, expect, it } from "vitest";
import { detectAddPrefixSpace, detectVocabType, grammarVocabulary, readGrammarVocabulary } from "../../../runtime/engine/grammar/grammar_vocabulary.ts";
import { isKilnError } from "../../../runtime/engine/errors.ts";
import { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";
import { FORTUNE_DIR } from "./fortune_grammar.ts";

const LLAMA2 = {
  normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
  pre_tokenizer: null,
  decoder: {
    type: "Sequence",
    decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
  },
};
const LLAMA3 = {
  normalizer: null,
  pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Split" }, { type: "ByteLevel", add_prefix_space: false }] },
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
};
const METASPACE = {
  normalizer: null,
  pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
  decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
};

describe("detection", () => {
  it("vocab type: ByteLevel and ByteFallback decoders, alone or in a Sequence; anything else is RAW", () => {
    expect(detectVocabType(LLAMA2)).toBe("BYTE_FALLBACK");
    expect(detectVocabType(LLAMA3)).toBe("BYTE_LEVEL");
    expect(detectVocabType({ decoder: { type: "Sequence", decoders: [{ type: "ByteLevel" }] } })).toBe("BYTE_LEVEL");
    expect(detectVocabType(METASPACE)).toBe("RAW");
    expect(detectVocabType({ decoder: { type: "WordPiece", prefix: "##" } })).toBe("RAW");
    expect(detectVocabType({ decoder: null })).toBe("RAW");
    expect(detectVocabType({})).toBe("RAW");
  });

  it("prefix space: a Prepend ▁ normalizer, or a Metaspace pre-tokenizer that prepends", () => {
    expect(detectAddPrefixSpace(LLAMA2)).toBe(true);
    expect(detectAddPrefixSpace(LLAMA3)).toBe(false);
    expect(detectAddPrefixSpace(METASPACE)).toBe(true);
    expect(detectAddPrefixSpace({ pre_tokenizer: { ...METASPACE.pre_tokenizer, prepend_scheme: "always" } })).toBe(true);
    expect(detectAddPrefixSpace({ pre_tokenizer: { ...METASPACE.pre_tokenizer, prepend_scheme: "never" } })).toBe(false);
    expect(detectAddPrefixSpace({ normalizer: { type: "Prepend", prepend: "▁" } })).toBe(true);
    expect(detectAddPrefixSpace({ normalizer: { type: "Prepend", prepend: " " } })).toBe(false);
  });
});

describe("vocabulary", () => {
  const tokens = ["<s>", "</s>", "<pad>", "a", "b"];
  const fake = { dir: "/nowhere", vocabSize: 5, eosTokenId: 1, idToToken: (id: number) => tokens[id] };
  const added = { added_tokens: [0, 1, 2].map((id) => ({ id, content: tokens[id], special: true })) };

  it("special added tokens have no text, except the stop tokens", () => {
    expect(grammarVocabulary(fake, added).encodedVocab).toEqual(["", "</s>", "", "a", "b"]);
    expect(grammarVocabulary(fake, added, { stopTokenIds: [2] }).encodedVocab).toEqual(["", "", "<pad>", "a", "b"]);
  });

  it("is as wide as the logits row: padded with nothing, or cut to it", () => {
    const wide = grammarVocabulary(fake, added, { vocabSize: 64 });
    expect([wide.vocabSize, wide.encodedVocab.length]).toEqual([64, 5]);
    const narrow = grammarVocabulary(fake, added, { vocabSize: 4 });
    expect([narrow.vocabSize, narrow.encodedVocab]).toEqual([4, ["", "</s>", "", "a"]]);
  });

  it("stop tokens default to EOS, and must lie inside the vocabulary", () => {
    expect(grammarVocabulary(fake, added).stopTokenIds).toEqual([1]);
    expect(grammarVocabulary({ ...fake, eosTokenId: undefined }, added).stopTokenIds).toEqual([]);
    for (const bad of [[5], [-1], [1.5]]) {
      let error: unknown;
      try {
        grammarVocabulary(fake, added, { stopTokenIds: bad });
      } catch (e) {
        error = e;
      }
      expect(isKilnError(error, "INVALID_ARGUMENT"), `${bad}`).toBe(true);
    }
  });

  it("reads the fortune tokenizer: byte-level, no prefix space, EOS the only special token with text", () => {
    const tokenizer = KilnTokenizer.load(FORTUNE_DIR);
    const v = readGrammarVocabulary(tokenizer);
    expect([v.vocabType, v.addPrefixSpace, v.vocabSize, v.stopTokenIds]).toEqual(["BYTE_LEVEL", false, 2048, [2]]);
    expect(v.encodedVocab.slice(0, 5)).toEqual(["", "", "<|eos|>", "", ""]);
    expect(v.encodedVocab.slice(5).every((t) => t.length > 0)).toBe(true);
    expect(v.encodedVocab).toContain("Ġthe");
  });

  it("a folder without tokenizer.json is TOKENIZER_INVALID", () => {
    let error: unknown;
    try {
      readGrammarVocabulary(fake);
    } catch (e) {
      error = e;
    }
    expect(isKilnError(error, "TOKENIZER_INVALID")).toBe(true);
  });
});
