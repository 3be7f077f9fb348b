/**
 * The paged KV cache: for each attention layer, K and V pools of `numBlocks` blocks of
 * `blockSize` slots, each slot [numKvHeads, headDim]. Sequences own blocks through block tables;
 * slot = block * blockSize + offset.
 */
import type { KvLayerSpec } from "../../compiler/ir.ts";
import { KilnError } from "../engine/errors.ts";

export interface KvLayer {
  readonly spec: KvLayerSpec;
  readonly k: Float32Array; // [numBlocks * blockSize, numKvHeads, headDim]
  readonly v: Float32Array;
}

export class KvCache {
  private readonly layers = new Map<string, KvLayer>();

  constructor(
    specs: readonly KvLayerSpec[],
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1 || !Number.isInteger(blockSize) || blockSize < 1) {
      throw new KilnError("INVALID_ARGUMENT", `KV cache needs positive integer block count and size (got ${numBlocks}, ${blockSize})`);
    }
    for (const spec of specs) {
      const n = numBlocks * blockSize * spec.numKvHeads * spec.headDim;
      this.layers.set(spec.cacheKey, { spec, k: new Float32Array(n), v: new Float32Array(n) });
    }
  }

  /** Bytes one block takes across all layers (K and V, f32). */
  static bytesPerBlock(specs: readonly KvLayerSpec[], blockSize: number): number {
    return specs.reduce((sum, s) => sum + 2 * 4 * blockSize * s.numKvHeads * s.headDim, 0);
  }

  /** How many blocks fit in `bytes`. */
  static blocksForBudget(specs: readonly KvLayerSpec[], blockSize: number, bytes: number): number {
    const per = KvCache.bytesPerBlock(specs, blockSize);
    return per === 0 ? 1 : Math.max(1, Math.floor(bytes / per));
  }

  layer(cacheKey: string): KvLayer {
    const l = this.layers.get(cacheKey);
    if (!l) throw new Error(`no KV cache layer '${cacheKey}'`);
    return l;
  }
}

/** Where the step's tokens live in the cache and what each sequence attends to. */
export interface AttentionMetadata {
  readonly numSeqs: number;
  /** [numSeqs + 1]: sequence s owns query rows [queryStartLoc[s], queryStartLoc[s+1]) */
  readonly queryStartLoc: Int32Array;
  /** [numSeqs]: context length of each sequence after this step (cached + new tokens) */
  readonly seqLens: Int32Array;
  /** [numSeqs * maxBlocksPerSeq] */
  readonly blockTables: Int32Array;
  readonly maxBlocksPerSeq: number;
  /** [T]: cache slot of each new token */
  readonly slotMapping: Int32Array;
}

/** One sequence's part of a step, as the runner is given it. */
export interface SeqChunk {
  /** the tokens to run this step (a prompt chunk, or the last sampled token) */
  readonly tokens: readonly number[];
  /** how many of the sequence's tokens are already in the cache */
  readonly numCached: number;
  readonly blockTable: readonly number[];
  /** logits wanted for every token of the chunk (prompt logprobs) or only the last one */
  readonly allLogits?: boolean;
  /** the chunk ends before the prompt does: no logits needed */
  readonly noLogits?: boolean;
  /** the sequence's state slot (runtime/engine/state_slots.ts), for models with per-sequence state */
  readonly stateSlot?: number;
}

/** Packed inputs of one step. */
export interface StepInputs {
  readonly inputIds: Int32Array; // [T]
  readonly positions: Int32Array; // [T]
  readonly logitsIndices: Int32Array; // [S]
  readonly attn: AttentionMetadata;
  /** [numSeqs]: each sequence's state slot (models with mamba-like layers); undefined when no chunk has one */
  readonly stateSlots: Int32Array | undefined;
}

export function packStep(chunks: readonly SeqChunk[], blockSize: number): StepInputs {
  const T = chunks.reduce((n, c) => n + c.tokens.length, 0);
  let maxBlocks = 1;
  for (const c of chunks) maxBlocks = Math.max(maxBlocks, c.blockTable.length);
  const inputIds = new Int32Array(T);
  const positions = new Int32Array(T);
  const slotMapping = new Int32Array(T);
  const queryStartLoc = new Int32Array(chunks.length + 1);
  const seqLens = new Int32Array(chunks.length);
  const blockTables = new Int32Array(chunks.length * maxBlocks);
  const logits: number[] = [];
  let t = 0;
  // plain loops: this runs for every sequence of every step
  for (let s = 0; s < chunks.length; s++) {
    const c = chunks[s]!;
    const n = c.tokens.length;
    queryStartLoc[s] = t;
    seqLens[s] = c.numCached + n;
    if (c.blockTable.length * blockSize < seqLens[s]!) {
      throw new KilnError("KV_EXHAUSTED", `sequence ${s} needs ${seqLens[s]} slots but its block table holds ${c.blockTable.length} blocks`);
    }
    blockTables.set(c.blockTable, s * maxBlocks);
    for (let i = 0; i < n; i++) {
      const pos = c.numCached + i;
      inputIds[t] = c.tokens[i]!;
      positions[t] = pos;
      slotMapping[t] = c.blockTable[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
      if (c.allLogits || (!c.noLogits && i === n - 1)) logits.push(t);
      t++;
    }
  }
  queryStartLoc[chunks.length] = t;
  const withSlot = chunks.filter((c) => c.stateSlot !== undefined).length;
  if (withSlot !== 0 && withSlot !== chunks.length) {
    throw new KilnError("INVALID_ARGUMENT", `${chunks.length - withSlot} of the step's ${chunks.length} sequences have no state slot`);
  }
  return {
    stateSlots: withSlot === 0 ? undefined : Int32Array.from(chunks, (c) => c.stateSlot!),
    inputIds,
    positions,
    logitsIndices: Int32Array.from(logits),
    attn: { numSeqs: chunks.length, queryStartLoc, seqLens, blockTables, maxBlocksPerSeq: maxBlocks, slotMapping },
  };
}
