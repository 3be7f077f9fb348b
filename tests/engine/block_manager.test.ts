/** BlockManager on its own: allocation, sharing, prefix hits, LRU eviction, windows, conservation. */
import { describe, expect, it } from "vitest";
import { BlockManager } from "../../runtime/engine/block_manager.ts";
import { hashBlock } from "../../runtime/engine/prefix_hash.ts";
import { resolveSamplingParams } from "../../runtime/engine/sampling_params.ts";
import { Sequence } from "../../runtime/engine/sequence.ts";

let order = 0;
function seq(tokens: readonly number[], salt?: string): Sequence {
  return new Sequence({
    requestId: `s${order}`,
    index: 0,
    promptTokenIds: tokens,
    params: resolveSamplingParams({}, { vocabSize: 1000, maxLogprobs: 20 }),
    priority: 0,
    arrivalOrder: order++,
    eosTokenIds: [],
    seed: 0,
    cacheSalt: salt,
    leader: undefined,
  });
}

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** Allocates, "computes" every token and offers the blocks to the cache. */
function computeAll(bm: BlockManager, s: Sequence): void {
  expect(bm.allocate(s, s.numTokens)).toBe(true);
  s.numComputed = s.numTokens;
  bm.cacheComputed(s);
}

describe("BlockManager", () => {
  it("allocates what a sequence needs, refuses without side effects, and frees everything", () => {
    const bm = new BlockManager(4, 4, false);
    const a = seq(range(9));
    expect(bm.allocate(a, 9)).toBe(true);
    expect(a.blocks).toEqual([0, 1, 2]);
    const b = seq(range(8));
    expect(bm.allocate(b, 8)).toBe(false);
    expect(b.blocks).toEqual([]);
    expect(bm.numFree).toBe(1);
    expect(bm.allocate(a, 12)).toBe(true); // no new block: 12 slots fit in 3
    expect(bm.allocate(a, 13)).toBe(true);
    expect(bm.usage).toBe(1);
    bm.checkConservation([a, b]);
    bm.free(a);
    expect(bm.numFree).toBe(4);
    bm.checkConservation([a, b]);
  });

  it("chains hashes over whole prefixes and salts", () => {
    const h1 = hashBlock(undefined, [1, 2], undefined);
    expect(hashBlock(h1, [3, 4], undefined)).not.toBe(hashBlock(hashBlock(undefined, [9, 9], undefined), [3, 4], undefined));
    expect(hashBlock(undefined, [1, 2], "tenant-a")).not.toBe(h1);
    expect(hashBlock(undefined, [1, 2], undefined)).toBe(h1);
  });

  it("shares computed full blocks by reference count, never the last token's block", () => {
    const bm = new BlockManager(16, 4, true);
    const a = seq(range(10));
    computeAll(bm, a);
    // a holds 3 blocks; blocks 0 and 1 are full and cached
    const b = seq([...range(8), 50, 51, 52]);
    const hit = bm.findCachedPrefix(b);
    expect(hit).toEqual(a.blocks.slice(0, 2));
    expect(bm.allocate(b, b.numTokens, hit)).toBe(true);
    bm.checkConservation([a, b]);
    // exactly 8 tokens: the second block holds the last token, which must be recomputed
    const c = seq(range(8));
    expect(bm.findCachedPrefix(c)).toEqual([a.blocks[0]]);
    // a different salt sees nothing
    expect(bm.findCachedPrefix(seq(range(10), "other"))).toEqual([]);
    bm.free(a);
    bm.free(b);
    bm.checkConservation([]);
  });

  it("keeps freed blocks reusable until evicted, uncached blocks going first, then least recently freed", () => {
    const bm = new BlockManager(6, 2, true);
    const a = seq(range(4, 100)); // 2 full blocks
    const b = seq(range(4, 200));
    computeAll(bm, a);
    computeAll(bm, b);
    const aBlocks = [...a.blocks];
    const bBlocks = [...b.blocks];
    bm.free(a); // freed first: evicted first
    bm.free(b);
    expect(bm.numFree).toBe(6);
    // two uncached blocks are left: a new 2-block sequence takes them and evicts nothing
    const c = seq(range(4, 300));
    expect(bm.allocate(c, 4)).toBe(true);
    expect(bm.findCachedPrefix(seq([...range(4, 100), 1]))).toEqual(aBlocks);
    // one more block: the least recently freed cached block goes, a's tail before its head
    const d = seq(range(2, 400));
    expect(bm.allocate(d, 2)).toBe(true);
    expect(d.blocks).toEqual([aBlocks[1]]);
    expect(bm.findCachedPrefix(seq([...range(4, 100), 1]))).toEqual([aBlocks[0]]);
    expect(bm.findCachedPrefix(seq([...range(4, 200), 1]))).toEqual(bBlocks);
    bm.checkConservation([c, d]);
  });

  it("reviving a cached free block takes it off the free lists", () => {
    const bm = new BlockManager(3, 2, true);
    const a = seq(range(4));
    computeAll(bm, a);
    bm.free(a);
    const b = seq([...range(4), 7]);
    const hit = bm.findCachedPrefix(b);
    expect(hit.length).toBe(2);
    // 2 revived + 1 fresh = the whole pool
    expect(bm.allocate(b, 5, hit)).toBe(true);
    expect(bm.numFree).toBe(0);
    bm.checkConservation([b]);
    const c = seq(range(2, 50));
    expect(bm.allocate(c, 2)).toBe(false);
  });

  it("a duplicate of a cached block stays private", () => {
    const bm = new BlockManager(8, 2, true);
    const a = seq(range(4));
    const b = seq(range(4));
    expect(bm.allocate(a, 4)).toBe(true);
    expect(bm.allocate(b, 4)).toBe(true); // computed in the same step: no hit yet
    a.numComputed = b.numComputed = 4;
    bm.cacheComputed(a);
    bm.cacheComputed(b);
    bm.checkConservation([a, b]);
    expect(bm.findCachedPrefix(seq([...range(4), 9]))).toEqual(a.blocks);
  });

  it("frees the blocks that fall out of a sliding window", () => {
    const bm = new BlockManager(8, 4, false);
    const a = seq(range(20));
    expect(bm.allocate(a, 20)).toBe(true);
    a.numComputed = 20;
    bm.dropOutsideWindow(a, 6); // the next query (position 20) reads keys 15..20
    expect(a.numSkippedBlocks).toBe(3);
    expect(a.blocks.length).toBe(2);
    expect(a.kernelBlockTable()).toEqual([a.blocks[0], a.blocks[0], a.blocks[0], ...a.blocks]);
    expect(bm.numFree).toBe(6);
    bm.checkConservation([a]);
    expect(bm.allocate(a, 21)).toBe(true);
    expect(a.numLogicalBlocks).toBe(6);
  });

  it("catches a leak", () => {
    const bm = new BlockManager(4, 4, false);
    const a = seq(range(5));
    bm.allocate(a, 5);
    expect(() => bm.checkConservation([])).toThrow(/refCount 1 but held by 0/);
  });
});
