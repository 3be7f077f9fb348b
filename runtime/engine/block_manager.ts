/**
 * The KV block pool with prefix caching (vLLM V1's BlockPool + KVCacheManager).
 *
 * Every block is in exactly one of three places:
 *   - held: refCount > 0, in the block lists of that many live sequences;
 *   - free and uncached: refCount 0, no hash; handed out first;
 *   - free and cached: refCount 0, its hash still in the cache map, so a later request with the
 *     same prefix can take it back; evicted least recently freed first when the uncached ones
 *     run out.
 * A hash is given to a block only once its tokens are computed (after the step that wrote them),
 * so a hash in the map always names K/V that is really in the pool. A sequence frees its blocks
 * last-first, so its tail (the least shareable part) is evicted before its head.
 */
import { KilnError } from "./errors.ts";
import { extendBlockHashes, type BlockHash } from "./prefix_hash.ts";
import type { Sequence } from "./sequence.ts";

interface Block {
  readonly id: number;
  refCount: number;
  hash: BlockHash | undefined;
}

export interface PrefixCacheStats {
  /** prompt tokens looked up in the cache when sequences were admitted */
  readonly queries: number;
  /** of those, tokens found cached */
  readonly hits: number;
}

export class BlockManager {
  private readonly blocks: Block[];
  /** free, no hash: insertion-ordered, so low ids go first at start */
  private readonly uncached = new Set<number>();
  /** free, still cached: insertion order is the LRU order (first = least recently freed) */
  private readonly evictable = new Set<number>();
  private readonly cached = new Map<BlockHash, Block>();
  private queries = 0;
  private hits = 0;

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly enablePrefixCaching: boolean,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1 || !Number.isInteger(blockSize) || blockSize < 1) {
      throw new KilnError("INVALID_ARGUMENT", `the KV pool needs positive integer block count and size (got ${numBlocks}, ${blockSize})`);
    }
    this.blocks = Array.from({ length: numBlocks }, (_, id) => ({ id, refCount: 0, hash: undefined }));
    for (let id = 0; id < numBlocks; id++) this.uncached.add(id);
  }

  /** Blocks a new allocation can take (uncached free plus evictable). */
  get numFree(): number {
    return this.uncached.size + this.evictable.size;
  }

  /** Fraction of the pool held by live sequences. */
  get usage(): number {
    return 1 - this.numFree / this.numBlocks;
  }

  get prefixCacheStats(): PrefixCacheStats {
    return { queries: this.queries, hits: this.hits };
  }

  /** Blocks needed to hold `numTokens` tokens. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /**
   * The cached blocks that begin the sequence: the longest run of its full blocks found in the
   * cache, stopping short of its last token (whose logits must be computed).
   */
  findCachedPrefix(seq: Sequence): number[] {
    if (!this.enablePrefixCaching) return [];
    extendBlockHashes(seq.blockHashes, seq.tokens, this.blockSize, seq.cacheSalt);
    const maxBlocks = Math.min(Math.floor((seq.numTokens - 1) / this.blockSize), seq.blockHashes.length);
    const hit: number[] = [];
    for (let b = 0; b < maxBlocks; b++) {
      const block = this.cached.get(seq.blockHashes[b]!);
      if (!block) break;
      hit.push(block.id);
    }
    return hit;
  }

  recordLookup(queryTokens: number, hitTokens: number): void {
    this.queries += queryTokens;
    this.hits += hitTokens;
  }

  /**
   * Makes the sequence hold blocks for its first `numTokens` tokens, taking `cachedPrefix` (from
   * findCachedPrefix, only for a sequence holding nothing) first. Returns false, changing nothing,
   * when the pool is short.
   */
  allocate(seq: Sequence, numTokens: number, cachedPrefix: readonly number[] = []): boolean {
    if (cachedPrefix.length > 0 && seq.numLogicalBlocks > 0) {
      throw new Error(`sequence ${seq.id} already holds blocks; a cached prefix is only taken on admission`);
    }
    const fresh = Math.max(0, this.blocksFor(numTokens) - seq.numLogicalBlocks - cachedPrefix.length);
    const revived = cachedPrefix.filter((id) => this.blocks[id]!.refCount === 0).length;
    if (fresh + revived > this.numFree) return false;
    for (const id of cachedPrefix) {
      const block = this.blocks[id]!;
      if (block.refCount === 0) this.evictable.delete(id);
      block.refCount++;
      seq.blocks.push(id);
    }
    for (let i = 0; i < fresh; i++) seq.blocks.push(this.takeFree());
    return true;
  }

  /** Releases all the sequence's blocks (tail first) and forgets its table. */
  free(seq: Sequence): void {
    for (let i = seq.blocks.length - 1; i >= 0; i--) this.release(seq.blocks[i]!);
    seq.blocks = [];
    seq.numSkippedBlocks = 0;
    seq.numCacheCheckedBlocks = 0;
  }

  /** Offers the sequence's newly computed full blocks to the prefix cache. */
  cacheComputed(seq: Sequence): void {
    if (!this.enablePrefixCaching) return;
    const full = Math.floor(seq.numComputed / this.blockSize);
    if (full <= seq.numCacheCheckedBlocks) return;
    extendBlockHashes(seq.blockHashes, seq.tokens, this.blockSize, seq.cacheSalt);
    for (let b = Math.max(seq.numCacheCheckedBlocks, seq.numSkippedBlocks); b < full; b++) {
      const block = this.blocks[seq.blocks[b - seq.numSkippedBlocks]!]!;
      const hash = seq.blockHashes[b]!;
      // a block already cached (a hit) keeps its hash; a duplicate of a cached one stays private
      if (block.hash !== undefined || this.cached.has(hash)) continue;
      block.hash = hash;
      this.cached.set(hash, block);
    }
    seq.numCacheCheckedBlocks = full;
  }

  /**
   * Sliding-window attention in every layer: frees the leading blocks no future query can see.
   * The next query sits at position numComputed and reads keys from numComputed - window + 1 on.
   */
  dropOutsideWindow(seq: Sequence, window: number): void {
    const firstKey = Math.max(0, seq.numComputed - window + 1);
    const firstBlock = Math.floor(firstKey / this.blockSize);
    while (seq.numSkippedBlocks < firstBlock && seq.blocks.length > 0) {
      this.release(seq.blocks.shift()!);
      seq.numSkippedBlocks++;
    }
  }

  /**
   * Block-count conservation: every block is held by exactly as many of `live` as its reference
   * count says, or sits in exactly one free list; cache entries match their blocks. Throws on any
   * leak or double count (tests run this after every step).
   */
  checkConservation(live: Iterable<Sequence>): void {
    const holders = new Int32Array(this.numBlocks);
    for (const seq of live) for (const id of seq.blocks) holders[id]!++;
    for (const block of this.blocks) {
      const where = `block ${block.id}`;
      if (holders[block.id] !== block.refCount) {
        throw new Error(`${where}: refCount ${block.refCount} but held by ${holders[block.id]} live sequences`);
      }
      const inUncached = this.uncached.has(block.id);
      const inEvictable = this.evictable.has(block.id);
      if (block.refCount > 0 && (inUncached || inEvictable)) throw new Error(`${where}: held but also free`);
      if (block.refCount === 0 && inUncached === inEvictable) throw new Error(`${where}: free but in ${inUncached ? "both" : "neither"} free list(s)`);
      if (inEvictable && block.hash === undefined) throw new Error(`${where}: evictable without a hash`);
      if (inUncached && block.hash !== undefined) throw new Error(`${where}: uncached free block has a hash`);
      if (block.hash !== undefined && this.cached.get(block.hash) !== block) throw new Error(`${where}: hash not in the cache map`);
    }
    for (const [hash, block] of this.cached) {
      if (block.hash !== hash) throw new Error(`cache entry for block ${block.id} has a stale hash`);
    }
  }

  private takeFree(): number {
    const fromUncached = first(this.uncached);
    if (fromUncached !== undefined) {
      this.uncached.delete(fromUncached);
      this.blocks[fromUncached]!.refCount = 1;
      return fromUncached;
    }
    const victim = first(this.evictable);
    if (victim === undefined) throw new Error("takeFree on an empty pool (allocate checks capacity first)");
    this.evictable.delete(victim);
    const block = this.blocks[victim]!;
    if (block.hash !== undefined) this.cached.delete(block.hash);
    block.hash = undefined;
    block.refCount = 1;
    return victim;
  }

  private release(id: number): void {
    const block = this.blocks[id]!;
    if (block.refCount <= 0) throw new Error(`block ${id} released more often than taken`);
    if (--block.refCount > 0) return;
    if (block.hash !== undefined) this.evictable.add(id);
    else this.uncached.add(id);
  }
}

function first(s: Set<number>): number | undefined {
  const it = s.values().next();
  return it.done ? undefined : it.value;
}
