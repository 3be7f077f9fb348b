/**
 * Rotary embedding as the HF rotate-half form spells it in an export:
 *
 *   x · cos + cat(−x[..., D/2:], x[..., :D/2]) · sin        x [B, H, S, D], cos/sin [.., S, D]
 *
 * with cos/sin constant tables over the exported positions (a static-shape export folds them), or
 * rows of constant [P, D] tables gathered by a `position_ids` input (cos_cached[position_ids]).
 * The tables are read back into inverse frequencies: row p of cos is cos(p · f_j) for j < D/2,
 * repeated for the second half; f_j is recovered from the row p = 1 angle, refined over the last
 * row, and the whole table is checked against it, so any position (not just the exported ones)
 * rotates as the model does. A table that is not of this form is refused.
 */
import { nodeError, type ImportContext } from "./context.ts";
import { numelOf, stridesOf, type ConstTensor } from "./const_tensor.ts";
import { bothOrders, producedBy } from "./match.ts";
import type { OnnxNode } from "./proto.ts";
import { inStorageOrder, withTensor, type Act } from "./value.ts";

/** The x in cat(−x[..., h:], x[..., :h]) along the last axis, and the slices' bounds. */
function rotateHalfOf(ctx: ImportContext, name: string): { x: string; hiStart: number; loEnd: number } | undefined {
  const cat = producedBy(ctx, name, "Concat");
  if (!cat || cat.inputs.length !== 2) return undefined;
  const neg = producedBy(ctx, cat.inputs[0], "Neg");
  const hi = producedBy(ctx, neg?.inputs[0], "Slice");
  const lo = producedBy(ctx, cat.inputs[1], "Slice");
  if (!hi || !lo || hi.inputs[0] !== lo.inputs[0] || hi.inputs[0] === undefined) return undefined;
  const hiStart = ctx.constOf(hi.inputs[1] ?? "")?.data[0];
  const loEnd = ctx.constOf(lo.inputs[2] ?? "")?.data[0];
  const loStart = ctx.constOf(lo.inputs[1] ?? "")?.data[0];
  if (hiStart === undefined || loEnd === undefined || loStart !== 0) return undefined;
  return { x: hi.inputs[0], hiStart, loEnd };
}

/** cos or sin at (position p, column j), over `rows` positions. */
interface Table {
  readonly rows: number;
  at(p: number, j: number): number;
}

/** A table aligned to x's axes as [P, D]: P positions along x's token axis. */
function positionTable(node: OnnxNode, x: Act, t: ConstTensor, D: number): Table {
  const rank = x.dims.length;
  const shape = t.shape.slice(-rank);
  const off = rank - shape.length;
  const strides = stridesOf(shape);
  const tokAxis = x.dims.findIndex((d) => d.kind === "tok") - off;
  const ok = shape.every((s, i) => s === 1 || i === tokAxis || (i === shape.length - 1 && s === D)) && shape[shape.length - 1] === D;
  if (!ok || tokAxis < 0 || numelOf(t.shape) !== numelOf(shape)) throw nodeError(node, `rotary table of shape [${t.shape.join(", ")}] is not [positions, ${D}] along the token axis`);
  const rows = shape[tokAxis]!;
  const last = shape.length - 1;
  return { rows, at: (p, j) => t.data[p * strides[tokAxis]! + j * strides[last]!]! };
}

/**
 * The rows of a constant [P, D] table gathered by the position ids (cos_cached[position_ids],
 * possibly unsqueezed): the table itself, row p at position p.
 */
function gatheredTable(ctx: ImportContext, name: string): ConstTensor | undefined {
  let n = name;
  for (let p = producedBy(ctx, n, "Unsqueeze", "Reshape", "Cast"); p; p = producedBy(ctx, n, "Unsqueeze", "Reshape", "Cast")) n = p.inputs[0] ?? "";
  const gather = producedBy(ctx, n, "Gather");
  const table = ctx.constOf(gather?.inputs[0] ?? "");
  const ids = ctx.value(gather?.inputs[1] ?? "");
  const axis = gather?.attrs.get("axis");
  if (!table || table.shape.length !== 2 || ids?.kind !== "act" || ids.t.id !== ctx.inputs.positions.id || (axis?.type === "int" && axis.value !== 0)) return undefined;
  return table;
}

