/**
 * Pass: partition the step list at custom ops into pieces for piecewise CUDA-graph capture.
 *
 * Fused kernels and GEMMs have fixed launch shapes for a given token count, so runs of them are
 * captured as CUDA graphs (one per capture size); custom ops such as paged attention depend on
 * per-step metadata (sequence lengths, block tables) and run eagerly between the graphs, as in
 * vLLM's piecewise capture. A Mamba-like custom op will split the same way.
 *
 *   steps:  [k, g, k, ATT, g, k, g, k, g, ATT, ...]
 *   pieces: graph[0,3) custom[3,4) graph[4,9) custom[9,10) ...
 */
import type { PlanStep } from "./fuse.ts";

export interface Piece {
  readonly kind: "graph" | "custom";
  /** steps [start, end) of the plan */
  readonly start: number;
  readonly end: number;
}

export function partition(steps: readonly PlanStep[]): Piece[] {
  const pieces: Piece[] = [];
  let start = 0;
  steps.forEach((s, i) => {
    if (s.kind !== "custom") return;
    if (i > start) pieces.push({ kind: "graph", start, end: i });
    pieces.push({ kind: "custom", start: i, end: i + 1 });
    start = i + 1;
  });
  if (steps.length > start) pieces.push({ kind: "graph", start, end: steps.length });
  return pieces;
}
