/**
 * Invariants every graph keeps between passes. Tests run them after each pass of the pipeline;
 * `checkGraph` returns the violations (empty when the graph is well formed) so a test failure
 * lists them all.
 *
 *   - node i has id i, and reads only earlier nodes (topological order)
 *   - every kind's operands have the shapes and dtypes its definition requires
 *   - each attention node names a KV layer of `kvLayers`, and each KV layer has one attention
 *   - each stateful custom op names a layer of `stateLayers`, and each state layer has one op
 *   - the logits are an f32 [S, vocab] value
 */
import { assertNever, formatShape, nodeInputs, stateKeyOf, type Dim, type Graph, type Node } from "./ir.ts";
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
  const cols = (n: Node): Dim | undefined => n.shape[n.shape.length - 1];
  const same = (a: readonly Dim[], b: readonly Dim[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
  for (const n of graph.nodes) {
    switch (n.kind) {
      case "input":
      case "param":
        break;
      case "embedding":
        if (node(n.ids).dtype !== "i32") at(n, "ids must be i32");
        if (cols(n) !== cols(node(n.table))) at(n, "row width differs from the table's");
        break;
      case "linear":
        if (cols(node(n.x)) !== cols(node(n.weight))) at(n, "x and weight disagree on K");
        if (cols(n) !== node(n.weight).shape[0]) at(n, "output width differs from weight rows");
        break;
      case "rms_norm":
        if (typeof cols(n) !== "number" || (cols(n) as number) % n.group !== 0) at(n, `group ${n.group} does not divide the row`);
        if (node(n.weight).shape[0] !== n.group) at(n, "weight length differs from the group");
        if (!same(n.shape, node(n.x).shape)) at(n, "shape differs from its input's");
        break;
      case "layer_norm":
        if (!same(n.shape, node(n.x).shape)) at(n, "shape differs from its input's");
        break;
      case "binary": {
        const a = node(n.a).shape;
        const b = node(n.b).shape;
        if (!same(a, n.shape)) at(n, "shape differs from operand a");
        if (!same(a, b) && !(b.length === 1 && b[0] === cols(n))) at(n, `operands ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
        break;
      }
      case "unary":
      case "scale":
      case "rope":
        if (!same(n.shape, node(n.x).shape)) at(n, "shape differs from its input's");
        break;
      case "slice":
        if (n.start < 0 || n.start + n.size > (cols(node(n.x)) as number) || cols(n) !== n.size) at(n, "slice outside its input");
        break;
      case "gather_rows":
        if (node(n.indices).dtype !== "i32") at(n, "indices must be i32");
        if (n.shape[0] !== node(n.indices).shape[0]) at(n, "rows differ from the index count");
        break;
      case "attention":
        if (!graph.kvLayers.some((l) => l.cacheKey === n.cacheKey)) at(n, `KV layer '${n.cacheKey}' is not declared`);
        if (!same(node(n.q).shape, n.shape)) at(n, "q shape differs from the output");
        break;
      case "moe": {
        const [E, H, I] = [n.numExperts, cols(n), n.intermediateSize];
        if (!same(node(n.x).shape, n.shape)) at(n, "x shape differs from the output");
        if (!same(node(n.router).shape, [E, H!])) at(n, `router is not [${E}, ${String(H)}]`);
        if (!same(node(n.w13).shape, [E, 2 * I, H!])) at(n, `w13 is not [${E}, ${2 * I}, ${String(H)}]`);
        if (!same(node(n.w2).shape, [E, H!, I])) at(n, `w2 is not [${E}, ${String(H)}, ${I}]`);
        if (!(n.topK >= 1 && n.topK <= E)) at(n, `top-k ${n.topK} is outside 1..${E}`);
        break;
      }
      case "short_conv":
        if (!same(node(n.x).shape, n.shape)) at(n, "x shape differs from the output");
        if (!same(node(n.weight).shape, [cols(n)!, 1, n.kernelSize])) at(n, `weight is not [${String(cols(n))}, 1, ${n.kernelSize}]`);
        if (n.bias !== undefined && !same(node(n.bias).shape, [cols(n)!])) at(n, "bias is not [D]");
        if (n.kernelSize < 2) at(n, `kernel size ${n.kernelSize} leaves no conv state`);
        break;
      case "linear_attention":
        if (cols(node(n.qkv)) !== 3 * n.numHeads * n.headDim) at(n, "qkv is not [T, heads · 3 · headDim]");
        if (cols(n) !== n.numHeads * n.headDim || n.shape[0] !== node(n.qkv).shape[0]) at(n, "output is not [T, heads · headDim]");
        if (n.slopes.length !== n.numHeads) at(n, `${n.slopes.length} slopes for ${n.numHeads} heads`);
        break;
      case "selective_scan": {
        const I = cols(n);
        const N = n.stateSize;
        const rowsOk = (v: number, w: Dim | undefined): boolean => same(node(v).shape, [n.shape[0]!, w!]);
        if (!rowsOk(n.u, I) || !rowsOk(n.delta, I) || !rowsOk(n.z, I)) at(n, "u, delta and z must have the output's shape [T, I]");
        if (!rowsOk(n.b, N) || !rowsOk(n.c, N)) at(n, `b and c must be [T, ${N}]`);
        if (!same(node(n.aLog).shape, [I!, N])) at(n, `A_log is not [${String(I)}, ${N}]`);
        if (!same(node(n.d).shape, [I!])) at(n, `D is not [${String(I)}]`);
        break;
      }
      case "ssd_scan": {
        const [H, P, G, N] = [n.numHeads, n.headDim, n.numGroups, n.stateSize];
        const rowsOk = (v: number, w: number): boolean => same(node(v).shape, [n.shape[0]!, w]);
        if (cols(n) !== H * P || !rowsOk(n.x, H * P)) at(n, `x and the output must be [T, ${H * P}]`);
        if (!rowsOk(n.dt, H)) at(n, `dt is not [T, ${H}]`);
        if (!(G >= 1 && H % G === 0)) at(n, `${G} groups do not divide ${H} heads`);
        if (!rowsOk(n.b, G * N) || !rowsOk(n.c, G * N)) at(n, `b and c must be [T, ${G * N}]`);
        for (const [v, what] of [[n.dtBias, "dt_bias"], [n.aLog, "A_log"], [n.d, "D"]] as const) {
          if (!same(node(v).shape, [H])) at(n, `${what} is not [${H}]`);
        }
        if (n.dtMax !== undefined && !(n.dtMax >= n.dtMin)) at(n, `dt limits [${n.dtMin}, ${n.dtMax}] are empty`);
        break;
      }
      default:
        assertNever(n, "node kind");
    }
    if (n.dtype === "f32" && n.kind !== "param" && n.kind !== "input" && !n.shape.every((d) => d === "T" || d === "S" || d > 0)) {
      at(n, `bad shape ${formatShape(n.shape)}`);
    }
  }
  for (const l of graph.kvLayers) {
    const users = graph.nodes.filter((n) => n.kind === "attention" && n.cacheKey === l.cacheKey).length;
    if (users !== 1) errors.push(`KV layer '${l.cacheKey}' is used by ${users} attention nodes`);
  }
  for (const n of graph.nodes) {
    const key = stateKeyOf(n);
    if (key !== undefined && !graph.stateLayers.some((l) => l.stateKey === key)) at(n, `state layer '${key}' is not declared`);
  }
  for (const l of graph.stateLayers) {
    const users = graph.nodes.filter((n) => stateKeyOf(n) === l.stateKey).length;
    if (users !== 1) errors.push(`state layer '${l.stateKey}' is used by ${users} nodes`);
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
