/**
 * What an ONNX value is while importing. kiln computes on a flattened token batch [T, F]; an ONNX
 * activation is an N-d view of such a tensor: some of its axes are token axes (their product is
 * T: batch and sequence, in order), the others are feature axes laid out row-major in `physical`
 * order inside each row, and size-1 axes are `unit` (no storage). A transpose only reorders the
 * logical axes; ops that read rows as plain vectors need logical and physical feature order to
 * agree.
 *
 *   input_ids [1, 12]             → dims [unit, tok]            t: [T] i32
 *   q view    [1, 12, 4, 16]      → dims [unit, tok, f0, f1]    t: [T, 64], physical [4, 16]
 *   q heads   [1, 4, 12, 16]      → dims [unit, f0, tok, f1]    (a transpose: no data moves)
 *
 * A value the importer could not map is `failed`: the error is raised only where the value is
 * really used, so a node that a recognized pattern (RMSNorm, rotary, attention) swallows whole
 * never fails on its own.
 */
import type { Tensor } from "../../compiler/trace.ts";
import type { KilnError } from "../../runtime/engine/errors.ts";
import type { ConstTensor } from "./const_tensor.ts";

export type ActDim =
  | { readonly kind: "tok"; readonly size: number | string }
  | { readonly kind: "feat"; readonly phys: number }
  | { readonly kind: "unit" };

export interface Act {
  readonly kind: "act";
  readonly t: Tensor;
  readonly dims: readonly ActDim[];
  /** feature sizes in row-major storage order (never 1) */
  readonly physical: readonly number[];
}

export type Value =
  | Act
  | { readonly kind: "const"; readonly c: ConstTensor }
  | { readonly kind: "failed"; readonly error: KilnError };

export function dimSize(a: Act, d: ActDim): number | string {
  switch (d.kind) {
    case "tok": return d.size;
    case "feat": return a.physical[d.phys]!;
    case "unit": return 1;
  }
}

/** The logical shape, symbolic token sizes as their names. */
export function actShape(a: Act): (number | string)[] {
  return a.dims.map((d) => dimSize(a, d));
}

/** Feature axes in logical order, as physical indices. */
export function featOrder(a: Act): number[] {
  const out: number[] = [];
  for (const d of a.dims) if (d.kind === "feat") out.push(d.phys);
  return out;
}

/** True when the logical feature order is the storage order (rows read as plain vectors). */
export function inStorageOrder(a: Act): boolean {
  return featOrder(a).every((p, i) => p === i);
}

export function tokCount(a: Act): number {
  return a.dims.filter((d) => d.kind === "tok").length;
}

/** The same logical axes (kinds and sizes) in the same order: elementwise ops need it. */
export function sameLayout(a: Act, b: Act): boolean {
  if (a.dims.length !== b.dims.length || a.physical.length !== b.physical.length) return false;
  if (!a.physical.every((s, i) => s === b.physical[i])) return false;
  return a.dims.every((d, i) => {
    const e = b.dims[i]!;
    if (d.kind !== e.kind) return false;
    if (d.kind === "feat" && e.kind === "feat") return d.phys === e.phys;
    return true;
  });
}

/** A new activation over `t` with the same axes. */
export function withTensor(a: Act, t: Tensor): Act {
  return { kind: "act", t, dims: a.dims, physical: a.physical };
}

/** Token axes' logical positions. */
export function tokAxes(a: Act): number[] {
  const out: number[] = [];
  a.dims.forEach((d, i) => {
    if (d.kind === "tok") out.push(i);
  });
  return out;
}
