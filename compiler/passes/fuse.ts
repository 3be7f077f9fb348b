/**
 * Pass: fusion. Groups elementwise ops, row reductions (RMS / layer norm), slices, gathers,
 * rotary embedding and KV-cache writes into regions that each become one generated kernel;
 * GEMMs and custom ops stay steps of their own. The result is the plan of steps in run order.
 *
 * Every fusible op computes row r of its output from row r of its inputs (a gather: from row
 * indices[r]), so a region runs as one kernel over the rows of its row space. Regions grow
 * producer-into-consumer, walking the graph backwards:
 *
 *   a producer joins the region of its earliest consumer when
 *     - all its consumers in that region read it at the same row (through the same gathers),
 *     - if anything outside the region reads it too, it is read at the region's own rows, so the
 *       kernel can store it whole (a residual sum stored while its RMS norm is computed),
 *     - and no path leaves the region and comes back (that would be a cycle between steps).
 *
 * Then sibling regions over the same rows that read a common activation and do not depend on
 * each other merge (the rotary embedding of q with the one of k and the KV write: one kernel
 * after the qkv GEMM).
 */
import type { Dim, Graph, ValueId } from "../ir.ts";
import { FusionGraph } from "./fusion_graph.ts";

export interface Region {
  readonly rows: Dim;
  /** IR nodes fused, in topological order */
  readonly nodes: readonly ValueId[];
  /** members whose values other steps (or the logits) read: the kernel stores them */
  readonly outputs: readonly ValueId[];
  /** attention nodes whose k and v this kernel writes into the KV cache */
  readonly kvWrites: readonly ValueId[];
  /** per member: the gather_rows nodes between the kernel's row and the member's row, outermost first */
  readonly rowPaths: ReadonlyMap<ValueId, readonly ValueId[]>;
}

export type PlanStep =
  | { readonly kind: "fused"; readonly region: Region }
  | { readonly kind: "gemm"; readonly node: ValueId }
  /** a custom op that splits CUDA-graph pieces (attention, stateful layers) */
  | { readonly kind: "custom"; readonly node: ValueId }
  /** an opaque op captured inside a piece (fused experts) */
  | { readonly kind: "opaque"; readonly node: ValueId };

export interface FusionPlan {
  readonly graph: Graph;
  readonly steps: readonly PlanStep[];
}

interface Building {
  rows: Dim;
  members: Set<number>;
  paths: Map<number, readonly ValueId[]>;
}

export function fuse(graph: Graph): FusionPlan {
  const fg = new FusionGraph(graph);
  const regionOf = new Map<number, Building>();
  const unitOf = (v: number): Building | number => regionOf.get(v) ?? v;

  /**
   * Whether a path from one of `from` (outside r) reaches a member of r, treating regions as
   * units. Paths only go forward in topological order, so a unit that starts after r's last
   * member is a dead end.
   */
  const reaches = (from: readonly number[], r: Building): boolean => {
    const last = Math.max(...[...r.members].map((m) => fg.position[m]!));
    const seen = new Set<Building | number>();
    const stack = [...from];
    while (stack.length > 0) {
      const v = stack.pop()!;
      const unit = unitOf(v);
      if (unit === r) return true;
      if (seen.has(unit)) continue;
      seen.add(unit);
      const members = typeof unit === "number" ? [unit] : [...unit.members];
      if (Math.min(...members.map((m) => fg.position[m]!)) > last) continue;
      for (const m of members) for (const u of fg.users[m]!) stack.push(u);
    }
    return false;
  };
  /** the readers outside r of r's members */
  const outsideUsers = (r: Building): number[] => [...r.members].flatMap((m) => fg.users[m]!.filter((u) => !r.members.has(u)));

  /** the rows path at which the consumers in r read v, or undefined when they disagree */
  const pathIn = (v: number, r: Building): readonly ValueId[] | undefined => {
    let path: readonly ValueId[] | undefined;
    for (const u of fg.users[v]!) {
      if (!r.members.has(u)) continue;
      const un = fg.vertex(u);
      const base = r.paths.get(u)!;
      const p = !un.kvWrite && un.node.kind === "gather_rows" && un.node.x === v ? [...base, u] : base;
      if (path !== undefined && (p.length !== path.length || p.some((g, i) => g !== path![i]))) return undefined;
      path = p;
    }
    return path;
  };

  const canJoin = (v: number, r: Building): readonly ValueId[] | undefined => {
    const path = pathIn(v, r);
    if (path === undefined) return undefined;
    const stored = fg.isGraphOutput(v) || fg.users[v]!.some((u) => !r.members.has(u));
    if (stored && (path.length > 0 || fg.vertex(v).rows !== r.rows)) return undefined;
    // with v inside, no path may leave the region and come back in (through v's readers, or
    // through another member's readers into v)
    r.members.add(v);
    regionOf.set(v, r);
    const cycle = reaches(outsideUsers(r), r);
    r.members.delete(v);
    regionOf.delete(v);
    return cycle ? undefined : path;
  };

  for (let i = fg.order.length - 1; i >= 0; i--) {
    const v = fg.order[i]!;
    if (fg.vertex(v).cls !== "fusible") continue;
    const candidates = [...new Set(fg.users[v]!.map((u) => regionOf.get(u)).filter((r): r is Building => r !== undefined))];
    candidates.sort((a, b) => firstPosition(fg, a) - firstPosition(fg, b));
    let joined = false;
    for (const r of candidates) {
      const path = canJoin(v, r);
      if (path === undefined) continue;
      r.members.add(v);
      r.paths.set(v, path);
      regionOf.set(v, r);
      joined = true;
      break;
    }
    if (!joined) {
      const r: Building = { rows: fg.vertex(v).rows, members: new Set([v]), paths: new Map([[v, []]]) };
      regionOf.set(v, r);
    }
  }

  mergeSiblings(fg, regionOf, reaches, outsideUsers);
  return { graph, steps: schedule(fg, regionOf) };
}

