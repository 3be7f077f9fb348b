/**
 * Where each activation lives in the CUDA executor's arena. The executor runs its steps (fused
 * kernels and nodes) in order on one stream, so a value needs memory only from the first step
 * that touches it to the last; values whose spans do not overlap share bytes. The logits, read
 * after the last step, live to the end. A value no step touches (one computed inside a fused
 * kernel) gets no memory at all. Offsets come from a greedy first-fit over the values, largest
 * first, each placed at the lowest offset free of every placed value it overlaps in time.
 *
 * The memory budget (memory_budget.ts) calls the same functions, so the KV planner reserves what
 * the executor will allocate.
 */
import { nodeInputs, numel, type Graph, type SymbolicDim, type ValueId } from "../../../compiler/ir.ts";
import type { BufferSpec } from "../../../compiler/program.ts";
import { planSteps } from "./fused_plan.ts";
import type { CompiledModel } from "../step_executor.ts";
import { attentionScratchBytes, moeScratchBytes } from "./node_kernels.ts";

/** Offsets are multiples of this (cuBLASLt and vector loads want aligned rows). */
export const ACTIVATION_ALIGN = 256;

export interface ActivationLayout {
  /** byte offset of each value with memory */
  readonly offsets: ReadonlyMap<ValueId, number>;
  /** the arena's size: the peak of the values live at once, after packing */
  readonly bytes: number;
  /** what one buffer per value would take */
  readonly unsharedBytes: number;
}

/** The activation values each step touches (reads or writes), in execution order. */
export type StepUses = readonly (readonly ValueId[])[];

const isActivation = (graph: Graph, id: ValueId): boolean => {
  const n = graph.nodes[id];
  return n !== undefined && n.kind !== "input" && n.kind !== "param";
};

/** A plan step as far as memory goes: a fused kernel's buffers, or a node (GEMM, custom op) run on its own. */
export type UsingStep = { readonly kind: "fused"; readonly buffers: readonly BufferSpec[] } | { readonly kind: "node"; readonly node: ValueId };

/** Uses of the compiled plan: a fused kernel's activation buffers, a node's output and inputs. */
export function planStepUses(graph: Graph, plan: readonly UsingStep[]): StepUses {
  return plan.map((s) => {
    if (s.kind === "fused") return s.buffers.flatMap((b) => (b.role.kind === "activation" ? [b.role.node] : []));
    const n = graph.nodes[s.node];
    if (n === undefined) throw new Error(`plan step names no node ${s.node}`);
    return [n.id, ...nodeInputs(n).filter((id) => isActivation(graph, id))];
  });
}

export interface ExecutorActivations {
  /** the graph the executor runs */
  readonly graph: Graph;
  readonly uses: StepUses;
}

/** The graph and step uses of a CudaExecutor running `compiled` (its program's plan), found without a device. */
export function executorActivations(compiled: CompiledModel): ExecutorActivations {
  return { graph: compiled.graph, uses: planStepUses(compiled.graph, planSteps(compiled.program)) };
}

/** An activation arena's parts for steps of T tokens and S rows. */
export interface ArenaSizes {
  readonly layout: ActivationLayout;
  /** the 16-bit copy of the largest GEMM input */
  readonly castBytes: number;
  /** attention split partials and MoE routes, the larger */
  readonly scratchBytes: number;
}

export function arenaSizes(graph: Graph, uses: StepUses, T: number, S: number, multiprocessors: number): ArenaSizes {
  let castBytes = 4;
  let scratchBytes = 4;
  for (const n of graph.nodes) {
    const x = n.kind === "linear" ? graph.nodes[n.x] : undefined;
    if (x !== undefined) castBytes = Math.max(castBytes, numel(x.shape, { T, S }) * 2);
    if (n.kind === "attention") scratchBytes = Math.max(scratchBytes, attentionScratchBytes(n, T, multiprocessors));
    if (n.kind === "moe") scratchBytes = Math.max(scratchBytes, moeScratchBytes(n, T));
  }
  return { layout: layoutActivations(graph, uses, { T, S }), castBytes, scratchBytes };
}

const align = (n: number): number => Math.ceil(n / ACTIVATION_ALIGN) * ACTIVATION_ALIGN;

/** Packs the values `uses` touches, sized for steps of `sizes` tokens / rows (f32 or i32 elements). */
export function layoutActivations(graph: Graph, uses: StepUses, sizes: Readonly<Record<SymbolicDim, number>>): ActivationLayout {
  const span = new Map<ValueId, { first: number; last: number }>();
  uses.forEach((ids, step) => {
    for (const id of ids) {
      const s = span.get(id);
      if (s === undefined) span.set(id, { first: step, last: step });
      else s.last = step;
    }
  });
  const logits = span.get(graph.outputs.logits);
  if (logits !== undefined) logits.last = uses.length;
  const values = [...span.entries()].map(([id, s]) => {
    const n = graph.nodes[id]!;
    return { id, ...s, bytes: align(Math.max(1, numel(n.shape, sizes)) * 4) };
  });
  // largest first; ties by first use, so the layout is deterministic
  values.sort((a, b) => b.bytes - a.bytes || a.first - b.first || a.id - b.id);
  const placed: { offset: number; end: number; first: number; last: number }[] = [];
  const offsets = new Map<ValueId, number>();
  let bytes = 0;
  let unsharedBytes = 0;
  for (const v of values) {
    unsharedBytes += v.bytes;
    const overlapping = placed.filter((p) => p.first <= v.last && v.first <= p.last).sort((a, b) => a.offset - b.offset);
    let offset = 0;
    for (const p of overlapping) {
      if (offset + v.bytes <= p.offset) break;
      offset = Math.max(offset, p.end);
    }
    placed.push({ offset, end: offset + v.bytes, first: v.first, last: v.last });
    offsets.set(v.id, offset);
    bytes = Math.max(bytes, offset + v.bytes);
  }
  return { offsets, bytes, unsharedBytes };
}
