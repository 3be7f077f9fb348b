/**
 * CUDA graphs, the host side: which steps a captured graph can run, which captured size serves
 * them, and the padded step a graph of that size reads. Decode steps replay one full graph;
 * prefill and mixed steps of up to the largest size replay graph pieces between the custom ops
 * (padMixedStep, at the end).
 *
 * A graph bakes in every launch's arguments: buffer addresses, the number of rows, the width of
 * the block tables. So a decode step of n sequences runs the graph captured for the smallest
 * capture size b ≥ n, with block tables `width` entries wide (the next power of two that holds
 * the longest sequence), keyed by (b, width). Rows n..b−1 are padding: token 0 at position 0, a
 * one-token sequence whose KV goes to a block no sequence owns and whose mamba-like state goes to
 * a slot no sequence owns, so they change nothing a real sequence reads. Steps that prefill, or
 * have more sequences than the largest size, run eagerly.
 */
import { isCustomOp, nodeInputs, type Graph, type ValueId } from "../../../compiler/ir.ts";
import type { StepInputs } from "../kv_cache.ts";
import type { ExecStep } from "./fused_plan.ts";

/** vLLM-like capture sizes: small sizes densely, then every 16, then every 32. */
export const DEFAULT_CAPTURE_SIZES: readonly number[] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256];

/** Narrowest block-table width a graph is captured for. */
export const MIN_GRAPH_TABLE_WIDTH = 8;

/** One token per sequence, the logits of every row, rows in sequence order. */
export function isDecodeStep(step: StepInputs): boolean {
  const T = step.inputIds.length;
  const a = step.attn;
  if (T === 0 || a.numSeqs !== T || step.logitsIndices.length !== T) return false;
  for (let i = 0; i < T; i++) {
    if (step.logitsIndices[i] !== i || a.queryStartLoc[i] !== i) return false;
  }
  return a.queryStartLoc[T] === T;
}

/** The smallest capture size that holds n rows, or undefined past the largest. */
export function captureSizeFor(n: number, sizes: readonly number[]): number | undefined {
  let best: number | undefined;
  for (const s of sizes) if (s >= n && (best === undefined || s < best)) best = s;
  return best;
}

/** Block-table width of the graph that serves tables `maxBlocksPerSeq` wide. */
export function graphTableWidth(maxBlocksPerSeq: number): number {
  return Math.max(MIN_GRAPH_TABLE_WIDTH, 2 ** Math.ceil(Math.log2(Math.max(1, maxBlocksPerSeq))));
}

export interface DecodePadding {
  readonly rows: number;
  readonly tableWidth: number;
  readonly blockSize: number;
  /** a KV block no sequence owns */
  readonly block: number;
  /** a state slot no sequence owns (models with mamba-like layers) */
  readonly stateSlot: number | undefined;
}

/**
 * The decode step `step` as a graph of `pad.rows` rows and `pad.tableWidth`-wide block tables
 * reads it, as plain StepInputs: the statement of the padding rules. The executor packs decode
 * steps with step_inputs.ts packDecodeStep, in one pass, tested to give what packing this gives.
 */
export function padDecodeStep(step: StepInputs, pad: DecodePadding): StepInputs {
  const n = step.inputIds.length;
  const { rows: b, tableWidth: w } = pad;
  if (!isDecodeStep(step)) throw new Error("only decode steps run as CUDA graphs");
  if (n > b) throw new Error(`a decode step of ${n} sequences does not fit a graph of ${b} rows`);
  const a = step.attn;
  const inputIds = new Int32Array(b);
  inputIds.set(step.inputIds);
  const positions = new Int32Array(b);
  positions.set(step.positions);
  const logitsIndices = new Int32Array(b);
  const queryStartLoc = new Int32Array(b + 1);
  for (let i = 0; i <= b; i++) {
    if (i < b) logitsIndices[i] = i;
    queryStartLoc[i] = i;
  }
  const seqLens = new Int32Array(b).fill(1);
  seqLens.set(a.seqLens.subarray(0, n));
  const slotMapping = new Int32Array(b).fill(pad.block * pad.blockSize);
  slotMapping.set(a.slotMapping.subarray(0, n));
  const blockTables = new Int32Array(b * w);
  for (let s = 0; s < n; s++) {
    const used = Math.ceil(a.seqLens[s]! / pad.blockSize);
    if (used > w) throw new Error(`sequence ${s} needs ${used} blocks; the graph's tables hold ${w}`);
    blockTables.set(a.blockTables.subarray(s * a.maxBlocksPerSeq, s * a.maxBlocksPerSeq + used), s * w);
  }
  for (let s = n; s < b; s++) blockTables[s * w] = pad.block;
  let stateSlots: Int32Array | undefined;
  if (step.stateSlots !== undefined) {
    if (pad.stateSlot === undefined) throw new Error("a step with state slots needs a padding slot");
    stateSlots = new Int32Array(b).fill(pad.stateSlot);
    stateSlots.set(step.stateSlots);
  }
  return {
    inputIds,
    positions,
    logitsIndices,
    stateSlots,
    attn: { ...a, numSeqs: b, queryStartLoc, seqLens, slotMapping, blockTables, maxBlocksPerSeq: w },
  };
}

