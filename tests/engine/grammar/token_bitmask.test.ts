/**
 * Masking a logits row with a token bitmask: exactly the disallowed ids become -Infinity, the
 * allowed keep their values, whatever the row width relative to the mask, and for every bit
 * position (bit 31 is the int32 sign bit). Masks here are built from sets of allowed ids by
 * setting bits one at a time, independently of the code under test.
 */
import { describe, expect, it } from "vitest";
import { allocateTokenBitmask, allowedTokenIds, applyTokenBitmask, isTokenAllowed, tokenBitmaskWords } from "../../../runtime/engine/grammar/token_bitmask.ts";
import { Rng } from "../../../runtime/engine/rng.ts";

function maskFrom(vocabSize: number, allowed: Iterable<number>): Int32Array {
  const mask = new Int32Array(Math.ceil(vocabSize / 32));
  for (const id of allowed) mask[Math.floor(id / 32)] = mask[Math.floor(id / 32)]! | (1 << id % 32);
  return mask;
}

function rowOf(width: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: width }, () => rng.next() * 20 - 10);
}

function expectMasked(row: Float32Array, original: Float32Array, allowed: ReadonlySet<number>): void {
  for (let id = 0; id < row.length; id++) {
    if (allowed.has(id)) expect(row[id], `id ${id}`).toBe(original[id]);
    else expect(row[id], `id ${id}`).toBe(-Infinity);
  }
}

describe("token bitmask", () => {
  it("takes ceil(V / 32) words, none allowed when new", () => {
    expect([1, 31, 32, 33, 2048, 151_936, 152_064].map(tokenBitmaskWords)).toEqual([1, 1, 1, 2, 64, 4748, 4752]);
    expect(allowedTokenIds(allocateTokenBitmask(100))).toEqual([]);
  });

  it("reads every bit position, the sign bit included", () => {
    const ids = [0, 1, 30, 31, 32, 63, 64, 95];
    const mask = maskFrom(96, ids);
    expect(mask[0]).toBeLessThan(0);
    expect(allowedTokenIds(mask)).toEqual(ids);
    expect(ids.every((id) => isTokenAllowed(mask, id))).toBe(true);
    expect([2, 33, 94, -1, 96, 1000].some((id) => isTokenAllowed(mask, id))).toBe(false);
  });

  it.each([
    { name: "row as wide as the vocabulary", vocab: 100, width: 100 },
    { name: "row a multiple of 32", vocab: 128, width: 128 },
    { name: "row wider than the mask (padded head)", vocab: 100, width: 165 },
    { name: "row narrower than the mask", vocab: 100, width: 70 },
  ])("sets exactly the disallowed ids to -Infinity: $name", ({ vocab, width }) => {
    for (const seed of [1, 2, 3]) {
      const rng = new Rng(seed);
      const density = [0.02, 0.5, 0.97][seed - 1]!;
      const allowed = new Set([...Array(vocab).keys()].filter(() => rng.next() < density));
      const original = rowOf(width, seed);
      const row = original.slice();
      applyTokenBitmask(row, maskFrom(vocab, allowed));
      expectMasked(row, original, allowed);
    }
  });

  it("handles whole words allowed (-1) and none (0) next to partial ones", () => {
    const allowed = new Set([...Array(32).keys(), 40, 41, 95, 127]);
    const original = rowOf(140, 9);
    const row = original.slice();
    applyTokenBitmask(row, maskFrom(128, allowed));
    expectMasked(row, original, allowed);
  });

  it("keeps -Infinity and huge logits of allowed ids as they are", () => {
    const row = Float32Array.from([-Infinity, 3.4e38, -3.4e38, 0]);
    applyTokenBitmask(row, maskFrom(4, [0, 1, 2]));
    expect([...row]).toEqual([-Infinity, 3.4e38, -3.4e38, -Infinity].map(Math.fround));
  });
});
