/**
 * Lowering a fusion plan to a program: each fused region becomes a kernel in loop/index form
 * (identical kernels, e.g. the same fused op in every decoder layer, are emitted once), GEMMs
 * and custom ops become library-call steps, and every value crossing a step boundary gets a
 * buffer with its storage type.
 */
import { assertNever, isCustomOp, type Dim, type Graph, type Node, type NodeOf, type ValueId } from "./ir.ts";
import type { LoweredKernel } from "./kernel_ir.ts";
import { lowerRegion, type ParamBinding } from "./lower_region.ts";
import type { FusionPlan } from "./passes/fuse.ts";
import type { Piece } from "./passes/partition.ts";
import type { BufferRole, BufferSpec, InputBound, Program, ProgramInput, ProgramOptions, Step } from "./program.ts";
import type { Dtype } from "./dtype.ts";

/** Parameters read as weight matrices: GEMM weights, embedding tables and the experts' stacked matrices (held in the program's dtype on CUDA). */
export function weightMatrices(graph: Graph): Set<string> {
  const names = new Set<string>();
  for (const n of graph.nodes) {
    // the experts' stacked matrices too (the router stays f32: it picks the experts, and a 16-bit
    // router would flip near ties)
    const ids = n.kind === "linear" ? [n.weight] : n.kind === "embedding" ? [n.table] : n.kind === "moe" ? [n.w13, n.w2] : [];
    for (const id of ids) {
      const p = graph.nodes[id];
      if (p?.kind === "param") names.add(p.name);
    }
  }
  return names;
}