/** x · table, either order: x and how to read the table. */
function timesTable(ctx: ImportContext, name: string): { x: string; table: (node: OnnxNode, x: Act, D: number) => Table } | undefined {
  const mul = producedBy(ctx, name, "Mul");
  if (!mul) return undefined;
  for (const [x, t] of bothOrders(mul)) {
    if (ctx.constOf(x)) continue;
    const c = ctx.constOf(t);
    if (c) return { x, table: (node, a, D) => positionTable(node, a, c, D) };
    const g = gatheredTable(ctx, t);
    if (g) {
      return {
        x,
        table: (node, _a, D) => {
          if (g.shape[1] !== D) throw nodeError(node, `rotary table of shape [${g.shape.join(", ")}] is not [positions, ${D}]`);
          return { rows: g.shape[0]!, at: (p, j) => g.data[p * D + j]! };
        },
      };
    }
  }
  return undefined;
}

/** Inverse frequencies [D/2] that reproduce the cos/sin tables, or an error. */
export function invFreqFromTables(node: OnnxNode, cos: (p: number, j: number) => number, sin: (p: number, j: number) => number, rows: number, D: number): number[] {
  if (rows < 2) throw nodeError(node, "the rotary table has fewer than 2 positions; its frequencies cannot be read back");
  const half = D / 2;
  const freqs: number[] = [];
  for (let j = 0; j < half; j++) {
    let f = Math.atan2(sin(1, j), cos(1, j));
    const last = rows - 1;
    if (last > 1) {
      // refine over the last row: its angle is last · f up to whole turns, which f already pins down
      const a = Math.atan2(sin(last, j), cos(last, j));
      const turns = Math.round((f * last - a) / (2 * Math.PI));
      f = (a + 2 * Math.PI * turns) / last;
    }
    freqs.push(Math.fround(f));
  }
  for (let p = 0; p < rows; p++) {
    for (let j = 0; j < D; j++) {
      const angle = p * freqs[j % half]!;
      if (Math.abs(cos(p, j) - Math.cos(angle)) > 1e-4 || Math.abs(sin(p, j) - Math.sin(angle)) > 1e-4) {
        throw nodeError(node, `the rotary tables are not cos/sin(position · inv_freq) in the rotate-half layout (position ${p}, column ${j}); scaled rotary tables are not supported`);
      }
    }
  }
  return freqs;
}

export function matchRotary(ctx: ImportContext, node: OnnxNode): Act | undefined {
  if (node.opType !== "Add") return undefined;
  for (const [c, s] of bothOrders(node)) {
    const withCos = timesTable(ctx, c);
    const withSin = timesTable(ctx, s);
    if (!withCos || !withSin) continue;
    const rotated = rotateHalfOf(ctx, withSin.x);
    if (rotated === undefined || rotated.x !== withCos.x) continue;
    const x = ctx.act(node, withCos.x);
    const last = x.dims[x.dims.length - 1];
    if (last?.kind !== "feat" || last.phys !== x.physical.length - 1 || !inStorageOrder(x) || x.t.dtype !== "f32") {
      throw nodeError(node, "rotary over an axis other than the last feature axis is not supported");
    }
    const D = x.physical[x.physical.length - 1]!;
    const F = numelOf(x.physical);
    const h = D / 2;
    if (!(rotated.hiStart === h || rotated.hiStart === -h) || !(rotated.loEnd === h || rotated.loEnd === -h)) {
      throw nodeError(node, `rotate-half slices at ${rotated.hiStart} and ${rotated.loEnd}, not at half of the head dim ${D} (partial rotary is not supported)`);
    }
    const cos = withCos.table(node, x, D);
    const sin = withSin.table(node, x, D);
    const invFreq = invFreqFromTables(node, cos.at, sin.at, Math.min(cos.rows, sin.rows), D);
    const t = x.t.graph.add({
      kind: "rope",
      x: x.t.id,
      positions: ctx.inputs.positions.id,
      numHeads: F / D,
      headDim: D,
      rotaryDim: D,
      neox: true,
      invFreq,
      shape: x.t.shape,
      dtype: "f32",
    });
    return withTensor(x, t);
  }
  return undefined;
}
