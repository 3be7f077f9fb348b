/**
 * Specs reduced to what xgrammar compiles: choice lists as EBNF literals (checked end to end, by
 * walking them, in constrained_generation.test.ts), schema checks made before wasm is involved,
 * and cache keys that ignore layout but not meaning.
 */
import { describe, expect, it } from "vitest";
import { choiceGrammar, ebnfStringLiteral, grammarSource, type GrammarSpec } from "../../../runtime/engine/grammar/grammar_spec.ts";
import { isKilnError } from "../../../runtime/engine/errors.ts";

function rejection(spec: GrammarSpec): string {
  try {
    grammarSource(spec);
  } catch (e) {
    expect(isKilnError(e, "GRAMMAR_INVALID"), String(e)).toBe(true);
    return e instanceof Error ? e.message : "";
  }
  throw new Error("expected GRAMMAR_INVALID");
}

describe("choice", () => {
  it("escapes quote, backslash and control characters; keeps other text as is", () => {
    expect(ebnfStringLiteral('say "hi"')).toBe('"say \\"hi\\""');
    expect(ebnfStringLiteral("a\\b")).toBe('"a\\\\b"');
    expect(ebnfStringLiteral("line\nnext\ttab\u007f")).toBe('"line\\x0anext\\x09tab\\x7f"');
    expect(ebnfStringLiteral("naïve ☕ 😀")).toBe('"naïve ☕ 😀"');
    expect(ebnfStringLiteral("")).toBe('""');
  });

  it("is an alternation of the literals at the root", () => {
    expect(choiceGrammar(["yes", "no"])).toBe('root ::= "yes" | "no"');
  });

  it("an empty list, or a choice that is not a string, is GRAMMAR_INVALID", () => {
    expect(rejection({ kind: "choice", choices: [] })).toMatch(/empty/);
    expect(rejection(JSON.parse('{"kind": "choice", "choices": ["a", 1]}'))).toMatch(/choice 1 is not a string/);
  });
});

describe("JSON schema", () => {
  it("text and object schemas share a key; layout does not matter, property order does", () => {
    const schema = { type: "object", properties: { b: {}, a: {} } };
    const key = grammarSource({ kind: "json_schema", schema }).key;
    expect(grammarSource({ kind: "json_schema", schema: JSON.stringify(schema, null, 2) }).key).toBe(key);
    expect(grammarSource({ kind: "json_schema", schema: { type: "object", properties: { a: {}, b: {} } } }).key).not.toBe(key);
  });

  it("defaults to strict, any whitespace, unlimited whitespace", () => {
    expect(grammarSource({ kind: "json_schema", schema: {} })).toMatchObject({ strict: true, anyWhitespace: true, maxWhitespace: undefined, schema: "{}" });
  });

  it("refuses what is not a schema before xgrammar sees it", () => {
    expect(rejection({ kind: "json_schema", schema: "{" })).toMatch(/not valid JSON/);
    expect(rejection({ kind: "json_schema", schema: "[]" })).toMatch(/not an array/);
    expect(rejection({ kind: "json_schema", schema: "3" })).toMatch(/not 3/);
    expect(rejection({ kind: "json_schema", schema: "null" })).toMatch(/not null/);
    expect(rejection({ kind: "json_schema", schema: {}, maxWhitespace: 1.5 })).toMatch(/maxWhitespace/);
  });
});

describe("regex and EBNF", () => {
  it("a regex becomes a structural tag of the regex format, a grammar keeps its root rule", () => {
    expect(grammarSource({ kind: "regex", pattern: "a+" })).toMatchObject({
      structuralTag: '{"type":"structural_tag","format":{"type":"regex","pattern":"a+"}}',
    });
    expect(grammarSource({ kind: "ebnf", grammar: 'start ::= "a"', rootRule: "start" })).toMatchObject({ rootRule: "start" });
    expect(grammarSource({ kind: "ebnf", grammar: 'root ::= "a"' })).toMatchObject({ rootRule: "root" });
  });
});