export function lowerProgram(plan: FusionPlan, pieces: readonly Piece[], options: ProgramOptions): Program {
  const graph = plan.graph;
  const cpu = options.target.kind === "cpu";
  const node = (id: ValueId): Node => graph.nodes[id]!;
  const matrices = weightMatrices(graph);
  const valueElem = (id: ValueId): Dtype => {
    const n = node(id);
    if (n.dtype === "i32") return "i32";
    if (n.kind === "param") return cpu ? n.storage : matrices.has(n.name) ? options.dtype : "f32";
    return "f32";
  };
  const kvElem: Dtype = cpu ? "f32" : (options.kvDtype ?? options.dtype);

  const buffers: BufferSpec[] = [];
  const byKey = new Map<string, number>();
  const buffer = (key: string, make: () => Omit<BufferSpec, "id">): number => {
    const known = byKey.get(key);
    if (known !== undefined) return known;
    const id = buffers.length;
    buffers.push({ id, ...make() });
    byKey.set(key, id);
    return id;
  };
  const valueBuffer = (id: ValueId): number =>
    buffer(`value:${id}`, () => {
      const n = node(id);
      const role: BufferRole =
        n.kind === "input" ? { kind: "input", name: n.name } : n.kind === "param" ? { kind: "param", name: n.name } : { kind: "activation", node: id };
      return { role, elem: valueElem(id), shape: n.shape };
    });
  const input = (name: ProgramInput): number => buffer(`input:${name}`, () => ({ role: { kind: "input", name }, elem: "i32", shape: ["T"] }));
  const cache = (attention: ValueId, which: "k" | "v"): number =>
    buffer(`cache:${attention}:${which}`, () => {
      const a = node(attention) as NodeOf<"attention">;
      return { role: { kind: "kv_cache", cacheKey: a.cacheKey, which }, elem: kvElem, shape: ["slots", a.numKvHeads * a.headDim] };
    });
  const bind = (b: ParamBinding): number => {
    switch (b.kind) {
      case "value":
      case "output":
        return valueBuffer(b.id);
      case "slot_mapping":
        return input("slot_mapping");
      case "kv_cache":
        return cache(b.attention, b.which);
      default:
        return assertNever(b, "parameter binding");
    }
  };

  const kernels: LoweredKernel[] = [];
  const kernelByBody = new Map<string, string>();
  const addKernel = (k: LoweredKernel): string => {
    const body = JSON.stringify({ ...k, name: "" });
    const known = kernelByBody.get(body);
    if (known !== undefined) return known;
    let name = k.name;
    for (let i = 2; kernels.some((x) => x.name === name); i++) name = `${k.name}_${i}`;
    kernels.push({ ...k, name });
    kernelByBody.set(body, name);
    return name;
  };

  const suffix = cpu ? "f32" : options.dtype;
  const steps: Step[] = plan.steps.map((s): Step => {
    switch (s.kind) {
      case "fused": {
        const { kernel, bindings } = lowerRegion(graph, s.region, { valueElem, kvCache: kvElem, suffix });
        return { kind: "kernel", kernel: addKernel(kernel), rows: s.region.rows, args: bindings.map(bind), nodes: s.region.nodes };
      }
      case "gemm": {
        const n = node(s.node) as NodeOf<"linear">;
        const w = node(n.weight);
        return {
          kind: "gemm",
          node: s.node,
          x: valueBuffer(n.x),
          w: valueBuffer(n.weight),
          bias: n.bias === undefined ? undefined : valueBuffer(n.bias),
          out: valueBuffer(s.node),
          rows: n.shape[0]!,
          n: w.shape[0] as number,
          k: w.shape[1] as number,
        };
      }
      case "custom": {
        const c = node(s.node);
        if (!isCustomOp(c)) throw new Error(`lowering: plan step ${c.id} (${c.kind}) is not a custom op`);
        switch (c.kind) {
          case "attention":
            return {
              kind: "attention",
              node: s.node,
              q: valueBuffer(c.q),
              out: valueBuffer(s.node),
              kCache: cache(s.node, "k"),
              vCache: cache(s.node, "v"),
              cacheKey: c.cacheKey,
              numHeads: c.numHeads,
              numKvHeads: c.numKvHeads,
              headDim: c.headDim,
              scale: c.scale,
              slidingWindow: c.slidingWindow,
              softcap: c.softcap,
            };
          case "short_conv":
            return {
              kind: "short_conv",
              node: s.node,
              x: valueBuffer(c.x),
              weight: valueBuffer(c.weight),
              bias: c.bias === undefined ? undefined : valueBuffer(c.bias),
              out: valueBuffer(s.node),
              stateKey: c.stateKey,
              dim: c.shape[1] as number,
              kernelSize: c.kernelSize,
            };
          case "linear_attention":
            return {
              kind: "linear_attention",
              node: s.node,
              qkv: valueBuffer(c.qkv),
              out: valueBuffer(s.node),
              stateKey: c.stateKey,
              numHeads: c.numHeads,
              headDim: c.headDim,
              slopes: c.slopes,
            };
          case "selective_scan":
            return {
              kind: "selective_scan",
              node: s.node,
              u: valueBuffer(c.u),
              delta: valueBuffer(c.delta),
              aLog: valueBuffer(c.aLog),
              b: valueBuffer(c.b),
              c: valueBuffer(c.c),
              d: valueBuffer(c.d),
              z: valueBuffer(c.z),
              out: valueBuffer(s.node),
              stateKey: c.stateKey,
              dim: c.shape[1] as number,
              stateSize: c.stateSize,
            };
          case "ssd_scan":
            return {
              kind: "ssd_scan",
              node: s.node,
              x: valueBuffer(c.x),
              dt: valueBuffer(c.dt),
              dtBias: valueBuffer(c.dtBias),
              aLog: valueBuffer(c.aLog),
              b: valueBuffer(c.b),
              c: valueBuffer(c.c),
              d: valueBuffer(c.d),
              out: valueBuffer(s.node),
              stateKey: c.stateKey,
              numHeads: c.numHeads,
              headDim: c.headDim,
              numGroups: c.numGroups,
              stateSize: c.stateSize,
              dtMin: c.dtMin,
              dtMax: c.dtMax,
            };
          default:
            return assertNever(c, "custom op");
        }
      }
      case "opaque": {
        const m = node(s.node) as NodeOf<"moe">;
        return {
          kind: "moe",
          node: s.node,
          x: valueBuffer(m.x),
          router: valueBuffer(m.router),
          w13: valueBuffer(m.w13),
          w2: valueBuffer(m.w2),
          out: valueBuffer(s.node),
          rows: m.shape[0]!,
          hidden: m.shape[1] as number,
          numExperts: m.numExperts,
          topK: m.topK,
          intermediateSize: m.intermediateSize,
          routing: m.routing,
          activation: m.activation,
        };
      }
      default:
        return assertNever(s, "plan step");
    }
  });
  return {
    options,
    buffers,
    kernels,
    steps,
    pieces,
    logits: valueBuffer(graph.outputs.logits),
    kvLayers: graph.kvLayers,
    stateLayers: graph.stateLayers,
    inputBounds: inputBounds(graph),
  };
}

/**
 * Token ids index the embedding table, positions a learned position table (GPT-2, OPT); logits
 * indices index the rows of the step.
 */
function inputBounds(graph: Graph): InputBound[] {
  const bounds: InputBound[] = [];
  const add = (indices: ValueId, below: Dim, what: string): void => {
    const input = graph.nodes[indices];
    if (input?.kind !== "input") return;
    if (!bounds.some((b) => b.input === input.name && b.below === below)) bounds.push({ input: input.name, below, what });
  };
  for (const n of graph.nodes) {
    if (n.kind === "embedding") {
      const ids = graph.nodes[n.ids];
      const what = ids?.kind === "input" && ids.name === "positions" ? "the learned position table" : "the vocabulary";
      add(n.ids, graph.nodes[n.table]!.shape[0]!, what);
    }
    if (n.kind === "gather_rows") add(n.indices, graph.nodes[n.x]!.shape[0]!, "the step's tokens");
  }
  return bounds;
}
