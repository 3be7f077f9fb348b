/**
 * One step's inputs as the CUDA kernels read them, packed into a single i32 array so a step costs
 * one host→device copy. Besides the StepInputs arrays it holds, per query row, the sequence that
 * owns it and its position in that sequence (what paged attention derives from queryStartLoc and
 * seqLens on the CPU). Everything an index is taken from is checked here, on the host, before
 * any kernel can read out of bounds.
 */
import { KilnError } from "../../engine/errors.ts";
import type { StepInputs } from "../kv_cache.ts";
import { isDecodeStep, type DecodePadding } from "./decode_graphs.ts";

/** Offsets (in i32 elements) of each section of the packed array. */
export interface PackedLayout {
  readonly inputIds: number; // [T]
  readonly positions: number; // [T]
  readonly slotMapping: number; // [T]
  readonly tokenSeq: number; // [T]
  readonly tokenPos: number; // [T]
  readonly logitsIndices: number; // [S]
  readonly blockTables: number; // [numSeqs · maxBlocksPerSeq]
  readonly queryStartLoc: number; // [numSeqs + 1]
  readonly stateSlots: number; // [numSeqs], zeros when the step has no state slots
  readonly length: number;
}

export interface PackedStep {
  readonly data: Int32Array;
  readonly layout: PackedLayout;
  readonly T: number;
  readonly S: number;
  readonly numSeqs: number;
  readonly maxBlocksPerSeq: number;
  /** the most keys any query row attends (after the sliding window, if any) */
  readonly maxKeys: (window: number | undefined) => number;
}

export interface PackLimits {
  /** vocabulary of the embedding table(s) the ids index */
  readonly vocab: number | undefined;
  /** rows of a learned position table the positions index (GPT-2, OPT); undefined: none */
  readonly positions?: number | undefined;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** the state pool's slots; a step's state slots must lie below it */
  readonly numStateSlots: number | undefined;
}

/**
 * The sections of a step of T tokens, S logits rows and numSeqs sequences with tables `width`
 * blocks wide. The per-token sections come first: their offsets depend on T alone, so a CUDA-graph
 * piece captured for T tokens finds them in the same place whatever the step's S or table width.
 */
function stepLayout(T: number, S: number, numSeqs: number, width: number): PackedLayout {
  const tables = numSeqs * width;
  return {
    inputIds: 0,
    positions: T,
    slotMapping: 2 * T,
    tokenSeq: 3 * T,
    tokenPos: 4 * T,
    logitsIndices: 5 * T,
    blockTables: 5 * T + S,
    queryStartLoc: 5 * T + S + tables,
    stateSlots: 5 * T + S + tables + numSeqs + 1,
    length: 5 * T + S + tables + 2 * numSeqs + 1,
  };
}

