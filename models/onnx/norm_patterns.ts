/**
 * Patterns of ops that the IR has as one node, recognized where the export spelled them out:
 *
 *   RMSNorm:  w · (x · 1/sqrt(mean(x², -1) + eps))   (or x / sqrt(...)) → rms_norm(x, w)
 *   LayerNorm: the same of d = x − mean(x, -1)                         → layer_norm(x, w)
 *   GELU:     0.5 · x · (1 + erf(x / √2))                            → unary gelu
 *   SiLU:     x · sigmoid(x)                                         → unary silu
 *
 * A matcher returns undefined when the node is not the pattern's root; the nodes inside a
 * matched pattern (ReduceMean, Sqrt, Erf, ...) are never mapped on their own.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { axesOf, nodeError, type ImportContext } from "./context.ts";
import { constOperand } from "./const_operand.ts";
import { numelOf } from "./const_tensor.ts";
import { bothOrders, near, producedBy, scalarOf, throughCasts } from "./match.ts";
import type { OnnxNode } from "./proto.ts";
import { withTensor, type Act } from "./value.ts";

/** mean over the last axis of x², keeping it: the x it squares. */
function meanOfSquare(ctx: ImportContext, name: string): { x: string; axis: number } | undefined {
  const mean = producedBy(ctx, name, "ReduceMean");
  if (!mean) return undefined;
  const axes = axesOf(ctx, mean, 1);
  const keep = mean.attrs.get("keepdims");
  if (axes?.length !== 1 || (keep?.type === "int" && keep.value === 0)) return undefined;
  const sq = producedBy(ctx, mean.inputs[0], "Pow", "Mul");
  const x = sq?.opType === "Pow" ? (scalarOf(ctx, sq.inputs[1]) === 2 ? sq.inputs[0] : undefined) : sq?.inputs[0] === sq?.inputs[1] ? sq?.inputs[0] : undefined;
  return x === undefined ? undefined : { x, axis: axes[0]! };
}

/** sqrt(mean(x²) + eps): x and eps. */
interface Rms {
  readonly x: string;
  readonly eps: number;
  /** the axis the mean runs over (must be the last) */
  readonly axis: number;
}

function rootMeanSquare(ctx: ImportContext, name: string | undefined): Rms | undefined {
  const sqrt = producedBy(ctx, name, "Sqrt");
  const add = producedBy(ctx, sqrt?.inputs[0], "Add");
  if (!add) return undefined;
  for (const [m, e] of bothOrders(add)) {
    const ms = meanOfSquare(ctx, m);
    const eps = scalarOf(ctx, e);
    if (ms !== undefined && eps !== undefined) return { ...ms, eps };
  }
  return undefined;
}

/** x · 1/rms(x) or x / rms(x), rooted at `name`. */
function normalized(ctx: ImportContext, name: string): Rms | undefined {
  const n = producedBy(ctx, name, "Mul", "Div");
  if (!n) return undefined;
  if (n.opType === "Div") {
    const r = rootMeanSquare(ctx, n.inputs[1]);
    return r && throughCasts(ctx, r.x) === throughCasts(ctx, n.inputs[0] ?? "") ? r : undefined;
  }
  for (const [x, inv] of bothOrders(n)) {
    const recip = producedBy(ctx, inv, "Reciprocal");
    const r = rootMeanSquare(ctx, recip?.inputs[0]);
    if (r && throughCasts(ctx, r.x) === throughCasts(ctx, x)) return r;
  }
  return undefined;
}

/** x − mean(x, -1): x (the decomposed LayerNorm normalizes this by its RMS). */
function centered(ctx: ImportContext, name: string): string | undefined {
  const sub = producedBy(ctx, name, "Sub");
  const mean = producedBy(ctx, sub?.inputs[1], "ReduceMean");
  if (!sub || !mean || mean.inputs[0] !== sub.inputs[0]) return undefined;
  const axes = axesOf(ctx, mean, 1);
  return axes?.length === 1 && axes[0] === -1 ? sub.inputs[0] : undefined;
}

function rmsNorm(ctx: ImportContext, node: OnnxNode, r: Rms, weight: { name: string; data: Float32Array } | undefined): Act {
  const mean = centered(ctx, r.x);
  if (mean !== undefined) return layerNorm(ctx, node, mean, r, weight);
  const x = ctx.act(node, r.x);
  const F = numelOf(x.physical);
  const lastAxis = r.axis === -1 || r.axis === x.dims.length - 1;
  if (!lastAxis || x.physical.length !== 1 || x.dims[x.dims.length - 1]?.kind !== "feat") {
    throw nodeError(node, "an RMS norm over other than the last axis of [T, F] is not supported");
  }
  const eps = r.eps;
  const w: Tensor = weight ? ctx.param(weight.name, [F], weight.data) : ctx.param(`${node.outputs[0]}.ones`, [F], new Float32Array(F).fill(1));
  return withTensor(x, x.t.graph.add({ kind: "rms_norm", x: x.t.id, weight: w.id, eps, group: F, weightOffset: 0, shape: x.t.shape, dtype: "f32" }));
}

