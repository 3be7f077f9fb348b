/**
 * When a column loop can move its global memory in vectors of 4 elements (one 16-byte load for
 * f32, 8 bytes for bf16/f16): every global float load and store in the body must sit at
 * `c + base` with base a multiple of 4, the extent must be a multiple of 4, and the body must not
 * compute indices of its own (rotary partners read other columns).
 *
 * `affine(e, v)` writes an index as coef·v + rest and returns coef and a number that is known to
 * divide rest (0: rest is 0).
 */
import { assertNever } from "../ir.ts";
import type { BodyStmt, Cond, FloatExpr, IntExpr } from "../kernel_ir.ts";
import type { Dtype } from "../dtype.ts";

export const VECTOR = 4;

interface Affine {
  readonly coef: number;
  readonly divisor: number;
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

export function affine(e: IntExpr, v: string): Affine | undefined {
  switch (e.k) {
    case "int":
      return { coef: 0, divisor: Math.abs(e.v) };
    case "var":
      return e.name === v ? { coef: 1, divisor: 0 } : { coef: 0, divisor: 1 };
    case "iload":
      return uses(e.index, v) ? undefined : { coef: 0, divisor: 1 };
    case "isel":
      return uses(e, v) ? undefined : { coef: 0, divisor: 1 };
    case "iop": {
      const a = affine(e.a, v);
      const b = affine(e.b, v);
      if (!a || !b) return undefined;
      switch (e.op) {
        case "+":
          return { coef: a.coef + b.coef, divisor: gcd(a.divisor, b.divisor) };
        case "-":
          return { coef: a.coef - b.coef, divisor: gcd(a.divisor, b.divisor) };
        case "*":
          if (e.a.k === "int") return { coef: b.coef * e.a.v, divisor: b.divisor * Math.abs(e.a.v) };
          if (e.b.k === "int") return { coef: a.coef * e.b.v, divisor: a.divisor * Math.abs(e.b.v) };
          return a.coef === 0 && b.coef === 0 ? { coef: 0, divisor: a.divisor * b.divisor } : undefined;
        case "/":
        case "%":
          return a.coef === 0 && b.coef === 0 ? { coef: 0, divisor: 1 } : undefined;
        default:
          return assertNever(e.op, "index op");
      }
    }
    default:
      return assertNever(e, "index expression");
  }
}

function uses(e: IntExpr, v: string): boolean {
  switch (e.k) {
    case "int":
      return false;
    case "var":
      return e.name === v;
    case "iload":
      return uses(e.index, v);
    case "iop":
      return uses(e.a, v) || uses(e.b, v);
    case "isel":
      return usesCond(e.cond, v) || uses(e.a, v) || uses(e.b, v);
    default:
      return assertNever(e, "index expression");
  }
}

function usesCond(c: Cond, v: string): boolean {
  return uses(c.a, v) || uses(c.b, v);
}

/** e with every `v` replaced by `by` */
export function substitute(e: IntExpr, v: string, by: IntExpr): IntExpr {
  switch (e.k) {
    case "int":
      return e;
    case "var":
      return e.name === v ? by : e;
    case "iload":
      return { ...e, index: substitute(e.index, v, by) };
    case "iop":
      return { ...e, a: substitute(e.a, v, by), b: substitute(e.b, v, by) };
    case "isel":
      return {
        ...e,
        cond: { ...e.cond, a: substitute(e.cond.a, v, by), b: substitute(e.cond.b, v, by) },
        a: substitute(e.a, v, by),
        b: substitute(e.b, v, by),
      };
    default:
      return assertNever(e, "index expression");
  }
}

export interface Access {
  readonly buf: string;
  readonly index: IntExpr;
}

/** The global float loads of an expression (params only; locals and tables are not global I/O). */
export function floatLoads(e: FloatExpr, isGlobal: (buf: string) => boolean, out: Access[]): Access[] {
  switch (e.k) {
    case "num":
    case "fvar":
    case "itof":
      break;
    case "load":
      if (isGlobal(e.buf)) out.push({ buf: e.buf, index: e.index });
      break;
    case "call":
      floatLoads(e.x, isGlobal, out);
      break;
    case "fop":
    case "fsel":
      floatLoads(e.a, isGlobal, out);
      floatLoads(e.b, isGlobal, out);
      break;
    default:
      assertNever(e, "float expression");
  }
  return out;
}

export interface VectorPlan {
  readonly loads: readonly Access[];
  readonly stores: readonly Access[];
}

/**
 * The loads and stores a loop over `v` in [0, extent) moves as vectors, or undefined when the
 * loop must stay scalar.
 */
export function planVector(
  body: readonly BodyStmt[],
  extra: readonly FloatExpr[],
  v: string,
  extent: number,
  elems: ReadonlyMap<string, Dtype>,
): VectorPlan | undefined {
  if (extent % VECTOR !== 0 || body.some((s) => s.s === "ilet")) return undefined;
  const isGlobal = (buf: string): boolean => elems.has(buf) && elems.get(buf) !== "i32";
  const loads: Access[] = [];
  const stores: Access[] = [];
  for (const s of body) {
    if (s.s === "let") floatLoads(s.value, isGlobal, loads);
    if (s.s === "store") {
      floatLoads(s.value, isGlobal, loads);
      if (isGlobal(s.buf)) stores.push({ buf: s.buf, index: s.index });
    }
  }
  for (const e of extra) floatLoads(e, isGlobal, loads);
  if (loads.length + stores.length === 0) return undefined;
  const aligned = (a: Access): boolean => {
    const f = affine(a.index, v);
    return f !== undefined && f.coef === 1 && f.divisor % VECTOR === 0;
  };
  if (![...loads, ...stores].every(aligned)) return undefined;
  return { loads, stores };
}
