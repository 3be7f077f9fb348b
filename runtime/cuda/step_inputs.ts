/**
 * One step's inputs as the CUDA kernels read them, packed into a single i32 array so a step costs
 * one host→device copy. Besides the StepInputs arrays it holds, per query row, the sequence that
 * owns it and its position in that sequence (what paged attention derives from queryStartLoc and
 * seqLens on the CPU). Everything an index is taken from is checked here, on the host, before
 * any kernel can read out of bounds.
 */
import { KilnError } from "../errors.ts";
import type { StepInputs } from "../kv_cache.ts";

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

export function packStepInputs(step: StepInputs, limits: PackLimits): PackedStep {
  const T = step.inputIds.length;
  const S = step.logitsIndices.length;
  const a = step.attn;
  const tables = a.numSeqs * a.maxBlocksPerSeq;
  // the per-token sections first: their offsets depend on T alone, so a CUDA-graph piece
  // captured for T tokens finds them in the same place whatever the step's S or table width
  const layout: PackedLayout = {
    inputIds: 0,
    positions: T,
    slotMapping: 2 * T,
    tokenSeq: 3 * T,
    tokenPos: 4 * T,
    logitsIndices: 5 * T,
    blockTables: 5 * T + S,
    queryStartLoc: 5 * T + S + tables,
    stateSlots: 5 * T + S + tables + a.numSeqs + 1,
    length: 5 * T + S + tables + 2 * a.numSeqs + 1,
  };
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
