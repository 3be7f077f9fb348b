/**
 * The op-by-op rules for nodes that read activations: elementwise arithmetic, MatMul/Gemm with a
 * constant weight (a kiln `linear`, so GEMMs reach the same kernels as a DSL model's), Gather of
 * an embedding table, and the view ops (view_ops.ts: Reshape, Transpose, (Un)squeeze, Slice,
 * Split) on axes the importer can follow. Everything else is left to the patterns
 * (norm_patterns.ts, rotary_pattern.ts, attention_pattern.ts) or refused.
 */
import type { Tensor } from "../../compiler/trace.ts";
import type { UnaryOp } from "../../compiler/ir.ts";
import { attrFloat, attrInt, attrString, nodeError, normAxis, type ImportContext } from "./context.ts";
import { constOperand } from "./const_operand.ts";
import { isFloatDtype, numelOf, type ConstTensor } from "./const_tensor.ts";
import { dtypeOf, type OnnxNode } from "./proto.ts";
import { actShape, sameLayout, withTensor, type Act } from "./value.ts";
import { reshapeView, sliceView, splitView, squeezeView, transposeView, unsqueezeView } from "./view_ops.ts";

const UNARY: Readonly<Record<string, UnaryOp>> = { Neg: "neg", Sigmoid: "sigmoid", Tanh: "tanh", Relu: "relu" };

type Operand = { readonly kind: "act"; readonly a: Act } | { readonly kind: "const"; readonly c: ConstTensor };

function operand(ctx: ImportContext, node: OnnxNode, i: number): Operand {
  const name = node.inputs[i] ?? "";
  const c = ctx.constOf(name);
  return c ? { kind: "const", c } : { kind: "act", a: ctx.act(node, name) };
}

function requireF32(node: OnnxNode, a: Act): Act {
  if (a.t.dtype !== "f32") throw nodeError(node, "arithmetic on an integer activation (token ids) is not supported");
  return a;
}

/** a + c, a · c with c a constant operand. */
function withConst(ctx: ImportContext, node: OnnxNode, a: Act, c: ConstTensor, op: "add" | "mul"): Act {
  requireF32(node, a);
  const k = constOperand(node, a, c);
  const F = numelOf(a.physical);
  if (k.kind === "scalar") {
    if (op === "mul") return k.value === 1 ? a : withTensor(a, a.t.scale(k.value));
    if (k.value === 0) return a;
    return withTensor(a, a.t.add(ctx.param(`${node.outputs[0]}.const`, [F], new Float32Array(F).fill(k.value))));
  }
  return withTensor(a, op === "add" ? a.t.add(ctx.param(`${node.outputs[0]}.const`, [F], k.data)) : a.t.mul(ctx.param(`${node.outputs[0]}.const`, [F], k.data)));
}

function negConst(c: ConstTensor, f: (v: number) => number): ConstTensor {
  return { ...c, data: Float32Array.from(c.data, f) };
}

function arithmetic(ctx: ImportContext, node: OnnxNode): Act {
  const x = operand(ctx, node, 0);
  const y = operand(ctx, node, 1);
  const op = node.opType;
  if (x.kind === "act" && y.kind === "act") {
    const [a, b] = [requireF32(node, x.a), requireF32(node, y.a)];
    if (!sameLayout(a, b)) {
      throw nodeError(node, `activations of shapes [${actShape(a).join(", ")}] and [${actShape(b).join(", ")}] do not line up elementwise`);
    }
    switch (op) {
      case "Add": return withTensor(a, a.t.add(b.t));
      case "Mul": return withTensor(a, a.t.mul(b.t));
      case "Sub": return withTensor(a, a.t.add(b.t.unary("neg")));
      default: throw nodeError(node, `${op} of two activations is not supported`);
    }
  }
  if (x.kind === "act" && y.kind === "const") {
    switch (op) {
      case "Add": return withConst(ctx, node, x.a, y.c, "add");
      case "Mul": return withConst(ctx, node, x.a, y.c, "mul");
      case "Sub": return withConst(ctx, node, x.a, negConst(y.c, (v) => -v), "add");
      case "Div": return withConst(ctx, node, x.a, negConst(y.c, (v) => Math.fround(1 / v)), "mul");
      case "Pow": {
        const k = constOperand(node, x.a, y.c);
        if (k.kind === "scalar" && k.value === 1) return x.a;
        if (k.kind === "scalar" && k.value === 2) return withTensor(x.a, requireF32(node, x.a).t.mul(x.a.t));
        throw nodeError(node, "Pow with an exponent other than 1 or 2 (outside an RMSNorm/LayerNorm pattern) is not supported");
      }
      default: throw nodeError(node, `${op} is not supported`);
    }
  }
  if (x.kind === "const" && y.kind === "act") {
    switch (op) {
      case "Add": return withConst(ctx, node, y.a, x.c, "add");
      case "Mul": return withConst(ctx, node, y.a, x.c, "mul");
      case "Sub": return withConst(ctx, node, withTensor(y.a, requireF32(node, y.a).t.unary("neg")), x.c, "add");
      default: throw nodeError(node, `${op} with a constant first operand and an activation second is not supported`);
    }
  }
  throw new Error("unreachable: a node of constants is folded");
}

