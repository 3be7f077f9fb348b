/**
 * The per-sequence matcher: rollback and reset return exactly to an earlier state, misuse that
 * would abort inside xgrammar (a mask after termination, a rollback past the history) is refused
 * with a typed error and leaves the matcher usable, and masks for a logits row wider or narrower
 * than the tokenizer's vocabulary never allow an id the tokenizer does not have.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { GrammarCompiler } from "../../../runtime/engine/grammar/grammar_compiler.ts";
import type { GrammarMatcher } from "../../../runtime/engine/grammar/grammar_matcher.ts";
import { allocateTokenBitmask, allowedTokenIds } from "../../../runtime/engine/grammar/token_bitmask.ts";
import { isKilnError } from "../../../runtime/engine/errors.ts";
import type { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";
import { fortuneGrammar } from "./fortune_grammar.ts";
import { jsonClosing, randomPolicy, walkGrammar } from "./grammar_walk.ts";

const DIGITS = { kind: "regex", pattern: "[0-9]{2,6}" } as const;

let tokenizer: KilnTokenizer;
let compiler: GrammarCompiler;
let eos: number;

beforeAll(async () => {
  ({ tokenizer, compiler, eos } = await fortuneGrammar());
});

function maskOf(matcher: GrammarMatcher): Int32Array {
  const mask = allocateTokenBitmask(matcher.vocabSize);
  matcher.fillNextTokenBitmask(mask);
  return mask;
}

/** Single-digit token ids, "0".."9". */
function digitIds(): number[] {
  return [..."0123456789"].map((d) => tokenizer.encode(d, { addSpecialTokens: false })[0]!);
}

function expectRefused(fn: () => unknown, message: RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isKilnError(error, "INVALID_ARGUMENT"), String(error)).toBe(true);
  expect(error instanceof Error ? error.message : "").toMatch(message);
}

describe("state", () => {
  it("rollback returns to the mask of the earlier step; reset to the start", () => {
    const matcher = compiler.createMatcher(DIGITS);
    const [d1, d2, d3] = digitIds();
    const masks = [maskOf(matcher)];
    for (const id of [d1!, d2!, d3!]) {
      expect(matcher.acceptToken(id)).toBe(true);
      masks.push(maskOf(matcher));
    }
    expect(allowedTokenIds(masks[1]!)).not.toContain(eos); // one digit is too few
    expect(allowedTokenIds(masks[2]!)).toContain(eos);
    matcher.rollback(2);
    expect(maskOf(matcher)).toEqual(masks[1]);
    matcher.rollback(0);
    expect(maskOf(matcher)).toEqual(masks[1]);
    expect(matcher.acceptToken(d2!)).toBe(true);
    expect(maskOf(matcher)).toEqual(masks[2]);
    matcher.reset();
    expect(maskOf(matcher)).toEqual(masks[0]);
    matcher.dispose();
  });

  it("a refused token changes nothing", () => {
    const matcher = compiler.createMatcher(DIGITS);
    const before = maskOf(matcher);
    const letter = tokenizer.encode("x", { addSpecialTokens: false })[0]!;
    expect(matcher.acceptToken(letter)).toBe(false);
    expect(matcher.acceptToken(eos)).toBe(false); // too early to end
    expect(maskOf(matcher)).toEqual(before);
    matcher.dispose();
  });

  it("ids outside the vocabulary are refused, not passed to xgrammar", () => {
    const matcher = compiler.createMatcher({ kind: "json_object" });
    for (const id of [-1, 0.5, Number.NaN, compiler.vocabSize, 2 ** 31, 1e12]) expect(matcher.acceptToken(id)).toBe(false);
    expect(matcher.acceptToken(tokenizer.encode("{", { addSpecialTokens: false })[0]!)).toBe(true);
    matcher.dispose();
  });
});

