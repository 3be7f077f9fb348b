/**
 * A free list of KV-cache block ids. The engine's block manager builds on it (reference
 * counts, prefix hashes); on its own it serves single-sequence generation.
 */
import { KilnError } from "./errors.ts";

export class BlockPool {
  private readonly free: number[];

  constructor(readonly numBlocks: number) {
    // pop() hands out low ids first
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  get numFree(): number {
    return this.free.length;
  }

  allocate(n: number): number[] {
    if (n > this.free.length) {
      throw new KilnError("KV_EXHAUSTED", `need ${n} KV blocks but only ${this.free.length} of ${this.numBlocks} are free`);
    }
    return Array.from({ length: n }, () => this.free.pop()!);
  }

  release(blocks: readonly number[]): void {
    for (const b of blocks) this.free.push(b);
  }
}

/** Grows `table` so it holds `numTokens` slots. */
export function ensureBlocks(pool: BlockPool, table: number[], numTokens: number, blockSize: number): void {
  const need = Math.ceil(numTokens / blockSize) - table.length;
  if (need > 0) table.push(...pool.allocate(need));
}
