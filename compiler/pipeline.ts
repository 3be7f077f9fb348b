/**
 * The compiler pipeline, in one list:
 *
 *   graph ─► dead-code elimination ─► common-subexpression elimination ─► constant folding
 *         ─► dead-code elimination ─► fuse ─► partition ─► lower ─► program
 *
 * Graph passes are Graph → Graph; `fuse` turns the graph into a plan of steps (fused regions,
 * GEMMs, custom ops), `partition` cuts the plan into CUDA-graph pieces at custom ops, and
 * `lower` gives every region its kernel in loop/index form. `compile` runs the whole list;
 * rendering (render/c.ts, render/cuda.ts) and building binaries (toolchain.ts, kernel_cache.ts,
 * NVRTC on a GPU machine) happen downstream, from the Program alone.
 */
import type { Graph } from "./ir.ts";
import { lowerProgram } from "./lower.ts";
import { commonSubexpressionElimination } from "./passes/cse.ts";
import { constantFolding } from "./passes/const_fold.ts";
import { deadCodeElimination } from "./passes/dce.ts";
import { fuse, type FusionPlan } from "./passes/fuse.ts";
import { partition } from "./passes/partition.ts";
import type { Program, ProgramOptions } from "./program.ts";

export interface GraphPass {
  readonly name: string;
  readonly run: (graph: Graph) => Graph;
}

export const GRAPH_PASSES: readonly GraphPass[] = [
  { name: "dead-code elimination", run: deadCodeElimination },
  { name: "common-subexpression elimination", run: commonSubexpressionElimination },
  { name: "constant folding", run: constantFolding },
  { name: "dead-code elimination", run: deadCodeElimination },
];

/** Runs the graph passes in order; `afterPass` sees each result (tests check invariants there). */
export function optimizeGraph(graph: Graph, afterPass?: (pass: GraphPass, graph: Graph) => void): Graph {
  return GRAPH_PASSES.reduce((g, pass) => {
    const out = pass.run(g);
    afterPass?.(pass, out);
    return out;
  }, graph);
}

export interface Compiled {
  /** the optimized graph the program computes */
  readonly graph: Graph;
  readonly plan: FusionPlan;
  readonly program: Program;
}

/**
 * The one call that turns a traced graph into a Program, for a backend (`options.target`: the CPU,
 * or CUDA with its sm_XX), the storage of the weights and of the KV cache, and the CUDA-graph
 * capture sizes. Executors run only what this returns (or what an artifact stored of it).
 */
export function compile(graph: Graph, options: ProgramOptions): Compiled {
  const optimized = optimizeGraph(graph);
  const plan = fuse(optimized);
  const program = lowerProgram(plan, partition(plan.steps), options);
  return { graph: optimized, plan, program };
}