/** (x − mean) / sqrt(var + eps), the decomposed LayerNorm: one layer_norm (its bias stays an add). */
function layerNorm(ctx: ImportContext, node: OnnxNode, xName: string, r: Rms, weight: { name: string; data: Float32Array } | undefined): Act {
  const x = ctx.act(node, xName);
  const F = numelOf(x.physical);
  const lastAxis = r.axis === -1 || r.axis === x.dims.length - 1;
  if (!lastAxis || x.physical.length !== 1 || x.dims[x.dims.length - 1]?.kind !== "feat" || x.t.dtype !== "f32") {
    throw nodeError(node, "a LayerNorm over other than the last axis of [T, F] is not supported");
  }
  const w: Tensor = weight ? ctx.param(weight.name, [F], weight.data) : ctx.param(`${node.outputs[0]}.ones`, [F], new Float32Array(F).fill(1));
  return withTensor(x, x.t.graph.add({ kind: "layer_norm", x: x.t.id, weight: w.id, bias: undefined, eps: r.eps, shape: x.t.shape, dtype: "f32" }));
}

export function matchRmsNorm(ctx: ImportContext, node: OnnxNode): Act | undefined {
  if (node.opType === "Mul") {
    for (const [w, y] of bothOrders(node)) {
      const c = ctx.constOf(w);
      const r = c ? normalized(ctx, y) : undefined;
      if (!c || !r) continue;
      // the activation being normalized (for a LayerNorm, x of x − mean(x))
      const x = ctx.act(node, centered(ctx, r.x) ?? r.x);
      const k = constOperand(node, x, c);
      const F = numelOf(x.physical);
      return rmsNorm(ctx, node, r, { name: w, data: k.kind === "row" ? k.data : new Float32Array(F).fill(k.value) });
    }
  }
  const out = node.outputs[0] ?? "";
  const r = normalized(ctx, out);
  if (!r) return undefined;
  // the weighted form is matched at its consumer, w · (this)
  const [next] = ctx.consumers(out);
  if (ctx.uses(out) === 1 && next?.opType === "Mul" && next.inputs.some((i) => i !== out && ctx.constOf(i) !== undefined)) return undefined;
  return rmsNorm(ctx, node, r, undefined);
}

/** The factors of a tree of Mul nodes rooted at `node` (inner Muls used only there are opened). */
function factors(ctx: ImportContext, node: OnnxNode): string[] {
  const out: string[] = [];
  for (const i of node.inputs) {
    const inner = producedBy(ctx, i, "Mul");
    if (inner && ctx.uses(i) === 1) out.push(...factors(ctx, inner));
    else out.push(i);
  }
  return out;
}

/** 1 + erf(x / √2): x. */
function erfTerm(ctx: ImportContext, name: string): string | undefined {
  const add = producedBy(ctx, name, "Add");
  if (!add) return undefined;
  for (const [e, one] of bothOrders(add)) {
    const erf = producedBy(ctx, e, "Erf");
    if (!erf || scalarOf(ctx, one) !== 1) continue;
    const scaled = producedBy(ctx, erf.inputs[0], "Div", "Mul");
    if (!scaled) continue;
    const k = scalarOf(ctx, scaled.inputs[1]);
    if (k === undefined) continue;
    const factor = scaled.opType === "Div" ? 1 / k : k;
    if (near(factor, Math.SQRT1_2, 1e-6)) return scaled.inputs[0];
  }
  return undefined;
}

export function matchActivation(ctx: ImportContext, node: OnnxNode): Act | undefined {
  if (node.opType !== "Mul") return undefined;
  const fs = factors(ctx, node);
  let scale = 1;
  const rest: string[] = [];
  for (const f of fs) {
    const s = scalarOf(ctx, f);
    if (s !== undefined) scale *= s;
    else rest.push(f);
  }
  if (rest.length !== 2) return undefined;
  const [a, b] = rest as [string, string];
  for (const [x, y] of [[a, b], [b, a]] as const) {
    if (near(scale, 0.5) && erfTerm(ctx, y) === x) {
      const t = ctx.act(node, x);
      return withTensor(t, t.t.unary("gelu"));
    }
    const sig = producedBy(ctx, y, "Sigmoid");
    if (scale === 1 && sig?.inputs[0] === x) {
      const t = ctx.act(node, x);
      return withTensor(t, t.t.silu());
    }
  }
  return undefined;
}
