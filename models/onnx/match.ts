/** Small structural queries the pattern matchers share: "is `name` computed by op X", scalars. */
import type { ImportContext } from "./context.ts";
import type { OnnxNode } from "./proto.ts";

/** The node computing `name` when its op type is one of `ops`. */
export function producedBy(ctx: ImportContext, name: string | undefined, ...ops: readonly string[]): OnnxNode | undefined {
  if (name === undefined || name === "") return undefined;
  const p = ctx.producer(name);
  return p && ops.includes(p.opType) && (p.domain === "" || p.domain === "ai.onnx") ? p : undefined;
}

/** The value of a constant whose elements are all equal. */
export function scalarOf(ctx: ImportContext, name: string | undefined): number | undefined {
  if (name === undefined) return undefined;
  const c = ctx.constOf(name);
  if (!c || c.data.length === 0) return undefined;
  const v = c.data[0]!;
  return c.data.every((x) => x === v) ? v : undefined;
}

/** For a two-input commutative node: the input other than `name`, when `name` is one of them. */
export function otherInput(node: OnnxNode, name: string): string | undefined {
  const [a, b] = node.inputs;
  return a === name ? b : b === name ? a : undefined;
}

/** Both orders of a commutative node's two inputs. */
export function bothOrders(node: OnnxNode): readonly (readonly [string, string])[] {
  const [a, b] = node.inputs;
  if (a === undefined || b === undefined) return [];
  return [[a, b], [b, a]];
}

/** Skips Cast and Identity nodes (exports wrap norms in casts to float32). */
export function throughCasts(ctx: ImportContext, name: string): string {
  let n = name;
  for (let p = producedBy(ctx, n, "Cast", "Identity"); p; p = producedBy(ctx, n, "Cast", "Identity")) n = p.inputs[0] ?? "";
  return n;
}

export const near = (a: number, b: number, tol = 1e-6): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
