/**
 * The view ops on activations: Reshape, Transpose, (Un)squeeze, Slice and Split. Most only
 * relabel axes (value.ts); a Slice or Split of the one feature axis is a column slice of [T, F].
 * A view that would need data to move (a reshape of transposed features, a slice of the token
 * axis) is refused.
 */
import { attrInt, attrInts, axesOf, nodeError, normAxis, type ImportContext } from "./context.ts";
import { reshapeTarget, sliceRange } from "./const_fold.ts";
import type { OnnxNode } from "./proto.ts";
import { actShape, inStorageOrder, type Act, type ActDim } from "./value.ts";

/**
 * Reshape of an activation: size-1 axes become unit axes, a token axis stays one (the target may
 * spell it as its exported size, as 0 or as -1), and runs of feature axes split or merge when
 * they are in storage order.
 */
export function reshapeView(ctx: ImportContext, node: OnnxNode): Act {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const target = ctx.constOf(node.inputs[1] ?? "");
  if (!target) throw nodeError(node, "its target shape is not a constant the importer can resolve");
  if (!inStorageOrder(a)) throw nodeError(node, "reshape of features that a transpose put out of storage order needs a copy");
  const inShape = actShape(a);
  const numeric = inShape.map((d) => (typeof d === "number" ? d : -2));
  const allowZero = attrInt(node, "allowzero", 0) === 1;
  const raw = Array.from(target.data);
  // a symbolic token axis: the -1 (or a copied 0) stands for it; sizes are checked on the rest
  const symbolic = numeric.some((d) => d === -2);
  const out = symbolic ? raw.map((d, i) => (d === 0 && !allowZero ? numeric[i]! : d)) : reshapeTarget(node, numeric, raw, allowZero);
  const inner = a.dims.filter((d) => d.kind !== "unit");
  const dims: ActDim[] = [];
  const physical: number[] = [];
  let i = 0;
  for (let j = 0; j < out.length; j++) {
    const size = out[j]!;
    if (size === 1) {
      dims.push({ kind: "unit" });
      continue;
    }
    const d = inner[i];
    if (d === undefined) throw nodeError(node, `cannot follow a reshape of [${inShape.join(", ")}] to [${raw.join(", ")}]`);
    if (d.kind === "tok") {
      // consecutive token axes (batch, seq) may merge into one: [B, S, F] → [B·S, F] (a -1, or
      // their exported product); a copied dim (0, here -2) stays one axis
      let run = 1;
      let product: number | string = d.size;
      const more = (): boolean => inner[i + run]?.kind === "tok";
      const grow = (): void => {
        const next = inner[i + run] as ActDim & { kind: "tok" };
        product = typeof product === "number" && typeof next.size === "number" ? product * next.size : `${product}*${next.size}`;
        run++;
      };
      if (size === -1) while (more()) grow();
      else if (size !== -2) while (product !== size && more()) grow();
      if (size !== -1 && size !== -2 && product !== size) {
        throw nodeError(node, `the reshape to [${raw.join(", ")}] splits the token axis or mixes it with features`);
      }
      dims.push(run === 1 ? d : { kind: "tok", size: product });
      i += run;
      continue;
    }
    // a run of features: merge input features and split into output sizes until the products agree
    if (size < 1) throw nodeError(node, `cannot infer the reshape to [${raw.join(", ")}] on a symbolic shape`);
    const run: ActDim[] = [{ kind: "feat", phys: physical.length }];
    physical.push(size);
    let outProd = size;
    let inProd = a.physical[d.phys]!;
    i++;
    let k = j + 1;
    while (inProd !== outProd) {
      if (inProd < outProd) {
        const e = inner[i++];
        if (e?.kind !== "feat") throw nodeError(node, `the reshape to [${raw.join(", ")}] mixes the token axis with features`);
        inProd *= a.physical[e.phys]!;
      } else {
        const s = out[k++];
        if (s === undefined || s < 1) throw nodeError(node, `cannot follow a reshape of [${inShape.join(", ")}] to [${raw.join(", ")}]`);
        if (s === 1) run.push({ kind: "unit" });
        else {
          run.push({ kind: "feat", phys: physical.length });
          physical.push(s);
        }
        outProd *= s;
      }
    }
    dims.push(...run);
    j = k - 1;
  }
  if (i !== inner.length) throw nodeError(node, `cannot follow a reshape of [${inShape.join(", ")}] to [${raw.join(", ")}]`);
  return { kind: "act", t: a.t, dims, physical };
}