describe("termination", () => {
  it("after the stop token: no next mask, no more tokens, and a rollback of one resumes", () => {
    const matcher = compiler.createMatcher({ kind: "choice", choices: ["42"] });
    for (const id of tokenizer.encode("42", { addSpecialTokens: false })) expect(matcher.acceptToken(id)).toBe(true);
    expect(matcher.isTerminated()).toBe(false);
    expect(allowedTokenIds(maskOf(matcher))).toEqual([eos]);
    expect(matcher.acceptToken(eos)).toBe(true);
    expect(matcher.isTerminated()).toBe(true);
    expectRefused(() => maskOf(matcher), /terminated/);
    expect(matcher.acceptToken(eos)).toBe(false);
    matcher.rollback(1);
    expect(matcher.isTerminated()).toBe(false);
    expect(allowedTokenIds(maskOf(matcher))).toEqual([eos]);
    matcher.dispose();
  });

  it("a rollback past the history is refused and the matcher (and its instance) carry on", () => {
    const matcher = compiler.createMatcher(DIGITS);
    const [d1] = digitIds();
    matcher.acceptToken(d1!);
    expectRefused(() => matcher.rollback(2), /between 0 and 1/);
    expectRefused(() => matcher.rollback(-1), /between 0 and 1/);
    matcher.reset();
    expectRefused(() => matcher.rollback(1), /between 0 and 0/);
    expect(matcher.acceptToken(d1!)).toBe(true);
    matcher.dispose();
    const other = compiler.createMatcher({ kind: "json_object" });
    expect(allowedTokenIds(maskOf(other)).length).toBeGreaterThan(0);
    other.dispose();
  });
});

describe("misuse", () => {
  it("a mask of the wrong size is refused", () => {
    const matcher = compiler.createMatcher(DIGITS);
    expectRefused(() => matcher.fillNextTokenBitmask(new Int32Array(compiler.bitmaskWords + 1)), /needs 64/);
    matcher.dispose();
  });

  it("dispose is idempotent, and a disposed matcher refuses every call", () => {
    const matcher = compiler.createMatcher(DIGITS);
    matcher.dispose();
    matcher.dispose();
    expect(matcher.disposed).toBe(true);
    expectRefused(() => matcher.acceptToken(0), /disposed/);
    expectRefused(() => maskOf(matcher), /disposed/);
    expectRefused(() => matcher.isTerminated(), /disposed/);
    expectRefused(() => matcher.reset(), /disposed/);
    expectRefused(() => matcher.rollback(0), /disposed/);
  });
});

describe("vocabulary width", () => {
  it("a head padded past the tokenizer: pad ids and the bits past the width are never allowed", async () => {
    const padded = await GrammarCompiler.create(tokenizer, { vocabSize: 2048 + 45 });
    expect(padded.bitmaskWords).toBe(66);
    const matcher = padded.createMatcher({ kind: "json_object" });
    const { ids } = walkGrammar(matcher, tokenizer, {
      policy: randomPolicy(5),
      stopTokenIds: [eos],
      closing: jsonClosing,
      softCap: 16,
      logitsWidth: 2048 + 45 + 7,
    });
    expect(Math.max(...ids)).toBeLessThan(2048);
    matcher.reset();
    const mask = maskOf(matcher);
    expect(allowedTokenIds(mask).every((id) => id < 2048)).toBe(true);
    expect(mask[65]).toBe(0);
    const open = padded.createMatcher({ kind: "regex", pattern: "(.|\\n)*" }); // everything text can be
    const all = maskOf(open);
    expect(allowedTokenIds(all).length).toBeGreaterThan(2000);
    expect(allowedTokenIds(all).every((id) => id < 2048)).toBe(true);
    for (const m of [matcher, open]) m.dispose();
    padded.dispose();
  });

  it("a head narrower than the tokenizer: the ids it lacks are never allowed", async () => {
    const narrow = await GrammarCompiler.create(tokenizer, { vocabSize: 2040 });
    expect(narrow.bitmaskWords).toBe(64);
    const matcher = narrow.createMatcher({ kind: "regex", pattern: "(.|\\n)*" });
    const allowed = allowedTokenIds(maskOf(matcher));
    expect(allowed.length).toBeGreaterThan(1900);
    expect(Math.max(...allowed)).toBeLessThan(2040);
    expect(matcher.acceptToken(2045)).toBe(false);
    matcher.dispose();
    narrow.dispose();
  });

  it("stop tokens given at creation replace EOS as the grammar's end", async () => {
    const imEnd = tokenizer.tokenToId("<|im_end|>")!;
    const chat = await GrammarCompiler.create(tokenizer, { stopTokenIds: [imEnd] });
    const matcher = chat.createMatcher({ kind: "choice", choices: ["ok"] });
    for (const id of tokenizer.encode("ok", { addSpecialTokens: false })) matcher.acceptToken(id);
    expect(allowedTokenIds(maskOf(matcher))).toEqual([imEnd]);
    expect(matcher.acceptToken(eos)).toBe(false);
    expect(matcher.acceptToken(imEnd)).toBe(true);
    matcher.dispose();
    chat.dispose();
  });
});