/** x [.., K] · W [K, N] (+ bias) as a kiln linear: W stored transposed, [N, K]. */
function linear(ctx: ImportContext, node: OnnxNode, a: Act, w: ConstTensor, wName: string, transposed: boolean, bias: Float32Array | undefined): Act {
  requireF32(node, a);
  const last = a.dims[a.dims.length - 1];
  if (w.shape.length !== 2) throw nodeError(node, `the weight has shape [${w.shape.join(", ")}]; only 2-D weights map to a linear`);
  if (a.physical.length !== 1 || last?.kind !== "feat") {
    throw nodeError(node, `a matmul over the last axis of [${actShape(a).join(", ")}] is batched over features, which kiln's linear does not do`);
  }
  const [K, N] = transposed ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
  if (a.physical[0] !== K) throw nodeError(node, `x has ${a.physical[0]} features, the weight ${K} rows`, "ONNX_INVALID");
  // [K, N] → [N, K], made only when the parameter is new to this model (see ImportContext.param)
  const data = (): Float32Array => {
    if (transposed) return Float32Array.from(w.data);
    const out = new Float32Array(N * K);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) out[n * K + k] = w.data[k * N + n]!;
    return out;
  };
  const weight = ctx.param(transposed ? wName : `${wName}.T`, [N, K], data);
  const b = bias ? ctx.param(`${wName}.bias`, [N], bias) : undefined;
  const t = a.t.graph.add({ kind: "linear", x: a.t.id, weight: weight.id, bias: b?.id, shape: [a.t.shape[0]!, N], dtype: "f32" });
  return { kind: "act", t, dims: a.dims, physical: [N] };
}

function gemm(ctx: ImportContext, node: OnnxNode): Act {
  if (attrInt(node, "transA", 0) !== 0) throw nodeError(node, "Gemm with transA is not supported");
  const a = ctx.act(node, node.inputs[0] ?? "");
  const w = ctx.constOf(node.inputs[1] ?? "");
  if (!w) throw nodeError(node, "Gemm's B is not a constant weight");
  const alpha = attrFloat(node, "alpha", 1);
  const beta = attrFloat(node, "beta", 1);
  const transB = attrInt(node, "transB", 0) === 1;
  const scaled = alpha === 1 ? w : { ...w, data: Float32Array.from(w.data, (v) => v * alpha) };
  const cName = node.inputs[2];
  let bias: Float32Array | undefined;
  if (cName !== undefined && cName !== "") {
    const c = ctx.constOf(cName);
    const N = transB ? w.shape[0]! : w.shape[1]!;
    if (!c || numelOf(c.shape) !== N) throw nodeError(node, "Gemm's C is not a constant bias of N values");
    bias = Float32Array.from(c.data, (v) => v * beta);
  }
  return linear(ctx, node, a, scaled, node.inputs[1] ?? "", transB, bias);
}

function embedding(ctx: ImportContext, node: OnnxNode): Act {
  const table = ctx.constOf(node.inputs[0] ?? "");
  if (!table) throw nodeError(node, "Gather from an activation is not supported (only a constant embedding table)");
  const ids = ctx.act(node, node.inputs[1] ?? "");
  if (attrInt(node, "axis", 0) !== 0 || table.shape.length !== 2) throw nodeError(node, "only Gather of rows (axis 0) of a 2-D table maps to an embedding");
  if (ids.t.dtype !== "i32" || ids.physical.length !== 0) throw nodeError(node, "the indices of an embedding must be token ids");
  const [V, H] = [table.shape[0]!, table.shape[1]!];
  const w = ctx.param(node.inputs[0] ?? "", [V, H], () => Float32Array.from(table.data));
  const t = ids.t.graph.add({ kind: "embedding", table: w.id, ids: ids.t.id, shape: [ids.t.shape[0]!, H], dtype: "f32" });
  return { kind: "act", t, dims: [...ids.dims, { kind: "feat", phys: 0 }], physical: [H] };
}

