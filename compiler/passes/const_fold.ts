/**
 * Pass: constant folding of the scalar constants the IR carries (scale factors, slice offsets),
 * through algebraic identities that are exact in f32, so folding never changes a single bit of
 * any result:
 *
 *   scale(x, 1)                → x
 *   neg(neg(x))                → x
 *   neg(scale(x, a)), scale(neg(x), a) → scale(x, -a)         (negation is exact)
 *   scale(scale(x, a), b)      → scale(x, a·b)  when a or b is a power of two
 *                                 (then x·a·b rounds once either way, barring over/underflow)
 *   slice(slice(x, s, _), t, n) → slice(x, s + t, n)
 *   slice(x, 0, all columns)   → x
 *
 * A folded node may leave its input unread; dead-code elimination runs after this pass.
 */
import type { Graph, Node, NodeOf } from "../ir.ts";
import { rewriteGraph, type Rewrite, type RewriteOutput } from "../graph_rewrite.ts";

function isPowerOfTwo(x: number): boolean {
  const a = Math.abs(Math.fround(x));
  return a > 0 && Number.isFinite(a) && Math.fround(a) === 2 ** Math.round(Math.log2(a));
}

function foldScale(n: NodeOf<"scale">, built: RewriteOutput): Rewrite {
  if (Math.fround(n.factor) === 1) return { replaceWith: n.x };
  const x = built.node(n.x);
  if (x.kind === "unary" && x.op === "neg") return { ...n, x: x.x, factor: -n.factor };
  if (x.kind === "scale") {
    const a = Math.fround(x.factor);
    const b = Math.fround(n.factor);
    if (isPowerOfTwo(a) || isPowerOfTwo(b)) return { ...n, x: x.x, factor: Math.fround(a * b) };
  }
  return n;
}

function foldNeg(n: NodeOf<"unary">, built: RewriteOutput): Rewrite {
  const x = built.node(n.x);
  if (x.kind === "unary" && x.op === "neg") return { replaceWith: x.x };
  if (x.kind === "scale") return { ...x, id: n.id, scope: n.scope, factor: -x.factor };
  return n;
}

function foldSlice(n: NodeOf<"slice">, built: RewriteOutput): Rewrite {
  const x = built.node(n.x);
  if (n.start === 0 && x.shape[x.shape.length - 1] === n.size) return { replaceWith: n.x };
  if (x.kind === "slice") return { ...n, x: x.x, start: x.start + n.start };
  return n;
}

export function constantFolding(graph: Graph): Graph {
  let folded = 0;
  const out = rewriteGraph(graph, (n: Node, built): Rewrite => {
    let r: Rewrite = n;
    if (n.kind === "scale") r = foldScale(n, built);
    else if (n.kind === "unary" && n.op === "neg") r = foldNeg(n, built);
    else if (n.kind === "slice") r = foldSlice(n, built);
    if (r !== n) folded++;
    return r;
  });
  return folded === 0 ? graph : out;
}
