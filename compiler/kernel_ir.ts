/**
 * The lowered form of a fused kernel: explicit loops and index math over flat buffers, the one
 * thing both renderer dialects (C for the CPU, CUDA C for the GPU) read.
 *
 * A kernel runs once per row `r` of its row space (T tokens or S logit rows): on the CPU a loop
 * over rows, on the GPU one thread block per row. Its body is a short list of row-level
 * statements, each a loop over columns:
 *
 *   for c in [0, extent):      elementwise work; stores to output buffers and row-local arrays
 *   reduce g in [0, groups):   sum (or sum of squares) over j in [0, extent) of each group, then a
 *                              `finish` turns each sum into a scalar kept in a local array [groups]
 *
 * Row-local arrays ("locals") hold values several later loops read at other columns (a residual
 * sum the norm reads twice, rotary cos/sin tables); on the GPU they live in shared memory, so a
 * barrier follows every statement that writes one. Expressions are typed: IntExpr is 64-bit index
 * math, FloatExpr is f32 arithmetic (loads convert from the buffer's storage type).
 */
import { assertNever, type Dim } from "./ir.ts";
import type { Dtype } from "./dtype.ts";

export type IntExpr =
  | { readonly k: "int"; readonly v: number }
  /** the row `r`, a loop variable, or an int let */
  | { readonly k: "var"; readonly name: string }
  | { readonly k: "iop"; readonly op: "+" | "-" | "*" | "/" | "%"; readonly a: IntExpr; readonly b: IntExpr }
  /** an element of an i32 buffer (token ids, positions, gather indices, cache slots) */
  | { readonly k: "iload"; readonly buf: string; readonly index: IntExpr }
  | { readonly k: "isel"; readonly cond: Cond; readonly a: IntExpr; readonly b: IntExpr };

export interface Cond {
  readonly k: "lt" | "eq";
  readonly a: IntExpr;
  readonly b: IntExpr;
}

/** Elementwise math functions; each dialect's prelude defines `kiln_<fn>`. */
export const MATH_FNS = ["silu", "gelu_tanh", "gelu", "relu", "tanh", "neg", "sigmoid", "cos", "sin"] as const;
export type MathFn = (typeof MATH_FNS)[number];

export type FloatExpr =
  | { readonly k: "num"; readonly v: number }
  /** an element of a float buffer (a kernel parameter, a local array or a constant table) */
  | { readonly k: "load"; readonly buf: string; readonly index: IntExpr }
  | { readonly k: "fvar"; readonly name: string }
  | { readonly k: "itof"; readonly x: IntExpr }
  | { readonly k: "call"; readonly fn: MathFn; readonly x: FloatExpr }
  | { readonly k: "fop"; readonly op: "+" | "-" | "*" | "/"; readonly a: FloatExpr; readonly b: FloatExpr }
  | { readonly k: "fsel"; readonly cond: Cond; readonly a: FloatExpr; readonly b: FloatExpr };

/** Statements inside a column loop. */
export type BodyStmt =
  | { readonly s: "let"; readonly name: string; readonly value: FloatExpr }
  | { readonly s: "ilet"; readonly name: string; readonly value: IntExpr }
  | { readonly s: "store"; readonly buf: string; readonly index: IntExpr; readonly value: FloatExpr };

/**
 * How a reduction's sum becomes the scalar later loops read:
 *   mean:           sum / n
 *   rsqrt_mean_eps: 1 / sqrt(sum / n + eps)   (RMS and layer norm; eps as the f32 the model stores)
 * Sums accumulate at least in f32 (the C dialect uses double, as the reference kernels do).
 */
export type Finish =
  | { readonly k: "mean"; readonly n: number }
  | { readonly k: "rsqrt_mean_eps"; readonly n: number; readonly eps: number };

export type RowStmt =
  | { readonly s: "for"; readonly v: string; readonly extent: number; readonly body: readonly BodyStmt[] }
  | {
      readonly s: "reduce";
      /** local array [groups] that receives the finished scalars */
      readonly out: string;
      readonly groups: number;
      readonly extent: number;
      /** group and in-group variables; `col` = g * extent + j is bound for the body */
      readonly g: string;
      readonly j: string;
      readonly col: string;
      readonly body: readonly BodyStmt[];
      readonly op: "sum" | "sum_sq";
      readonly value: FloatExpr;
      readonly finish: Finish;
    };

/** A buffer's shape; a KV cache has `slots` rows (blocks × block size, fixed when it is allocated). */
export type ParamShape = readonly (Dim | "slots")[];

export interface KernelParam {
  readonly name: string;
  readonly io: "in" | "out";
  readonly elem: Dtype;
  /** the buffer's logical shape, for documentation and launch-time checks */
  readonly shape: ParamShape;
  /** what the buffer holds, in words (`residual add of the layer input`, `k cache`) */
  readonly doc: string;
}

export interface LocalArray {
  readonly name: string;
  readonly size: number;
}

export interface ConstTable {
  readonly name: string;
  /** f32 values (already rounded) */
  readonly values: readonly number[];
}

export interface LoweredKernel {
  readonly name: string;
  /** one row per iteration / thread block: grid = (rows, 1, 1) */
  readonly rows: Dim;
  /** the ops fused into it, in order, for documentation (`add`, `rms_norm`, ...) */
  readonly ops: readonly string[];
  readonly params: readonly KernelParam[];
  readonly locals: readonly LocalArray[];
  readonly consts: readonly ConstTable[];
  readonly body: readonly RowStmt[];
}

export const ROW_VAR = "r";

export const int = (v: number): IntExpr => ({ k: "int", v });
export const ivar = (name: string): IntExpr => ({ k: "var", name });
export const num = (v: number): FloatExpr => ({ k: "num", v });

/** a + b, folding zeros and constants so rendered index math stays short */
export function iadd(a: IntExpr, b: IntExpr): IntExpr {
  if (a.k === "int" && a.v === 0) return b;
  if (b.k === "int" && b.v === 0) return a;
  if (a.k === "int" && b.k === "int") return int(a.v + b.v);
  return { k: "iop", op: "+", a, b };
}

export function imul(a: IntExpr, b: IntExpr): IntExpr {
  if ((a.k === "int" && a.v === 0) || (b.k === "int" && b.v === 0)) return int(0);
  if (a.k === "int" && a.v === 1) return b;
  if (b.k === "int" && b.v === 1) return a;
  if (a.k === "int" && b.k === "int") return int(a.v * b.v);
  return { k: "iop", op: "*", a, b };
}

export function iop(op: "-" | "/" | "%", a: IntExpr, b: IntExpr): IntExpr {
  if (op === "-" && b.k === "int" && b.v === 0) return a;
  if (op === "/" && b.k === "int" && b.v === 1) return a;
  if (op === "%" && b.k === "int" && b.v === 1) return int(0);
  return { k: "iop", op, a, b };
}

/** A canonical string for an index expression (memo keys, alignment checks in tests). */
export function intKey(e: IntExpr): string {
  switch (e.k) {
    case "int":
      return String(e.v);
    case "var":
      return e.name;
    case "iop":
      return `(${intKey(e.a)}${e.op}${intKey(e.b)})`;
    case "iload":
      return `${e.buf}[${intKey(e.index)}]`;
    case "isel":
      return `(${intKey(e.cond.a)}${e.cond.k === "lt" ? "<" : "=="}${intKey(e.cond.b)}?${intKey(e.a)}:${intKey(e.b)})`;
    default:
      return assertNever(e, "index expression");
  }
}

/** Rounds to the nearest f32, as a typed array store would. */
export const toF32 = Math.fround;