function layerNormalization(ctx: ImportContext, node: OnnxNode, rms: boolean): Act {
  const a = requireF32(node, ctx.act(node, node.inputs[0] ?? ""));
  const axis = normAxis(node, attrInt(node, "axis", -1), a.dims.length);
  if (axis !== a.dims.length - 1 || a.physical.length !== 1 || a.dims[axis]!.kind !== "feat") {
    throw nodeError(node, "only normalization over the last axis of [T, F] is supported");
  }
  const F = a.physical[0]!;
  const vec = (i: number, what: string): Tensor | undefined => {
    const n = node.inputs[i];
    if (n === undefined || n === "") return undefined;
    const c = ctx.constOf(n);
    if (!c || numelOf(c.shape) !== F) throw nodeError(node, `its ${what} is not a constant of ${F} values`);
    return ctx.param(n, [F], Float32Array.from(c.data));
  };
  const eps = attrFloat(node, "epsilon", 1e-5);
  const weight = vec(1, "scale") ?? ctx.param(`${node.outputs[0]}.ones`, [F], new Float32Array(F).fill(1));
  const g = a.t.graph;
  const t = rms
    ? g.add({ kind: "rms_norm", x: a.t.id, weight: weight.id, eps, group: F, weightOffset: 0, shape: a.t.shape, dtype: "f32" })
    : g.add({ kind: "layer_norm", x: a.t.id, weight: weight.id, bias: vec(2, "bias")?.id, eps, shape: a.t.shape, dtype: "f32" });
  return withTensor(a, t);
}

/** The node's outputs on activations; undefined when its op has no rule here. */
export function applyActRule(ctx: ImportContext, node: OnnxNode): Act[] | undefined {
  const op = node.opType;
  const unary = UNARY[op];
  if (unary) {
    const a = requireF32(node, ctx.act(node, node.inputs[0] ?? ""));
    return [withTensor(a, a.t.unary(unary))];
  }
  switch (op) {
    case "Add": case "Sub": case "Mul": case "Div": case "Pow": return [arithmetic(ctx, node)];
    case "Identity": return [ctx.act(node, node.inputs[0] ?? "")];
    case "Cast": {
      const a = ctx.act(node, node.inputs[0] ?? "");
      const to = dtypeOf(attrInt(node, "to", 1), "Cast target");
      if (isFloatDtype(to) !== (a.t.dtype === "f32")) throw nodeError(node, `a cast of a ${a.t.dtype} activation to ${to} is not supported`);
      return [a];
    }
    case "Gelu": {
      const a = requireF32(node, ctx.act(node, node.inputs[0] ?? ""));
      return [withTensor(a, a.t.unary(attrString(node, "approximate", "none") === "tanh" ? "gelu_tanh" : "gelu"))];
    }
    case "MatMul": {
      const w = ctx.constOf(node.inputs[1] ?? "");
      if (!w) throw nodeError(node, "a matmul of two activations outside an attention pattern is not supported");
      return [linear(ctx, node, ctx.act(node, node.inputs[0] ?? ""), w, node.inputs[1] ?? "", false, undefined)];
    }
    case "Gemm": return [gemm(ctx, node)];
    case "Gather": return [embedding(ctx, node)];
    case "Reshape": return [reshapeView(ctx, node)];
    case "Transpose": return [transposeView(ctx, node)];
    case "Unsqueeze": return [unsqueezeView(ctx, node)];
    case "Squeeze": return [squeezeView(ctx, node)];
    case "Slice": return [sliceView(ctx, node)];
    case "Split": return splitView(ctx, node);
    case "Expand": {
      const a = ctx.act(node, node.inputs[0] ?? "");
      const shape = ctx.constOf(node.inputs[1] ?? "");
      const grows = shape && Array.from(shape.data).some((s, i, all) => s !== 1 && a.dims[a.dims.length - all.length + i]?.kind === "unit");
      if (!shape || grows || shape.data.length > a.dims.length) throw nodeError(node, "an expand that replicates an activation is not supported outside attention");
      return [a];
    }
    case "LayerNormalization": return [layerNormalization(ctx, node, false)];
    case "SimplifiedLayerNormalization": case "RMSNormalization": return [layerNormalization(ctx, node, true)];
    default: return undefined;
  }
}