export function transposeView(ctx: ImportContext, node: OnnxNode): Act {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const perm = attrInts(node, "perm") ?? a.dims.map((_, i) => a.dims.length - 1 - i);
  const dims = perm.map((p) => a.dims[p]!);
  const toks = perm.filter((p) => a.dims[p]!.kind === "tok");
  if (toks.some((p, i) => i > 0 && p < toks[i - 1]!)) throw nodeError(node, "a transpose that reorders the token axes is not supported");
  return { ...a, dims };
}

export function unsqueezeView(ctx: ImportContext, node: OnnxNode): Act {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const given = axesOf(ctx, node, 1) ?? [];
  const rank = a.dims.length + given.length;
  const dims = [...a.dims];
  for (const ax of given.map((x) => normAxis(node, x, rank)).sort((p, q) => p - q)) dims.splice(ax, 0, { kind: "unit" });
  return { ...a, dims };
}

export function squeezeView(ctx: ImportContext, node: OnnxNode): Act {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const axes = (axesOf(ctx, node, 1) ?? a.dims.flatMap((d, i) => (d.kind === "unit" ? [i] : []))).map((x) => normAxis(node, x, a.dims.length));
  if (axes.some((ax) => a.dims[ax]!.kind !== "unit")) throw nodeError(node, "squeeze of an axis that is not of size 1", "ONNX_INVALID");
  return { ...a, dims: a.dims.filter((_, i) => !axes.includes(i)) };
}

/** Columns [start, start + size) of the activation's one feature axis. */
function columns(node: OnnxNode, a: Act, axis: number, start: number, size: number): Act {
  const d = a.dims[axis]!;
  if (d.kind === "feat" && start === 0 && size === a.physical[d.phys]) return a;
  if (d.kind !== "feat" || a.physical.length !== 1) throw nodeError(node, `slicing axis ${axis} of [${actShape(a).join(", ")}] is not a column slice of [T, F]`);
  if (a.t.dtype !== "f32") throw nodeError(node, "slicing token ids is not supported");
  return { kind: "act", t: a.t.slice(start, size), dims: a.dims, physical: [size] };
}

export function sliceView(ctx: ImportContext, node: OnnxNode): Act {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const vals = (i: number): number[] | undefined => {
    const n = node.inputs[i];
    if (n === undefined || n === "") return undefined;
    const c = ctx.constOf(n);
    if (!c) throw nodeError(node, "its bounds are not constants the importer can resolve");
    return Array.from(c.data);
  };
  const starts = vals(1) ?? [];
  const ends = vals(2) ?? [];
  const axes = (vals(3) ?? starts.map((_, i) => i)).map((x) => normAxis(node, x, a.dims.length));
  const steps = vals(4) ?? starts.map(() => 1);
  let out = a;
  axes.forEach((ax, i) => {
    const size = actShape(a)[ax]!;
    if (typeof size !== "number" || a.dims[ax]!.kind === "tok") {
      if (starts[i] === 0 && ends[i]! >= 2 ** 31 - 1 && steps[i] === 1) return;
      throw nodeError(node, "slicing the token axis is not supported");
    }
    if (steps[i] !== 1) throw nodeError(node, "a slice with a step other than 1 is not supported");
    const r = sliceRange(starts[i]!, ends[i]!, 1, size);
    out = columns(node, out, ax, r.start, r.count);
  });
  return out;
}

export function splitView(ctx: ImportContext, node: OnnxNode): Act[] {
  const a = ctx.act(node, node.inputs[0] ?? "");
  const axis = normAxis(node, attrInt(node, "axis", 0), a.dims.length);
  const size = actShape(a)[axis];
  if (typeof size !== "number") throw nodeError(node, "splitting the token axis is not supported");
  const given = attrInts(node, "split") ?? (node.inputs[1] ? (() => {
    const c = ctx.constOf(node.inputs[1] ?? "");
    if (!c) throw nodeError(node, "its split sizes are not a constant");
    return Array.from(c.data);
  })() : undefined);
  const n = node.outputs.length;
  const sizes = given ?? Array.from({ length: n }, (_, i) => Math.min(Math.ceil(size / n), size - i * Math.ceil(size / n)));
  let start = 0;
  return sizes.map((s) => {
    const part = columns(node, a, axis, start, s);
    start += s;
    return part;
  });
}