export function packStepInputs(step: StepInputs, limits: PackLimits): PackedStep {
  const T = step.inputIds.length;
  const S = step.logitsIndices.length;
  const a = step.attn;
  const tables = a.numSeqs * a.maxBlocksPerSeq;
  const layout = stepLayout(T, S, a.numSeqs, a.maxBlocksPerSeq);
  if (step.positions.length !== T || a.slotMapping.length !== T || a.queryStartLoc.length !== a.numSeqs + 1) {
    throw new KilnError("INVALID_ARGUMENT", "step inputs disagree on the number of tokens");
  }
  if (a.blockTables.length < tables || a.seqLens.length < a.numSeqs) {
    throw new KilnError("INVALID_ARGUMENT", "step inputs: block tables or sequence lengths are short");
  }
  const data = new Int32Array(Math.max(1, layout.length));
  data.set(step.inputIds, layout.inputIds);
  data.set(step.positions, layout.positions);
  data.set(step.logitsIndices, layout.logitsIndices);
  data.set(a.slotMapping, layout.slotMapping);
  data.set(a.blockTables.subarray(0, tables), layout.blockTables);
  data.set(a.queryStartLoc, layout.queryStartLoc);
  if (limits.numStateSlots !== undefined && step.stateSlots === undefined && a.numSeqs > 0) {
    throw new KilnError("INVALID_ARGUMENT", "the model keeps per-sequence state: every sequence of the step needs a state slot");
  }
  if (step.stateSlots !== undefined) {
    if (step.stateSlots.length !== a.numSeqs) throw new KilnError("INVALID_ARGUMENT", "step inputs: one state slot per sequence is needed");
    for (const slot of step.stateSlots) {
      if (limits.numStateSlots === undefined || slot < 0 || slot >= limits.numStateSlots) {
        throw new KilnError("INVALID_ARGUMENT", `state slot ${slot} is outside the pool of ${limits.numStateSlots ?? 0}`);
      }
    }
    data.set(step.stateSlots, layout.stateSlots);
  }

  if (limits.vocab !== undefined) {
    for (let t = 0; t < T; t++) {
      const id = step.inputIds[t]!;
      if (id < 0 || id >= limits.vocab) throw new KilnError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (${limits.vocab})`);
    }
  }
  if (limits.positions !== undefined) {
    for (let t = 0; t < T; t++) {
      const p = step.positions[t]!;
      if (p < 0 || p >= limits.positions) throw new KilnError("INVALID_ARGUMENT", `position ${p} is outside the learned position table (${limits.positions})`);
    }
  }
  for (let s = 0; s < S; s++) {
    const r = step.logitsIndices[s]!;
    if (r < 0 || r >= T) throw new KilnError("INVALID_ARGUMENT", `logits index ${r} is outside the step's ${T} tokens`);
  }
  const numSlots = limits.numBlocks * limits.blockSize;
  for (let t = 0; t < T; t++) {
    const slot = a.slotMapping[t]!;
    if (slot < 0 || slot >= numSlots) throw new KilnError("KV_EXHAUSTED", `slot ${slot} is outside the KV cache's ${numSlots} slots`);
  }
  if (a.queryStartLoc[0] !== 0 || a.queryStartLoc[a.numSeqs] !== T) {
    throw new KilnError("INVALID_ARGUMENT", "queryStartLoc must run from 0 to the number of tokens");
  }
  for (let s = 0; s < a.numSeqs; s++) {
    const start = a.queryStartLoc[s]!;
    const end = a.queryStartLoc[s + 1]!;
    const seqLen = a.seqLens[s]!;
    if (end < start || seqLen < end - start) throw new KilnError("INVALID_ARGUMENT", `sequence ${s}: bad query range or length`);
    const blocks = Math.ceil(seqLen / limits.blockSize);
    if (blocks > a.maxBlocksPerSeq) throw new KilnError("KV_EXHAUSTED", `sequence ${s} needs ${blocks} blocks; its table holds ${a.maxBlocksPerSeq}`);
    for (let b = 0; b < blocks; b++) {
      const block = a.blockTables[s * a.maxBlocksPerSeq + b]!;
      if (block < 0 || block >= limits.numBlocks) throw new KilnError("KV_EXHAUSTED", `sequence ${s}: block ${block} is outside the pool of ${limits.numBlocks}`);
    }
    const first = seqLen - (end - start);
    for (let t = start; t < end; t++) {
      data[layout.tokenSeq + t] = s;
      data[layout.tokenPos + t] = first + (t - start);
    }
  }
  const maxKeys = (window: number | undefined): number => {
    let m = 0;
    for (let t = 0; t < T; t++) {
      const pos = data[layout.tokenPos + t]!;
      m = Math.max(m, window === undefined ? pos + 1 : Math.min(pos + 1, window));
    }
    return m;
  };
  return { data, layout, T, S, numSeqs: a.numSeqs, maxBlocksPerSeq: a.maxBlocksPerSeq, maxKeys };
}

/**
 * A decode step (one token per sequence) packed as the CUDA graph of `pad.rows` rows and
 * `pad.tableWidth`-wide block tables reads it, in one pass: the same array as
 * packStepInputs(padDecodeStep(step, pad), limits), with limits that admit the padding block and
 * slot. Padding rows decode token 0 at position 0 of a one-token sequence in the padding block.
 */
export function packDecodeStep(step: StepInputs, limits: PackLimits, pad: DecodePadding): PackedStep {
  const n = step.inputIds.length;
  const { rows: b, tableWidth: w, blockSize } = pad;
  if (!isDecodeStep(step)) throw new Error("only decode steps run as CUDA graphs");
  if (n > b) throw new Error(`a decode step of ${n} sequences does not fit a graph of ${b} rows`);
  if (blockSize !== limits.blockSize) throw new Error("the padding and the pool disagree on the block size");
  const a = step.attn;
  const layout = stepLayout(b, b, b, w);
  const data = new Int32Array(layout.length);
  const numSlots = limits.numBlocks * blockSize;
  const { vocab, positions: positionRows } = limits;
  for (let s = 0; s < n; s++) {
    const id = step.inputIds[s]!;
    if (vocab !== undefined && (id < 0 || id >= vocab)) throw new KilnError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (${vocab})`);
    const pos = step.positions[s]!;
    if (positionRows !== undefined && (pos < 0 || pos >= positionRows)) {
      throw new KilnError("INVALID_ARGUMENT", `position ${pos} is outside the learned position table (${positionRows})`);
    }
    const slot = a.slotMapping[s]!;
    if (slot < 0 || slot >= numSlots) throw new KilnError("KV_EXHAUSTED", `slot ${slot} is outside the KV cache's ${numSlots} slots`);
    const seqLen = a.seqLens[s]!;
    if (seqLen < 1) throw new KilnError("INVALID_ARGUMENT", `sequence ${s}: bad query range or length`);
    const used = Math.ceil(seqLen / blockSize);
    if (used > w) throw new Error(`sequence ${s} needs ${used} blocks; the graph's tables hold ${w}`);
    if (used > a.maxBlocksPerSeq) throw new KilnError("KV_EXHAUSTED", `sequence ${s} needs ${used} blocks; its table holds ${a.maxBlocksPerSeq}`);
    const src = s * a.maxBlocksPerSeq;
    const dst = layout.blockTables + s * w;
    for (let k = 0; k < used; k++) {
      const block = a.blockTables[src + k]!;
      if (block < 0 || block >= limits.numBlocks) throw new KilnError("KV_EXHAUSTED", `sequence ${s}: block ${block} is outside the pool of ${limits.numBlocks}`);
      data[dst + k] = block;
    }
    data[layout.inputIds + s] = id;
    data[layout.positions + s] = pos;
    data[layout.slotMapping + s] = slot;
    data[layout.tokenPos + s] = seqLen - 1;
  }
  const padSlot = pad.block * blockSize;
  if (pad.block < 0 || pad.block >= limits.numBlocks) throw new KilnError("KV_EXHAUSTED", `the padding block ${pad.block} is outside the pool of ${limits.numBlocks}`);
  for (let s = n; s < b; s++) {
    data[layout.slotMapping + s] = padSlot;
    data[layout.blockTables + s * w] = pad.block;
  }
  for (let s = 0; s < b; s++) {
    data[layout.tokenSeq + s] = s;
    data[layout.logitsIndices + s] = s;
    data[layout.queryStartLoc + s] = s;
  }
  data[layout.queryStartLoc + b] = b;
  if (limits.numStateSlots !== undefined && step.stateSlots === undefined && n > 0) {
    throw new KilnError("INVALID_ARGUMENT", "the model keeps per-sequence state: every sequence of the step needs a state slot");
  }
  if (step.stateSlots !== undefined) {
    if (pad.stateSlot === undefined) throw new Error("a step with state slots needs a padding slot");
    if (step.stateSlots.length !== n) throw new KilnError("INVALID_ARGUMENT", "step inputs: one state slot per sequence is needed");
    for (let s = 0; s < b; s++) {
      const slot = s < n ? step.stateSlots[s]! : pad.stateSlot;
      if (limits.numStateSlots === undefined || slot < 0 || slot >= limits.numStateSlots) {
        throw new KilnError("INVALID_ARGUMENT", `state slot ${slot} is outside the pool of ${limits.numStateSlots ?? 0}`);
      }
      data[layout.stateSlots + s] = slot;
    }
  }
  const tokenPos = layout.tokenPos;
  const maxKeys = (window: number | undefined): number => {
    let m = 0;
    for (let t = 0; t < b; t++) {
      const p = data[tokenPos + t]!;
      m = Math.max(m, window === undefined ? p + 1 : Math.min(p + 1, window));
    }
    return m;
  };
  return { data, layout, T: b, S: b, numSeqs: b, maxBlocksPerSeq: w, maxKeys };
}
