/**
 * What the C and CUDA dialects share: expressions and loop-body statements in C syntax. A
 * dialect supplies only what differs: type names, how a stored element converts to and from f32,
 * and (in its own file) how row statements map onto loops or threads.
 */
import { assertNever } from "../ir.ts";
import type { BodyStmt, Cond, FloatExpr, IntExpr, LoweredKernel } from "../kernel_ir.ts";
import type { Dtype } from "../dtype.ts";

export interface Dialect {
  /** 64-bit index type */
  readonly int: string;
  /** C element type of a buffer of this storage type */
  elemType(e: Dtype): string;
  /** `ptr[index]` converted to f32 */
  loadAsF32(e: Dtype, element: string): string;
  /** an f32 value converted for storing into a buffer of this type */
  fromF32(e: Dtype, value: string): string;
}

/** Buffer names a kernel's expressions refer to, and how they render. */
export interface Scope {
  readonly dialect: Dialect;
  /** param name → storage type (locals and constant tables are f32) */
  readonly paramElems: ReadonlyMap<string, Dtype>;
  /** constant table name → its global symbol */
  readonly constNames: ReadonlyMap<string, string>;
  /** a load that a vectorized loop already holds in a register: `ld0[u]` */
  readonly loadOverride?: (buf: string, index: IntExpr) => string | undefined;
  /** a store that a vectorized loop collects in a register: `st0[u]` */
  readonly storeOverride?: (buf: string, index: IntExpr) => string | undefined;
}

const PREC = { "+": 1, "-": 1, "*": 2, "/": 2, "%": 2 } as const;

export function renderInt(e: IntExpr, scope: Scope, parent = 0): string {
  switch (e.k) {
    case "int":
      return e.v < 0 && parent > 0 ? `(${e.v})` : String(e.v);
    case "var":
      return e.name;
    case "iop": {
      const p = PREC[e.op];
      // a - (b + c), a / (b * c): the right operand of a non-commutative op needs its parentheses
      const right = e.op === "-" || e.op === "/" || e.op === "%" ? p + 1 : p;
      const s = `${renderInt(e.a, scope, p)} ${e.op} ${renderInt(e.b, scope, right)}`;
      return p < parent ? `(${s})` : s;
    }
    case "iload":
      return `(${scope.dialect.int})${e.buf}[${renderInt(e.index, scope)}]`;
    case "isel": {
      const s = `${renderCond(e.cond, scope)} ? ${renderInt(e.a, scope, 1)} : ${renderInt(e.b, scope, 1)}`;
      return parent > 0 ? `(${s})` : s;
    }
    default:
      return assertNever(e, "index expression");
  }
}

export function renderCond(c: Cond, scope: Scope): string {
  return `${renderInt(c.a, scope, 1)} ${c.k === "lt" ? "<" : "=="} ${renderInt(c.b, scope, 1)}`;
}

export function renderFloat(e: FloatExpr, scope: Scope, parent = 0): string {
  switch (e.k) {
    case "num": {
      const s = floatLiteral(e.v);
      return s.startsWith("-") && parent > 0 ? `(${s})` : s;
    }
    case "load": {
      const over = scope.loadOverride?.(e.buf, e.index);
      if (over !== undefined) return over;
      const element = `${scope.constNames.get(e.buf) ?? e.buf}[${renderInt(e.index, scope)}]`;
      const elem = scope.paramElems.get(e.buf);
      return elem === undefined ? element : scope.dialect.loadAsF32(elem, element);
    }
    case "fvar":
      return e.name;
    case "itof":
      return `(float)${renderInt(e.x, scope, 3)}`;
    case "call":
      return `kiln_${e.fn}(${renderFloat(e.x, scope)})`;
    case "fop": {
      const p = PREC[e.op];
      const right = e.op === "-" || e.op === "/" ? p + 1 : p;
      const s = `${renderFloat(e.a, scope, p)} ${e.op} ${renderFloat(e.b, scope, right)}`;
      return p < parent ? `(${s})` : s;
    }
    case "fsel": {
      const s = `${renderCond(e.cond, scope)} ? ${renderFloat(e.a, scope, 1)} : ${renderFloat(e.b, scope, 1)}`;
      return parent > 0 ? `(${s})` : s;
    }
    default:
      return assertNever(e, "float expression");
  }
}

export function renderBody(stmts: readonly BodyStmt[], scope: Scope, indent: string): string[] {
  return stmts.map((st) => {
    switch (st.s) {
      case "let":
        return `${indent}const float ${st.name} = ${renderFloat(st.value, scope)};`;
      case "ilet":
        return `${indent}const ${scope.dialect.int} ${st.name} = ${renderInt(st.value, scope)};`;
      case "store": {
        const value = renderFloat(st.value, scope);
        const over = scope.storeOverride?.(st.buf, st.index);
        if (over !== undefined) return `${indent}${over} = ${value};`;
        const elem = scope.paramElems.get(st.buf);
        const v = elem === undefined ? value : scope.dialect.fromF32(elem, value);
        return `${indent}${st.buf}[${renderInt(st.index, scope)}] = ${v};`;
      }
      default:
        return assertNever(st, "statement");
    }
  });
}

/** The shortest decimal that reads back as the same f32, as a C float literal (`0.5f`, `1e-05f`). */
export function floatLiteral(v: number): string {
  const f = Math.fround(v);
  if (!Number.isFinite(f)) throw new Error(`kernel constant ${v} is not finite`);
  let s = "";
  for (let p = 1; p <= 9; p++) {
    s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) break;
  }
  s = String(Number(s)); // drop trailing zeros toPrecision keeps
  if (!/[.e]/.test(s)) s += ".0";
  return `${s}f`;
}

/** The comment block above a kernel: what it fuses, and each parameter. */
export function kernelDoc(k: LoweredKernel, launch: string | undefined): string[] {
  const lines = [`/*`, ` * ${k.name}: ${k.ops.join(" + ")}, one ${launch === undefined ? "iteration" : "block"} per row of [${String(k.rows)}]`];
  lines.push(` *   rows  number of rows this step`);
  for (const p of k.params) {
    lines.push(` *   ${p.name.padEnd(5)} ${p.io === "in" ? "in " : "out"} ${p.elem.padEnd(4)} [${p.shape.join(", ")}]  ${p.doc}`);
  }
  if (launch !== undefined) lines.push(` * launch: ${launch}`);
  lines.push(` */`);
  return lines;
}
