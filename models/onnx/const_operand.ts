/**
 * A constant operand of an elementwise op on an activation becomes what kiln's binary op can
 * broadcast: a scalar (a `scale`, or an add of a filled row), or one row of the activation's
 * features [F] (in storage order) shared by every token. A constant that varies along a token axis
 * (a position table, a mask) has no such form: only the rotary and attention patterns read those.
 */
import { nodeError } from "./context.ts";
import { numelOf, stridesOf, type ConstTensor } from "./const_tensor.ts";
import type { OnnxNode } from "./proto.ts";
import type { Act } from "./value.ts";

export type ConstOperand =
  | { readonly kind: "scalar"; readonly value: number }
  | { readonly kind: "row"; readonly data: Float32Array };

export function constOperand(node: OnnxNode, a: Act, c: ConstTensor): ConstOperand {
  const rank = a.dims.length;
  if (c.shape.length > rank && c.shape.slice(0, c.shape.length - rank).some((d) => d !== 1)) {
    throw nodeError(node, `constant of shape [${c.shape.join(", ")}] would broadcast the activation to a higher rank`);
  }
  const first = c.data[0] ?? 0;
  if (c.data.every((v) => v === first)) return { kind: "scalar", value: first };
  // c's axes aligned to the activation's from the right; which activation axis each c axis sits on
  const cShape = c.shape.slice(Math.max(0, c.shape.length - rank));
  const off = rank - cShape.length;
  const cStrides = stridesOf(cShape);
  const physToC = new Array<number | undefined>(a.physical.length).fill(undefined);
  cShape.forEach((size, i) => {
    const d = a.dims[off + i]!;
    if (size === 1) return;
    if (d.kind === "tok") throw nodeError(node, `a constant of shape [${c.shape.join(", ")}] varies along the token axis (a position-dependent table the importer maps only inside rotary and attention patterns)`);
    if (d.kind === "unit") throw nodeError(node, `a constant of shape [${c.shape.join(", ")}] would broadcast a size-1 axis of the activation`);
    if (a.physical[d.phys] !== size) throw nodeError(node, `constant of shape [${c.shape.join(", ")}] does not broadcast to the activation`, "ONNX_INVALID");
    physToC[d.phys] = i;
  });
  const F = numelOf(a.physical);
  const pStrides = stridesOf(a.physical);
  const data = new Float32Array(F);
  for (let f = 0; f < F; f++) {
    let rem = f;
    let src = 0;
    for (let p = 0; p < a.physical.length; p++) {
      const idx = Math.floor(rem / pStrides[p]!);
      rem -= idx * pStrides[p]!;
      const ci = physToC[p];
      if (ci !== undefined) src += idx * cStrides[ci]!;
    }
    data[f] = c.data[src]!;
  }
  return { kind: "row", data };
}
