/**
 * Grammar-constrained generation on the fortune tokenizer (2048 byte-level BPE tokens), driven
 * without the model: every walk picks only tokens the mask allows, and the decoded text must then
 * be what the grammar promised, judged by references no one here wrote (ajv for JSON Schema,
 * JSON.parse, JavaScript's RegExp, the choice list itself). Several seeds of uniform choice and
 * two greedy walks over fixed pseudo-logits rows (wider than the vocabulary) per grammar.
 */
import Ajv from "ajv";
import { beforeAll, describe, expect, it } from "vitest";
import type { GrammarCompiler } from "../../../runtime/engine/grammar/grammar_compiler.ts";
import type { GrammarSpec } from "../../../runtime/engine/grammar/grammar_spec.ts";
import type { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";
import { fortuneGrammar } from "./fortune_grammar.ts";
import { greedyPolicy, jsonClosing, pseudoLogits, randomPolicy, walkGrammar, type Policy, type WalkResult } from "./grammar_walk.ts";

const SEEDS = [1, 2, 3, 4, 5];

let tokenizer: KilnTokenizer;
let compiler: GrammarCompiler;
let eos: number;

beforeAll(async () => {
  ({ tokenizer, compiler, eos } = await fortuneGrammar());
});

/** The policies each grammar is walked with: uniform per seed, then greedy on two rows. */
function policies(): { readonly name: string; readonly policy: Policy; readonly seed: number }[] {
  const width = compiler.vocabSize + 40; // a head padded past the tokenizer
  return [
    ...SEEDS.map((seed) => ({ name: `random seed ${seed}`, policy: randomPolicy(seed), seed })),
    ...[11, 12].map((seed) => ({ name: `greedy row ${seed}`, policy: greedyPolicy(pseudoLogits(width, seed)), seed })),
  ];
}

/** The text outside JSON strings, with Python json.dumps' separators ", " and ": " made bare. */
function layout(json: string): string {
  return json.replaceAll(/"(?:[^"\\]|\\.)*"/g, '""').replaceAll(", ", ",").replaceAll(": ", ":");
}

function walkAll(spec: GrammarSpec, closing: (prefix: string, token: string) => number): { readonly name: string; readonly result: WalkResult }[] {
  return policies().map(({ name, policy, seed }) => {
    const matcher = compiler.createMatcher(spec);
    try {
      const result = walkGrammar(matcher, tokenizer, { policy, seed, stopTokenIds: [eos], closing, logitsWidth: compiler.vocabSize + 40 });
      expect(result.ids.at(-1), `${name}: ends with EOS`).toBe(eos);
      return { name, result };
    } finally {
      matcher.dispose();
    }
  });
}

describe("JSON schema", () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer", minimum: 0, maximum: 150 },
      mood: { enum: ["happy", "sad", "curious"] },
      tags: { type: "array", items: { type: "string" }, maxItems: 3 },
    },
    required: ["name", "age", "mood", "tags"],
    additionalProperties: false,
  } as const;
  const validate = new Ajv({ strict: true }).compile(schema);

  it.each([
    { layout: "any whitespace", spec: { kind: "json_schema", schema } },
    { layout: "compact", spec: { kind: "json_schema", schema: JSON.stringify(schema), anyWhitespace: false } },
    { layout: "at most 2 whitespace in a row", spec: { kind: "json_schema", schema, maxWhitespace: 2 } },
  ] satisfies { layout: string; spec: GrammarSpec }[])("every walk is valid against the schema ($layout)", ({ spec }) => {
    for (const { name, result } of walkAll(spec, jsonClosing)) {
      const value: unknown = JSON.parse(result.text);
      expect(validate(value), `${name}: ${result.text} ${JSON.stringify(validate.errors)}`).toBe(true);
      if (spec.anyWhitespace === false) expect(layout(result.text), result.text).not.toMatch(/\s/);
      if (spec.maxWhitespace !== undefined) expect(result.text).not.toMatch(/\s{3}/);
    }
  });

  it("strict: false lets properties the schema does not name appear; strict (the default) does not", () => {
    const open = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    const uniform = (strict: boolean): Set<string> => {
      const keys = new Set<string>();
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const matcher = compiler.createMatcher({ kind: "json_schema", schema: open, strict });
        const { text } = walkGrammar(matcher, tokenizer, { policy: randomPolicy(seed), seed, stopTokenIds: [eos], closing: jsonClosing, softCap: 24 });
        matcher.dispose();
        const value: unknown = JSON.parse(text);
        if (typeof value !== "object" || value === null) throw new Error(`not an object: ${text}`);
        expect(Object.keys(value)).toContain("a");
        for (const k of Object.keys(value)) keys.add(k);
      }
      return keys;
    };
    expect([...uniform(true)]).toEqual(["a"]);
    expect(uniform(false).size).toBeGreaterThan(1);
  });
});

