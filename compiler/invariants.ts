/**
 * Invariants every graph keeps between passes. Tests run them after each pass of the pipeline;
 * `checkGraph` returns the violations (empty when the graph is well formed) so a test failure
 * lists them all.
 *
 *   - node i has id i, and reads only earlier nodes (topological order)
 *   - every kind's operands have the shapes and dtypes its entry in the op catalogue (ops.ts)
 *     requires
 *   - each attention node names a KV layer of `kvLayers`, and each KV layer has one attention
 *   - each stateful custom op names a layer of `stateLayers`, and each state layer has one op
 *   - the logits are an f32 [S, vocab] value
 */
import { formatShape, type Graph, type Node } from "./ir.ts";
import { checkOp, nodeInputs, opClass, stateLayerKeys, stateOf, type OpStateKind } from "./ops.ts";
import type { FusionPlan } from "./passes/fuse.ts";
import type { Program } from "./program.ts";

export function checkGraph(graph: Graph): string[] {
  const errors: string[] = [];
  const at = (n: Node, msg: string): void => {
    errors.push(`node ${n.id} (${n.kind}${n.scope ? ` in ${n.scope}` : ""}): ${msg}`);
  };
  graph.nodes.forEach((n, i) => {
    if (n.id !== i) at(n, `sits at index ${i}`);
    for (const input of nodeInputs(n)) {
      if (!(input >= 0 && input < i)) at(n, `reads value ${input}, which is not an earlier node`);
    }
  });
  if (errors.length > 0) return errors; // shape checks below index nodes by id
  const node = (id: number): Node => graph.nodes[id]!;
  const kvKeys = stateLayerKeys(graph, "kv_cache");
  for (const n of graph.nodes) {
    const state = stateOf(n);
    if (state?.kind === "kv_cache" && !kvKeys.includes(state.key)) at(n, `KV layer '${state.key}' is not declared`);
    checkOp(n, { node, fail: (msg) => at(n, msg) });
    if (n.dtype === "f32" && opClass(n) !== "source" && !n.shape.every((d) => d === "T" || d === "S" || d > 0)) {
      at(n, `bad shape ${formatShape(n.shape)}`);
    }
  }
  // each layer of kvLayers / stateLayers is named by exactly one op whose catalogue entry holds that state
  const users = (kind: OpStateKind, key: string): number =>
    graph.nodes.filter((n) => {
      const s = stateOf(n);
      return s?.kind === kind && s.key === key;
    }).length;
  for (const key of stateLayerKeys(graph, "kv_cache")) {
    const count = users("kv_cache", key);
    if (count !== 1) errors.push(`KV layer '${key}' is used by ${count} attention nodes`);
  }
  const stateKeys = stateLayerKeys(graph, "state_slots");
  for (const n of graph.nodes) {
    const s = stateOf(n);
    if (s?.kind === "state_slots" && !stateKeys.includes(s.key)) at(n, `state layer '${s.key}' is not declared`);
  }
  for (const key of stateKeys) {
    const count = users("state_slots", key);
    if (count !== 1) errors.push(`state layer '${key}' is used by ${count} nodes`);
  }
  const logits = graph.nodes[graph.outputs.logits];
  if (!logits || logits.dtype !== "f32" || logits.shape[0] !== "S" || logits.shape.length !== 2) {
    errors.push(`logits ${graph.outputs.logits} are not an f32 [S, vocab] value`);
  }
  return errors;
}

export function assertGraph(graph: Graph, after: string): void {
  const errors = checkGraph(graph);
  if (errors.length > 0) throw new Error(`graph invariants broken after ${after}:\n  ${errors.join("\n  ")}`);
}

/**
 * Invariants of a fusion plan: every node that is not an input or a weight is computed by exactly
 * one step; each attention's KV write is in exactly one kernel that runs before it; a step reads
 * only sources and values earlier steps produced; a value another step reads is a region output.
 */
export function checkPlan(plan: FusionPlan): string[] {
  const errors: string[] = [];
  const g = plan.graph;
  const producedBy = new Map<number, number>();
  const kvWrittenBy = new Map<number, number>();
  plan.steps.forEach((s, i) => {
    const nodes = s.kind === "fused" ? s.region.nodes : [s.node];
    for (const id of nodes) {
      if (producedBy.has(id)) errors.push(`node ${id} is computed by steps ${producedBy.get(id)} and ${i}`);
      producedBy.set(id, i);
    }
    if (s.kind === "fused") for (const a of s.region.kvWrites) kvWrittenBy.set(a, i);
  });
  for (const n of g.nodes) {
    if (n.kind !== "input" && n.kind !== "param" && !producedBy.has(n.id)) errors.push(`node ${n.id} (${n.kind}) is computed by no step`);
    if (n.kind === "attention" && !((kvWrittenBy.get(n.id) ?? Infinity) < (producedBy.get(n.id) ?? -1))) {
      errors.push(`attention ${n.id} has no KV write before it`);
    }
  }
  plan.steps.forEach((s, i) => {
    const nodes = s.kind === "fused" ? s.region.nodes : [s.node];
    const own = new Set(nodes);
    for (const id of nodes) {
      const n = g.nodes[id]!;
      const reads = n.kind === "attention" ? [n.q] : nodeInputs(n);
      for (const input of reads) {
        if (own.has(input)) continue;
        const from = producedBy.get(input);
        if (from === undefined) continue; // an input or a weight
        if (!(from < i)) errors.push(`step ${i} reads node ${input} of step ${from}, which runs later`);
        const producer = plan.steps[from]!;
        if (producer.kind === "fused" && !producer.region.outputs.includes(input)) {
          errors.push(`step ${i} reads node ${input}, which step ${from} does not store`);
        }
      }
    }
  });
  return errors;
}

/** Invariants of a program: steps bind existing buffers of the types their kernels declare. */
export function checkProgram(p: Program): string[] {
  const errors: string[] = [];
  const kernels = new Map(p.kernels.map((k) => [k.name, k]));
  p.steps.forEach((s, i) => {
    if (s.kind !== "kernel") return;
    const k = kernels.get(s.kernel);
    if (!k) return void errors.push(`step ${i} launches unknown kernel ${s.kernel}`);
    if (k.params.length !== s.args.length) errors.push(`step ${i}: ${s.kernel} takes ${k.params.length} buffers, gets ${s.args.length}`);
    k.params.forEach((param, j) => {
      const b = p.buffers[s.args[j] ?? -1];
      if (!b) errors.push(`step ${i}: argument ${j} names no buffer`);
      else if (b.elem !== param.elem) errors.push(`step ${i}: ${s.kernel}.${param.name} is ${param.elem}, buffer ${b.id} is ${b.elem}`);
    });
  });
  if (p.buffers[p.logits]?.elem !== "f32") errors.push("the logits buffer is not f32");
  const covered = p.pieces.reduce((n, piece) => n + piece.end - piece.start, 0);
  if (covered !== p.steps.length) errors.push(`pieces cover ${covered} of ${p.steps.length} steps`);
  return errors;
}
