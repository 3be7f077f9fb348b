/**
 * The CUDA graphs a CudaExecutor replays (runtime/backends/cuda/decode_graphs.ts says how steps are
 * padded for them).
 *
 * Decode steps (one token per sequence) replay a full graph per (capture size, block-table
 * width): the first step of a shape runs eagerly on the graphs' own static arena and is then
 * captured; later steps of that shape only copy their padded inputs into the graph's input
 * buffer and launch it. All decode graphs share that one arena, sized for the largest capture
 * size used so far; when it has to grow, the graphs are dropped and captured again on demand.
 *
 * Prefill and mixed steps of up to the largest capture size run piecewise (as vLLM's piecewise
 * graphs): padded to a capture size, the runs of launches between custom ops replay graphs
 * captured for that many tokens on the executor's eager arena, while attention, the stateful
 * mixers and the logits tail run eagerly. Larger steps are left to the executor.
 */
import type { StepInputs } from "../kv_cache.ts";
import type { Arena } from "./arena.ts";
import { captureSizeFor, graphTableWidth, isDecodeStep, padMixedStep, type DecodePadding, type Segment } from "./decode_graphs.ts";
import type { CudaDevice, CudaGraph, DevicePtr } from "./device.ts";
import type { StepLauncher } from "./step_launch.ts";
import type { PackedStep } from "./step_inputs.ts";

/** What the graphs need from their executor. */
export interface GraphHost {
  readonly device: CudaDevice;
  /** the plan's units grouped into pieces (between custom ops, before the logits rows) and eager runs */
  readonly segments: readonly Segment[];
  readonly unitCount: number;
  readonly blockSize: number;
  /** the engine's pool size; block numBlocks is the padding rows' block */
  readonly numBlocks: number;
  /** the state slot the padding rows use, for graphs with mamba-like layers */
  readonly paddingSlot: number | undefined;
  /** packs a step's inputs; `padded` admits the padding block and slot */
  pack(step: StepInputs, padded: boolean): PackedStep;
  /** packs a decode step padded for a graph (step_inputs.ts packDecodeStep) */
  packDecode(step: StepInputs, pad: DecodePadding): PackedStep;
  /** the executor's eager arena, grown to hold the step (telling arenaReleased first) */
  eagerArena(T: number, S: number, inputLength: number): Arena;
  allocArena(T: number, S: number, inputLength: number): Arena;
  releaseArena(a: Arena): void;
  launcher(packed: PackedStep, arena: Arena, inputs: DevicePtr): StepLauncher;
  logitsAddress(arena: Arena): DevicePtr;
}

/** A step queued on the device: its packed inputs, the arena it ran on, its logits' address. */
export interface QueuedStep {
  readonly packed: PackedStep;
  readonly arena: Arena;
  readonly logits: DevicePtr;
}

/** How many steps ran which way, and how many graphs were captured. */
export interface GraphStats {
  /** decode graphs captured, and decode steps that replayed one */
  readonly captures: number;
  readonly replays: number;
  /** steps run without any graph (a first step of a size, or one past the largest) */
  readonly eagerSteps: number;
  /** decode graphs held now */
  readonly graphs: number;
  /** sizes whose pieces were captured, and prefill/mixed steps that replayed pieces */
  readonly pieceCaptures: number;
  readonly pieceReplays: number;
  /** piece graphs held now */
  readonly pieceGraphs: number;
}

interface DecodeGraph {
  readonly graph: CudaGraph;
  /** the graph's own packed-input buffer, of exactly its layout's length */
  readonly inputs: DevicePtr;
}

export class StepGraphs {
  /** the activations every decode graph reads and writes */
  private graphArena: Arena | undefined = undefined;
  private readonly decodeGraphs = new Map<string, DecodeGraph>();
  /** capture size → its pieces' graphs, in segment order, all against pieceArena */
  private readonly pieceGraphs = new Map<number, CudaGraph[]>();
  private pieceArena: Arena | undefined = undefined;
  private counts = { captures: 0, replays: 0, eagerSteps: 0, pieceCaptures: 0, pieceReplays: 0 };

  constructor(
    private readonly host: GraphHost,
    /** batch sizes graphs are captured for; empty: none */
    readonly captureSizes: readonly number[],
  ) {}

  /** Queues a step through graphs, or returns undefined when it is larger than the largest capture size. */
  forward(step: StepInputs): QueuedStep | undefined {
    if (this.captureSizes.length === 0) return undefined;
    return isDecodeStep(step) ? this.forwardDecode(step) : this.forwardPiecewise(step);
  }

  /** Device bytes of the decode graphs' arena. */
  get arenaBytes(): number {
    return this.graphArena?.bytes ?? 0;
  }

  /** The counts, with `eagerSteps` more steps the executor ran without graphs. */
  stats(eagerSteps: number): GraphStats {
    let pieceGraphs = 0;
    for (const g of this.pieceGraphs.values()) pieceGraphs += g.length;
    return { ...this.counts, eagerSteps: this.counts.eagerSteps + eagerSteps, graphs: this.decodeGraphs.size, pieceGraphs };
  }

  /** The executor is about to free `a`: pieces captured against it go with it. */
  arenaReleased(a: Arena): void {
    if (a !== this.pieceArena) return;
    this.dropPieces();
    this.pieceArena = undefined;
  }