describe("builtin JSON (json_object)", () => {
  it("every walk is a JSON object or array that JSON.parse accepts", () => {
    for (const { name, result } of walkAll({ kind: "json_object" }, jsonClosing)) {
      expect(() => JSON.parse(result.text), `${name}: ${result.text}`).not.toThrow();
    }
  });

  it("special tokens other than the stop token are never allowed, even inside a string", () => {
    const matcher = compiler.createMatcher({ kind: "json_object" });
    const specials = [0, 1, 3, 4].map((id) => tokenizer.idToToken(id));
    expect(specials).toEqual(["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"]);
    const quote = tokenizer.encode('{"', { addSpecialTokens: false });
    for (const id of quote) expect(matcher.acceptToken(id)).toBe(true);
    for (const id of [0, 1, 3, 4]) expect(matcher.acceptToken(id)).toBe(false);
    matcher.dispose();
  });
});

describe("regex", () => {
  it("every walk fully matches \\d{3}-[a-z]+", () => {
    const texts = walkAll({ kind: "regex", pattern: "\\d{3}-[a-z]+" }, (_, token) => (/^[a-z]+$/.test(token) ? 0 : -1));
    for (const { name, result } of texts) expect(result.text, name).toMatch(/^\d{3}-[a-z]+$/);
    expect(new Set(texts.map((t) => t.result.text)).size).toBeGreaterThan(3);
  });
});

describe("choice", () => {
  const choices = ["yes", "no", "maybe so", 'say "hi"\n', "back\\slash", "", "naïve ☕"];

  it("every walk is exactly one of the choices, quotes, backslashes, newlines and non-ASCII included", () => {
    const seen = new Set<string>();
    for (const { name, result } of walkAll({ kind: "choice", choices }, () => 0)) {
      expect(choices, name).toContain(result.text);
      seen.add(result.text);
    }
    expect(seen.size).toBeGreaterThan(2);
  });

  it("each choice, tokenized as the tokenizer would, is accepted to the end", () => {
    for (const choice of choices) {
      const matcher = compiler.createMatcher({ kind: "choice", choices });
      for (const id of tokenizer.encode(choice, { addSpecialTokens: false })) expect(matcher.acceptToken(id), JSON.stringify(choice)).toBe(true);
      expect(matcher.acceptToken(eos)).toBe(true);
      expect(matcher.isTerminated()).toBe(true);
      matcher.dispose();
    }
  });
});

describe("EBNF grammar", () => {
  const grammar = ['root ::= greeting (", " greeting)* "!"', 'greeting ::= ("hello" | "hi" | "hey") (" " name)?', "name ::= [A-Z] [a-z]*"].join("\n");

  it("every walk is a sentence of the grammar", () => {
    for (const { name, result } of walkAll({ kind: "ebnf", grammar }, (_, token) => (token.includes("!") ? 1 : 0))) {
      expect(result.text, name).toMatch(/^(hello|hi|hey)( [A-Z][a-z]*)?(, (hello|hi|hey)( [A-Z][a-z]*)?)*!$/);
    }
  });

  it("a root rule other than root can be named", () => {
    const matcher = compiler.createMatcher({ kind: "ebnf", grammar: 'start ::= "ok"', rootRule: "start" });
    const { text } = walkGrammar(matcher, tokenizer, { policy: randomPolicy(1), stopTokenIds: [eos], closing: () => 0 });
    expect(text).toBe("ok");
    matcher.dispose();
  });
});