/** Where the padding tokens of a piecewise step go. */
export interface MixedPadding {
  readonly rows: number;
  readonly blockSize: number;
  /** a KV block no sequence owns */
  readonly block: number;
  /** a state slot no sequence owns (models with mamba-like layers) */
  readonly stateSlot: number | undefined;
}

/**
 * A prefill or mixed step of T tokens padded to `pad.rows` tokens, as the CUDA-graph pieces of
 * that size read it: each extra token is a sequence of its own (token 0 at position 0, its KV in
 * the padding block, its state in the padding slot) that asks for no logits. The step's own
 * sequences, tables and logits rows are unchanged, so attention and the stateful ops, which run
 * outside the pieces, see them as before.
 */
export function padMixedStep(step: StepInputs, pad: MixedPadding): StepInputs {
  const T = step.inputIds.length;
  const b = pad.rows;
  if (T > b) throw new Error(`a step of ${T} tokens does not fit pieces of ${b} rows`);
  const a = step.attn;
  const n = a.numSeqs;
  const extra = b - T;
  const w = a.maxBlocksPerSeq;
  const inputIds = new Int32Array(b);
  inputIds.set(step.inputIds);
  const positions = new Int32Array(b);
  positions.set(step.positions);
  const slotMapping = new Int32Array(b).fill(pad.block * pad.blockSize);
  slotMapping.set(a.slotMapping);
  const queryStartLoc = new Int32Array(n + extra + 1);
  queryStartLoc.set(a.queryStartLoc.subarray(0, n + 1));
  for (let i = 1; i <= extra; i++) queryStartLoc[n + i] = T + i;
  const seqLens = new Int32Array(n + extra).fill(1);
  seqLens.set(a.seqLens.subarray(0, n));
  const blockTables = new Int32Array((n + extra) * w);
  blockTables.set(a.blockTables.subarray(0, n * w));
  for (let s = n; s < n + extra; s++) blockTables[s * w] = pad.block;
  let stateSlots: Int32Array | undefined;
  if (step.stateSlots !== undefined) {
    if (pad.stateSlot === undefined) throw new Error("a step with state slots needs a padding slot");
    stateSlots = new Int32Array(n + extra).fill(pad.stateSlot);
    stateSlots.set(step.stateSlots);
  }
  return {
    inputIds,
    positions,
    logitsIndices: step.logitsIndices,
    stateSlots,
    attn: { ...a, numSeqs: n + extra, queryStartLoc, seqLens, slotMapping, blockTables },
  };
}

/** A run of plan units [from, to): captured as one CUDA-graph piece, or run eagerly every step. */
export interface Segment {
  readonly from: number;
  readonly to: number;
  readonly piece: boolean;
}
/**
 * The units grouped for piecewise graphs: maximal runs that depend on the step's token count
 * alone (no custom op: attention and the stateful mixers read block tables, sequence lengths and
 * state slots that change from step to step; nothing sized by the S logits rows, so the logits
 * tail stays eager) become pieces; every other unit runs eagerly on its own.
 */
export function pieceSegments(graph: Graph, units: readonly ExecStep[]): Segment[] {
  const hasS = (id: ValueId): boolean => graph.nodes[id]?.shape.includes("S") ?? false;
  const tokenOnly = (u: ExecStep): boolean => {
    if (u.kind === "fused") return u.kernel.rows !== "S" && u.kernel.buffers.every((b) => !b.shape.includes("S"));
    const n = graph.nodes[u.node]!;
    return !isCustomOp(n) && !hasS(n.id) && !nodeInputs(n).some(hasS);
  };
  const segments: Segment[] = [];
  let i = 0;
  while (i < units.length) {
    const piece = tokenOnly(units[i]!);
    let j = i + 1;
    if (piece) while (j < units.length && tokenOnly(units[j]!)) j++;
    segments.push({ from: i, to: j, piece });
    i = j;
  }
  return segments;
}