  /** Drops every captured graph and the decode graphs' arena. */
  dispose(): void {
    this.dropDecodeGraphs();
    this.dropPieces();
    this.pieceArena = undefined;
  }

  /**
   * A prefill or mixed step of at most the largest capture size, padded to the capture size b
   * that holds it (padMixedStep): the segments between custom ops replay the CUDA graphs
   * captured for b tokens, the custom ops and the logits tail run eagerly. The first step of a
   * size (or on a new arena) runs eagerly, and then its pieces are captured, without running,
   * for the next.
   */
  private forwardPiecewise(step: StepInputs): QueuedStep | undefined {
    const h = this.host;
    const rows = captureSizeFor(step.inputIds.length, this.captureSizes);
    if (rows === undefined || !h.segments.some((g) => g.piece)) return undefined;
    const padded = padMixedStep(step, { rows, blockSize: h.blockSize, block: h.numBlocks, stateSlot: h.paddingSlot });
    const packed = h.pack(padded, true);
    const arena = h.eagerArena(packed.T, packed.S, packed.layout.length);
    if (this.pieceArena !== arena) {
      this.dropPieces();
      this.pieceArena = arena;
    }
    const dev = h.device;
    dev.upload(arena.inputs, packed.data);
    const launcher = h.launcher(packed, arena, arena.inputs);
    const graphs = this.pieceGraphs.get(rows);
    if (graphs === undefined) {
      launcher.run(0, h.unitCount);
      const captured: CudaGraph[] = [];
      try {
        for (const g of h.segments) if (g.piece) captured.push(dev.captureGraph(() => launcher.run(g.from, g.to)));
      } catch (e) {
        for (const c of captured) dev.destroyGraph(c);
        throw e;
      }
      this.pieceGraphs.set(rows, captured);
      this.counts.pieceCaptures++;
      this.counts.eagerSteps++;
      return { packed, arena, logits: launcher.logits() };
    }
    let k = 0;
    for (const g of h.segments) {
      if (g.piece) dev.replay(graphs[k++]!);
      else launcher.run(g.from, g.to);
    }
    this.counts.pieceReplays++;
    return { packed, arena, logits: launcher.logits() };
  }

  /**
   * A decode step through the graph of its capture size and table width: replayed when captured
   * before, else run eagerly on the graph arena and captured for the next time.
   */
  private forwardDecode(step: StepInputs): QueuedStep | undefined {
    const h = this.host;
    const rows = captureSizeFor(step.inputIds.length, this.captureSizes);
    if (rows === undefined) return undefined;
    const tableWidth = graphTableWidth(step.attn.maxBlocksPerSeq);
    const base = h.packDecode(step, { rows, tableWidth, blockSize: h.blockSize, block: h.numBlocks, stateSlot: h.paddingSlot });
    // split attention along the keys as the widest context of this table width needs, so the
    // captured launch shape serves every step the graph will see
    const keyBound = tableWidth * h.blockSize;
    const packed: PackedStep = { ...base, maxKeys: (window) => (window === undefined ? keyBound : Math.min(keyBound, window)) };
    let arena = this.graphArena;
    if (arena === undefined || arena.T < rows) {
      if (arena !== undefined) this.dropDecodeGraphs();
      const largest = Math.max(...this.captureSizes);
      const capacity = Math.min(largest, Math.max(rows, 2 * (arena?.T ?? 0)));
      arena = this.graphArena = h.allocArena(capacity, capacity, 1);
    }
    const dev = h.device;
    const key = `${rows}x${tableWidth}`;
    const known = this.decodeGraphs.get(key);
    if (known !== undefined) {
      dev.upload(known.inputs, packed.data);
      dev.replay(known.graph);
      this.counts.replays++;
      return { packed, arena, logits: h.logitsAddress(arena) };
    }
    // first use: this step runs eagerly (warming every kernel and GEMM plan up), then the same
    // launches are recorded, without running, for the next step of this shape
    const inputs = dev.alloc(packed.data.byteLength);
    try {
      dev.upload(inputs, packed.data);
      const launcher = h.launcher(packed, arena, inputs);
      launcher.run(0, h.unitCount);
      const graph = dev.captureGraph(() => launcher.run(0, h.unitCount));
      this.decodeGraphs.set(key, { graph, inputs });
      this.counts.captures++;
      this.counts.eagerSteps++;
      return { packed, arena, logits: launcher.logits() };
    } catch (e) {
      if (!this.decodeGraphs.has(key)) dev.free(inputs);
      throw e;
    }
  }

  /** Drops every decode graph and the arena they share. */
  private dropDecodeGraphs(): void {
    const dev = this.host.device;
    dev.synchronize();
    for (const g of this.decodeGraphs.values()) {
      dev.destroyGraph(g.graph);
      dev.free(g.inputs);
    }
    this.decodeGraphs.clear();
    if (this.graphArena) this.host.releaseArena(this.graphArena);
    this.graphArena = undefined;
  }

  /** Drops every captured piece (their arena is gone or replaced). */
  private dropPieces(): void {
    if (this.pieceGraphs.size === 0) return;
    const dev = this.host.device;
    dev.synchronize();
    for (const graphs of this.pieceGraphs.values()) for (const g of graphs) dev.destroyGraph(g);
    this.pieceGraphs.clear();
  }
}