function firstPosition(fg: FusionGraph, r: Building): number {
  return Math.min(...[...r.members].map((m) => fg.position[m]!));
}

/** External activations (not inputs or weights) a region reads. */
function activationInputs(fg: FusionGraph, r: Building): Set<number> {
  const out = new Set<number>();
  for (const m of r.members) {
    for (const i of fg.vertex(m).inputs) if (!r.members.has(i) && fg.vertex(i).cls !== "source") out.add(i);
  }
  return out;
}

function mergeSiblings(
  fg: FusionGraph,
  regionOf: Map<number, Building>,
  reaches: (from: readonly number[], r: Building) => boolean,
  outsideUsers: (r: Building) => number[],
): void {
  /** a reads, directly or not, something b computes */
  const dependsOn = (a: Building, b: Building): boolean => reaches(outsideUsers(b), a);
  for (let changed = true; changed; ) {
    changed = false;
    // only regions that read a common activation are candidates
    const readers = new Map<number, Building[]>();
    for (const r of new Set(regionOf.values())) {
      for (const x of activationInputs(fg, r)) readers.set(x, [...(readers.get(x) ?? []), r]);
    }
    const gone = new Set<Building>();
    for (const rs of readers.values()) {
      rs.sort((a, b) => firstPosition(fg, a) - firstPosition(fg, b));
      for (let i = 0; i < rs.length; i++) {
        for (let j = i + 1; j < rs.length; j++) {
          const a = rs[i]!;
          const b = rs[j]!;
          if (gone.has(a) || gone.has(b) || a === b || a.rows !== b.rows) continue;
          if (dependsOn(a, b) || dependsOn(b, a)) continue;
          for (const m of b.members) {
            a.members.add(m);
            a.paths.set(m, b.paths.get(m)!);
            regionOf.set(m, a);
          }
          gone.add(b);
          changed = true;
        }
      }
    }
  }
}

/** Kahn's algorithm over steps (regions and lone GEMM / custom vertices), earliest node first. */
function schedule(fg: FusionGraph, regionOf: Map<number, Building>): PlanStep[] {
  type Unit = Building | number;
  const unitOf = (v: number): Unit => regionOf.get(v) ?? v;
  const units = new Set<Unit>();
  for (const v of fg.vertices) if (v.cls !== "source") units.add(unitOf(v.id));
  const membersOf = (u: Unit): number[] => (typeof u === "number" ? [u] : [...u.members]);
  const firstPos = (u: Unit): number => Math.min(...membersOf(u).map((m) => fg.position[m]!));
  const deps = new Map<Unit, Set<Unit>>();
  for (const u of units) {
    const d = new Set<Unit>();
    for (const m of membersOf(u)) {
      for (const i of fg.vertex(m).inputs) if (fg.vertex(i).cls !== "source" && unitOf(i) !== u) d.add(unitOf(i));
    }
    deps.set(u, d);
  }
  const done = new Set<Unit>();
  const steps: PlanStep[] = [];
  while (done.size < units.size) {
    let next: Unit | undefined;
    for (const u of units) {
      if (done.has(u) || [...deps.get(u)!].some((d) => !done.has(d))) continue;
      if (next === undefined || firstPos(u) < firstPos(next)) next = u;
    }
    if (next === undefined) throw new Error("fusion produced a cycle between steps");
    done.add(next);
    steps.push(toStep(fg, next, regionOf));
  }
  return steps;
}

function toStep(fg: FusionGraph, u: Building | number, regionOf: Map<number, Building>): PlanStep {
  if (typeof u === "number") {
    const v = fg.vertex(u);
    return v.cls === "gemm" ? { kind: "gemm", node: u } : v.cls === "opaque" ? { kind: "opaque", node: u } : { kind: "custom", node: u };
  }
  const members = [...u.members].sort((a, b) => fg.position[a]! - fg.position[b]!);
  const nodes = members.filter((m) => !fg.vertex(m).kvWrite);
  const outputs = nodes.filter((m) => fg.isGraphOutput(m) || fg.users[m]!.some((x) => regionOf.get(x) !== u));
  const kvWrites = members.filter((m) => fg.vertex(m).kvWrite).map((m) => fg.vertex(m).node.id);
  const rowPaths = new Map<ValueId, readonly ValueId[]>(nodes.map((m) => [m, u.paths.get(m)!]));
  return { kind: "fused", region: { rows: u.rows, nodes, outputs, kvWrites, rowPaths } };
}
