/**
 * One step timed unit by unit on the device, to see where a step's time goes (the GPU check
 * prints it; serving never uses it). A spin kernel holds the stream while the host queues every
 * unit of the plan with an event after each, so the units then run back to back, as they do
 * inside a captured graph, and the events' timestamps split the step's device time among them.
 */
import { numel, type Graph, type SymbolicDim, type ValueId } from "../../../compiler/ir.ts";
import type { CudaBackend } from "./backend.ts";
import type { ExecStep } from "./fused_plan.ts";
import type { StepLauncher } from "./step_launch.ts";

/** What a unit of the plan is, for summing the profile. */
export const UNIT_CATEGORIES = ["gemv", "gemm", "fused", "attention", "mixer", "moe", "other"] as const;
export type UnitCategory = (typeof UNIT_CATEGORIES)[number];

export interface UnitTime {
  /** the fused kernel's name, or the node's kind and scope */
  readonly label: string;
  readonly category: UnitCategory;
  readonly ms: number;
  /** bytes of weight matrices the unit reads (GEMMs and GEMVs), else 0 */
  readonly weightBytes: number;
}

export interface StepProfile {
  readonly units: readonly UnitTime[];
  /** host time spent queueing the units; above spinMs the later units were not timed back to back */
  readonly queueMs: number;
  readonly spinMs: number;
}

export interface ProfileOptions {
  readonly sizes: Readonly<Record<SymbolicDim, number>>;
  /** linears of at most this many rows run as GEMVs */
  readonly gemvMaxRows: number;
  /** bytes a parameter takes on the device */
  readonly paramBytes: (param: ValueId) => number;
  /** device time the spin kernel holds the stream before the units (default 20 ms) */
  readonly spinMs?: number;
}

function describe(graph: Graph, unit: ExecStep, o: ProfileOptions): Omit<UnitTime, "ms"> {
  if (unit.kind === "fused") return { label: unit.kernel.fn.name, category: "fused", weightBytes: 0 };
  const n = graph.nodes[unit.node]!;
  const label = `${n.kind} ${n.scope}`;
  switch (n.kind) {
    case "linear": {
      const rows = numel(n.shape.slice(0, -1), o.sizes);
      return { label, category: rows <= o.gemvMaxRows ? "gemv" : "gemm", weightBytes: o.paramBytes(n.weight) };
    }
    case "attention":
      return { label, category: "attention", weightBytes: 0 };
    case "moe":
      return { label, category: "moe", weightBytes: 0 };
    case "selective_scan":
    case "ssd_scan":
    case "short_conv":
    case "linear_attention":
      return { label, category: "mixer", weightBytes: 0 };
    default:
      return { label, category: "other", weightBytes: 0 };
  }
}

/** Runs units [0, units.length) of one step through `launcher` with an event after each; waits for them. */
export function profileUnits(backend: CudaBackend, graph: Graph, units: readonly ExecStep[], launcher: StepLauncher, o: ProfileOptions): StepProfile {
  const dev = backend.device;
  const spinMs = o.spinMs ?? 20;
  const events: bigint[] = [];
  try {
    for (let i = 0; i <= units.length; i++) events.push(dev.createEvent());
    dev.synchronize();
    backend.kernels.launch("kiln_spin", [1, 1, 1], [1, 1, 1], [Math.round(spinMs * 1e6)]);
    const t0 = performance.now();
    dev.recordEvent(events[0]!);
    for (let i = 0; i < units.length; i++) {
      launcher.run(i, i + 1);
      dev.recordEvent(events[i + 1]!);
    }
    const queueMs = performance.now() - t0;
    const times = units.map((u, i) => ({ ...describe(graph, u, o), ms: dev.elapsedMs(events[i]!, events[i + 1]!) }));
    return { units: times, queueMs, spinMs };
  } finally {
    dev.synchronize();
    for (const e of events) dev.destroyEvent(e);
  }
}

export interface CategoryTime {
  readonly category: UnitCategory;
  readonly ms: number;
  readonly count: number;
  readonly weightBytes: number;
}

/** The profile summed by category, largest first. */
export function profileByCategory(units: readonly UnitTime[]): CategoryTime[] {
  const sums = UNIT_CATEGORIES.map((category) => {
    const of = units.filter((u) => u.category === category);
    return { category, ms: of.reduce((s, u) => s + u.ms, 0), count: of.length, weightBytes: of.reduce((s, u) => s + u.weightBytes, 0) };
  });
  return sums.filter((c) => c.count > 0).sort((a, b) => b.ms - a.ms);
}
