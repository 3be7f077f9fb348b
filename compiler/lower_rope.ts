/**
 * Rotary embedding as an expression of the output column, for lowering. For column c of a head
 * (i = c mod headDim) the pair partner and the table index are:
 *
 *   neox (rotate_half): first half i < R/2 pairs with c + R/2, second half with c − R/2
 *   GPT-J (interleaved): even i pairs with c + 1, odd i with c − 1
 *
 *   first element a: a·cos − b·sin        second element b: b·cos + a·sin
 *
 * exactly the products and sums the reference kernel forms (kernels/cpu/rope.cc). Columns past
 * the rotary dimension pass through. Indices stay inside the row for every column (the partner
 * and the table index are computed for pass-through columns too, and discarded), so both sides
 * of each select may be evaluated.
 */
import type { NodeOf } from "./ir.ts";
import { iadd, int, intKey, iop, type Cond, type FloatExpr, type IntExpr } from "./kernel_ir.ts";
import type { Body } from "./region_values.ts";

export interface RopeTables {
  readonly cos: string; // local [rotaryDim / 2]: cos(angle_i) of this row's position
  readonly sin: string;
}

export function ropeExpr(
  n: NodeOf<"rope">,
  col: IntExpr,
  body: Body,
  tables: RopeTables,
  xAt: (col: IntExpr) => FloatExpr,
  fresh: (prefix: string) => string,
): FloatExpr {
  const half = n.rotaryDim / 2;
  const ilet = (value: IntExpr): IntExpr => {
    const key = intKey(value);
    const known = body.imemo.get(key);
    if (known) return known;
    const name = fresh("i");
    body.stmts.push({ s: "ilet", name, value });
    const v: IntExpr = { k: "var", name };
    body.imemo.set(key, v);
    return v;
  };
  const i = ilet(iop("%", col, int(n.headDim)));
  let first: Cond;
  let index: IntExpr;
  let partner: IntExpr;
  if (n.neox) {
    first = { k: "lt", a: i, b: int(half) };
    index = ilet(iop("%", i, int(half)));
    partner = ilet({ k: "isel", cond: first, a: iadd(col, int(half)), b: iop("-", col, int(half)) });
  } else {
    first = { k: "eq", a: iop("%", i, int(2)), b: int(0) };
    index = ilet(iop("%", iop("/", i, int(2)), int(half)));
    partner = ilet({ k: "isel", cond: first, a: iadd(col, int(1)), b: iop("-", col, int(1)) });
  }
  const x = xAt(col);
  const a: FloatExpr = { k: "fop", op: "*", a: x, b: { k: "load", buf: tables.cos, index } };
  const b: FloatExpr = { k: "fop", op: "*", a: xAt(partner), b: { k: "load", buf: tables.sin, index } };
  const rotated: FloatExpr = { k: "fsel", cond: first, a: { k: "fop", op: "-", a, b }, b: { k: "fop", op: "+", a, b } };
  if (n.rotaryDim === n.headDim) return rotated;
  return { k: "fsel", cond: { k: "lt", a: i, b: int(n.rotaryDim) }, a: rotated, b: x };
}
