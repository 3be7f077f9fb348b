/**
 * Constrained generation without a model: at each step the matcher's mask is the only source of
 * truth for which tokens may come next, a policy picks one of them, and the matcher accepts it.
 * Every step also checks that the mask, the logits masking and acceptToken agree: the masked
 * row's finite ids are exactly the allowed ids (a row wider than the vocabulary included), and a
 * disallowed token is refused without changing the state.
 *
 * Free text (a JSON string, `[a-z]+`) never has to end, so after `softCap` steps the walk leans
 * to ending: a stop token if allowed, else the allowed tokens that close the most structure.
 */
import { expect } from "vitest";
import type { GrammarMatcher } from "../../../runtime/engine/grammar/grammar_matcher.ts";
import { allocateTokenBitmask, allowedTokenIds, applyTokenBitmask } from "../../../runtime/engine/grammar/token_bitmask.ts";
import { Rng } from "../../../runtime/engine/rng.ts";
import type { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";

/** Picks one of `candidates` (never empty, all allowed). */
export type Policy = (candidates: readonly number[]) => number;

/** Uniform among the candidates, reproducible from the seed. */
export function randomPolicy(seed: number): Policy {
  const rng = new Rng(seed);
  return (candidates) => candidates[Math.floor(rng.next() * candidates.length)]!;
}

/** The candidate with the largest logit in a fixed pseudo-logits row. */
export function greedyPolicy(row: Float32Array): Policy {
  return (candidates) => candidates.reduce((best, id) => (row[id]! > row[best]! ? id : best));
}

/** A seeded row of pseudo-logits in [-4, 4): [width]. */
export function pseudoLogits(width: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: width }, () => rng.next() * 8 - 4);
}

export interface WalkOptions {
  readonly policy: Policy;
  readonly stopTokenIds: readonly number[];
  /** How strongly a token's text ends the output after `prefix` (higher first) once past softCap. */
  readonly closing: (prefix: string, token: string) => number;
  readonly softCap?: number;
  readonly hardCap?: number;
  /** Width of the logits row the mask is applied to; may exceed the vocabulary. */
  readonly logitsWidth?: number;
  readonly seed?: number;
}

export interface WalkResult {
  /** Accepted ids, the final stop token included. */
  readonly ids: readonly number[];
  /** The ids before the stop token, decoded. */
  readonly text: string;
  readonly steps: number;
}

export function walkGrammar(matcher: GrammarMatcher, tokenizer: KilnTokenizer, options: WalkOptions): WalkResult {
  const softCap = options.softCap ?? 48;
  const hardCap = options.hardCap ?? 600;
  const width = options.logitsWidth ?? matcher.vocabSize;
  const rng = new Rng(options.seed ?? 7);
  const row = pseudoLogits(width, options.seed ?? 7);
  const mask = allocateTokenBitmask(matcher.vocabSize);
  const stops = new Set(options.stopTokenIds);
  const ids: number[] = [];
  let steps = 0;
  for (; steps < hardCap && !matcher.isTerminated(); steps++) {
    matcher.fillNextTokenBitmask(mask);
    const allowed = allowedTokenIds(mask, matcher.vocabSize);
    expect(allowed.length, `step ${steps}: the grammar allows nothing after ${JSON.stringify(tokenizer.decode(ids))}`).toBeGreaterThan(0);

    const masked = row.slice();
    applyTokenBitmask(masked, mask);
    const finite = [...masked.keys()].filter((id) => Number.isFinite(masked[id]!));
    expect(finite).toEqual(allowed);

    const allowedSet = new Set(allowed);
    const probe = Math.floor(rng.next() * matcher.vocabSize);
    if (!allowedSet.has(probe)) expect(matcher.acceptToken(probe), `disallowed id ${probe} accepted`).toBe(false);

    let candidates: readonly number[] = allowed;
    if (steps >= softCap) {
      const prefix = tokenizer.decode(ids);
      candidates = closingCandidates(allowed, stops, tokenizer, (token) => options.closing(prefix, token));
    }
    const id = options.policy(candidates);
    expect(matcher.acceptToken(id), `allowed id ${id} refused`).toBe(true);
    ids.push(id);
  }
  expect(matcher.isTerminated(), `no end after ${hardCap} steps: ${JSON.stringify(tokenizer.decode(ids))}`).toBe(true);
  const last = ids.at(-1);
  const body = last !== undefined && stops.has(last) ? ids.slice(0, -1) : ids;
  return { ids, text: tokenizer.decode(body), steps };
}

function closingCandidates(allowed: readonly number[], stops: ReadonlySet<number>, tokenizer: KilnTokenizer, closing: (text: string) => number): readonly number[] {
  const stop = allowed.filter((id) => stops.has(id));
  if (stop.length > 0) return stop;
  let best = -Infinity;
  let chosen: number[] = [];
  for (const id of allowed) {
    const score = closing(tokenizer.decode([id]));
    if (score > best) [best, chosen] = [score, [id]];
    else if (score === best) chosen.push(id);
  }
  return chosen;
}

/**
 * JSON: inside a string, a token with a quote (the earlier the better) ends it; outside, closing
 * brackets count for, opening ones against, and bare whitespace (which could go on forever) most
 * against.
 */
export function jsonClosing(prefix: string, token: string): number {
  if (inJsonString(prefix)) {
    const quote = unescapedQuote(token);
    return quote < 0 ? -1 : 100 - quote;
  }
  let score = /^\s+$/.test(token) ? -10 : 0;
  for (const ch of token) {
    if (ch === "}" || ch === "]") score += 2;
    else if (ch === "{" || ch === "[") score -= 3;
  }
  return score;
}

function inJsonString(text: string): boolean {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    if (inString && text[i] === "\\") i++;
    else if (text[i] === '"') inString = !inString;
  }
  return inString;
}

function unescapedQuote(token: string): number {
  for (let i = 0; i < token.length; i++) {
    if (token[i] === "\\") i++;
    else if (token[i] === '"') return i;
  }
  return -1;
}
