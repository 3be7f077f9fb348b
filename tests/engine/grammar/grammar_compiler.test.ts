/**
 * The compiler around xgrammar: its cache (keyed by kind, options and canonical source; bounded,
 * least recently used out), its typed errors for input xgrammar rejects (with xgrammar's own
 * explanation, and nothing printed to the console), and that a long run of rejected input does not
 * wear out the instances: in the web build every rejection is a wasm abort that leaks stack, and
 * some 70 of them in one instance used to make valid grammars fail too.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { GrammarCompiler } from "../../../runtime/engine/grammar/grammar_compiler.ts";
import type { GrammarSpec } from "../../../runtime/engine/grammar/grammar_spec.ts";
import { allocateTokenBitmask, allowedTokenIds } from "../../../runtime/engine/grammar/token_bitmask.ts";
import { loadXgrammar } from "../../../runtime/engine/grammar/xgrammar_loader.ts";
import { isKilnError, type ErrorCode } from "../../../runtime/engine/errors.ts";
import type { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";
import { fortuneGrammar } from "./fortune_grammar.ts";
import { jsonClosing, randomPolicy, walkGrammar } from "./grammar_walk.ts";

let tokenizer: KilnTokenizer;
let compiler: GrammarCompiler;
let eos: number;

beforeAll(async () => {
  ({ tokenizer, compiler, eos } = await fortuneGrammar());
});

afterEach(() => {
  vi.restoreAllMocks();
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

function expectKilnError(fn: () => unknown, code: ErrorCode, message: RegExp): void {
  const e = thrown(fn);
  expect(isKilnError(e, code), String(e)).toBe(true);
  expect(e instanceof Error ? e.message : "").toMatch(message);
}

describe("loading", () => {
  it("loads once per process", async () => {
    expect(await loadXgrammar()).toBe(await loadXgrammar());
  });

  it("reports the fortune tokenizer's vocabulary as xgrammar needs it", () => {
    expect(compiler.vocabSize).toBe(2048);
    expect(compiler.bitmaskWords).toBe(64);
    expect(compiler.vocabulary.vocabType).toBe("BYTE_LEVEL");
    expect(compiler.vocabulary.stopTokenIds).toEqual([tokenizer.eosTokenId]);
  });
});

describe("cache", () => {
  const schema = { type: "object", properties: { b: { type: "string" }, a: { type: "integer" } }, required: ["a", "b"] };

  it("a spec compiled again is the cached grammar, whatever the schema's layout", () => {
    const first = compiler.compile({ kind: "json_schema", schema });
    expect(compiler.compile({ kind: "json_schema", schema: JSON.stringify(schema, null, 4) })).toBe(first);
    expect(compiler.compile({ kind: "json_schema", schema, strict: true, anyWhitespace: true })).toBe(first);
  });

  it("options, property order and kind make different grammars", () => {
    const base = compiler.compile({ kind: "json_schema", schema });
    const reordered = { ...schema, properties: { a: schema.properties.a, b: schema.properties.b } };
    const others: GrammarSpec[] = [
      { kind: "json_schema", schema, strict: false },
      { kind: "json_schema", schema, anyWhitespace: false },
      { kind: "json_schema", schema, maxWhitespace: 3 },
      { kind: "json_schema", schema: reordered },
    ];
    const keys = new Set([base.key, ...others.map((s) => compiler.compile(s).key)]);
    expect(keys.size).toBe(5);
    expect(compiler.compile({ kind: "choice", choices: ["a", "b"] })).toBe(compiler.compile({ kind: "ebnf", grammar: 'root ::= "a" | "b"' }));
    expect(compiler.compile({ kind: "regex", pattern: "a|b" }).key).not.toBe(compiler.compile({ kind: "ebnf", grammar: "root ::= [ab]" }).key);
  });

  it("keeps at most cacheSize grammars, evicting the least recently used; matchers outlive eviction", async () => {
    const small = await GrammarCompiler.create(tokenizer, { cacheSize: 2 });
    const a = small.compile({ kind: "regex", pattern: "a+" });
    const matcher = a.createMatcher();
    const b = small.compile({ kind: "regex", pattern: "b+" });
    expect(small.compile({ kind: "regex", pattern: "a+" })).toBe(a); // a is now the most recent
    small.compile({ kind: "regex", pattern: "c+" });
    expect(small.cachedGrammars).toBe(2);
    expect(b.disposed).toBe(true);
    expect(a.disposed).toBe(false);
    expectKilnError(() => b.createMatcher(), "INVALID_ARGUMENT", /evicted/);

    small.dispose();
    expect(a.disposed).toBe(true);
    expectKilnError(() => small.compile({ kind: "json_object" }), "INVALID_ARGUMENT", /disposed/);
    // The matcher holds its own reference to the compiled grammar.
    const mask = allocateTokenBitmask(small.vocabSize);
    matcher.fillNextTokenBitmask(mask);
    expect(allowedTokenIds(mask).map((id) => tokenizer.decode([id])).every((t) => /^a+$/.test(t))).toBe(true);
    matcher.dispose();
  });
});

describe("invalid grammars", () => {
  const cases: { readonly name: string; readonly spec: GrammarSpec; readonly message: RegExp }[] = [
    { name: "schema text that is not JSON", spec: { kind: "json_schema", schema: '{"type": "object",' }, message: /json_schema: the schema is not valid JSON/ },
    { name: "a schema that is an array", spec: { kind: "json_schema", schema: "[1]" }, message: /a JSON object or a boolean, not an array/ },
    { name: "an unknown type", spec: { kind: "json_schema", schema: { type: "integr" } }, message: /json_schema: Unsupported type "integr"/ },
    { name: "a $ref to nothing", spec: { kind: "json_schema", schema: { $ref: "#/$defs/missing" } }, message: /json_schema: .*missing/ },
    { name: "a zero maxWhitespace", spec: { kind: "json_schema", schema: {}, maxWhitespace: 0 }, message: /maxWhitespace must be a positive integer/ },
    { name: "an unclosed regex class", spec: { kind: "regex", pattern: "\\d{3}-[a-z" }, message: /regex: Regex parsing error at position \d+: Unclosed '\['/ },
    { name: "an unbalanced regex group", spec: { kind: "regex", pattern: "(ab" }, message: /regex: .+/ },
    { name: "EBNF that does not parse", spec: { kind: "ebnf", grammar: 'root ::= ("a" | ' }, message: /ebnf: EBNF parser error at line 1/ },
    { name: "EBNF without its root rule", spec: { kind: "ebnf", grammar: 'start ::= "a"' }, message: /ebnf: .*root/ },
    { name: "EBNF naming an undefined rule", spec: { kind: "ebnf", grammar: "root ::= missing" }, message: /ebnf: .*missing/ },
    { name: "an empty choice list", spec: { kind: "choice", choices: [] }, message: /choice: the list of choices is empty/ },
  ];

  it.each(cases)("$name is GRAMMAR_INVALID with the reason", ({ spec, message }) => {
    expectKilnError(() => compiler.compile(spec), "GRAMMAR_INVALID", message);
  });

  it("xgrammar's messages are caught, not printed, and the process exit code is untouched", () => {
    const stderr = vi.spyOn(process.stderr, "write");
    const stdout = vi.spyOn(process.stdout, "write");
    const error = vi.spyOn(console, "error");
    const log = vi.spyOn(console, "log");
    for (const { spec } of cases) thrown(() => compiler.compile(spec));
    expect([stderr, stdout, error, log].map((s) => s.mock.calls.length)).toEqual([0, 0, 0, 0]);
    expect(process.exitCode).toBeUndefined();
  });

  it("after 300 rejected grammars, valid ones still compile and constrain exactly", () => {
    for (let i = 0; i < 300; i++) {
      const { spec } = cases[i % cases.length]!;
      // distinct inputs, so no cache could hide a failure
      const varied: GrammarSpec = spec.kind === "regex" ? { kind: "regex", pattern: `${spec.pattern}${i}` } : spec;
      expectKilnError(() => compiler.compile(varied), "GRAMMAR_INVALID", /./);
    }
    const matcher = compiler.createMatcher({ kind: "json_schema", schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] } });
    const { text } = walkGrammar(matcher, tokenizer, { policy: randomPolicy(3), stopTokenIds: [eos], closing: jsonClosing, softCap: 16 });
    expect(JSON.parse(text)).toEqual({ n: expect.any(Number) });
    matcher.dispose();
  });
});
