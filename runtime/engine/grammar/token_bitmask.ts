/**
 * Token bitmasks, xgrammar's layout: for a vocabulary of V ids, ceil(V / 32) int32 words; id i is
 * allowed when bit (i % 32) of word floor(i / 32) is set. Bits past V in the last word are clear.
 *
 * A logits row may be wider than the mask (a model head padded past its tokenizer): ids the mask
 * does not cover are disallowed, like the pad ids inside it.
 */

/** Words a mask over `vocabSize` ids takes. */
export function tokenBitmaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

/** A mask over `vocabSize` ids with nothing allowed: [ceil(vocabSize / 32)] int32. */
export function allocateTokenBitmask(vocabSize: number): Int32Array {
  return new Int32Array(tokenBitmaskWords(vocabSize));
}

export function isTokenAllowed(mask: Int32Array, id: number): boolean {
  const word = mask[id >>> 5];
  return word !== undefined && id >= 0 && ((word >>> (id & 31)) & 1) === 1;
}

/** The allowed ids below `limit`, ascending. For tests and debugging, not the per-step path. */
export function allowedTokenIds(mask: Int32Array, limit = mask.length * 32): number[] {
  const ids: number[] = [];
  const end = Math.min(limit, mask.length * 32);
  for (let id = 0; id < end; id++) if (isTokenAllowed(mask, id)) ids.push(id);
  return ids;
}

/**
 * Sets every logit the mask disallows to -Infinity, in place: [row.length] f32. Allowed logits
 * keep their value. Whole words are handled at once, so an unconstrained stretch (word -1) costs
 * one comparison per 32 ids.
 */
export function applyTokenBitmask(row: Float32Array, mask: Int32Array): void {
  const covered = Math.min(row.length, mask.length * 32);
  const words = Math.ceil(covered / 32);
  // A grammar usually allows a few ids among ~150k: runs of empty words are filled in one call.
  let emptyFrom: number | undefined;
  for (let w = 0; w < words; w++) {
    const bits = mask[w] ?? 0;
    if (bits === 0) {
      emptyFrom ??= w * 32;
      continue;
    }
    if (emptyFrom !== undefined) {
      row.fill(-Infinity, emptyFrom, w * 32);
      emptyFrom = undefined;
    }
    if (bits === -1) continue;
    const base = w * 32;
    const end = Math.min(base + 32, covered);
    for (let id = base; id < end; id++) {
      if (((bits >>> (id - base)) & 1) === 0) row[id] = -Infinity;
    }
  }
  // Ids past the mask are outside the tokenizer's vocabulary.
  row.fill(-Infinity, emptyFrom ?? covered);
}
