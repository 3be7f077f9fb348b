/**
 * Attention as the torch exporters spell it out (eager / SDPA decomposed), replaced by kiln's
 * paged attention op, so the imported graph runs on a flattened token batch and the engine owns
 * the KV cache:
 *
 *   scores = (Q · Kᵀ) · scale  (or / c)     Q [B, H, S, D], K [B, H, S, D] (after repeat_kv)
 *   probs  = Softmax(scores + mask, -1)      mask: a constant causal mask [.., S, S]
 *   out    = probs · V                       → [B, H, S, D]
 *
 * repeat_kv (GQA) appears as Reshape(Expand(Unsqueeze(k, 2))): the un-repeated K/V go to the
 * cache. A mask that is not causal (padding masks as graph inputs, sliding windows) is refused.
 * Not supported yet: Optimum exports with past_key_values inputs/outputs, onnxruntime's
 * GroupQueryAttention / MultiHeadAttention contrib ops, and the Attention op of opset 23.
 */
import { nodeError, type ImportContext } from "./context.ts";
import { numelOf, stridesOf, type ConstTensor } from "./const_tensor.ts";
import { bothOrders, producedBy, scalarOf } from "./match.ts";
import type { OnnxNode } from "./proto.ts";
import type { Act, ActDim } from "./value.ts";

/** An activation of shape [B, heads, S, D]: its heads and head size (storage order [heads, D]). */
function headsView(a: Act): { heads: number; headDim: number } | undefined {
  const dims = a.dims.filter((d) => d.kind !== "unit");
  const is = (d: ActDim | undefined, phys: number): boolean => d?.kind === "feat" && d.phys === phys;
  if (a.t.dtype !== "f32") return undefined;
  if (dims.length === 3 && is(dims[0], 0) && dims[1]?.kind === "tok" && is(dims[2], 1) && a.physical.length === 2) {
    return { heads: a.physical[0]!, headDim: a.physical[1]! };
  }
  if (dims.length === 2 && dims[0]?.kind === "tok" && is(dims[1], 0) && a.physical.length === 1) return { heads: 1, headDim: a.physical[0]! };
  return undefined;
}

/** K or V before repeat_kv: the activation and how often each of its heads repeats. */
function unrepeated(ctx: ImportContext, node: OnnxNode, name: string): { a: Act; rep: number } {
  const reshape = producedBy(ctx, name, "Reshape");
  const expand = producedBy(ctx, reshape?.inputs[0], "Expand");
  const unsq = producedBy(ctx, expand?.inputs[0], "Unsqueeze");
  if (reshape && expand && unsq) {
    const target = ctx.constOf(reshape.inputs[1] ?? "");
    const base = ctx.act(node, unsq.inputs[0] ?? "");
    const view = headsView(base);
    const heads = target && target.shape.length === 1 && target.data.length === 4 ? target.data[1]! : undefined;
    if (!view || heads === undefined || heads % view.heads !== 0) throw nodeError(node, "its key/value head repetition is not the repeat_kv form");
    return { a: base, rep: heads / view.heads };
  }
  return { a: ctx.act(node, name), rep: 1 };
}

/** Checks `mask` is causal over the exported S positions (0 where j ≤ i, very negative above). */
function checkCausal(node: OnnxNode, mask: ConstTensor, S: number | string): void {
  const shape = mask.shape;
  const [q, k] = [shape[shape.length - 2], shape[shape.length - 1]];
  if (shape.length < 2 || q !== S || k !== S || numelOf(shape) !== q * k) {
    throw nodeError(node, `attention mask of shape [${shape.join(", ")}] is not one causal [${String(S)}, ${String(S)}] mask`);
  }
  const st = stridesOf([q, k]);
  for (let i = 0; i < q; i++) {
    for (let j = 0; j < k; j++) {
      const m = mask.data[i * st[0]! + j]!;
      if (j <= i ? m !== 0 : m > -1e4) throw nodeError(node, `attention mask is not causal at (${i}, ${j}); padding and sliding-window masks are not supported`);
    }
  }
}

export function matchAttention(ctx: ImportContext, node: OnnxNode): Act | undefined {
  if (node.opType !== "MatMul") return undefined;
  const softmax = producedBy(ctx, node.inputs[0], "Softmax");
  if (!softmax) return undefined;
  const axis = softmax.attrs.get("axis");
  if (axis?.type === "int" && axis.value !== -1 && axis.value !== 3) throw nodeError(softmax, "softmax over other than the key axis");
  let scores = softmax.inputs[0] ?? "";
  let mask: ConstTensor | undefined;
  const add = producedBy(ctx, scores, "Add");
  if (add) {
    for (const [s, m] of bothOrders(add)) {
      const c = ctx.constOf(m);
      if (c && !ctx.constOf(s)) {
        mask = c;
        scores = s;
      }
    }
    if (!mask) throw nodeError(add, "the attention mask is not a constant (a padding mask input is not supported)");
  }
  let scale = 1;
  const scaled = producedBy(ctx, scores, "Mul", "Div");
  if (scaled) {
    const k = scalarOf(ctx, scaled.inputs[1]) ?? (scaled.opType === "Mul" ? scalarOf(ctx, scaled.inputs[0]) : undefined);
    if (k === undefined) throw nodeError(scaled, "the attention scale is not a constant scalar");
    scale = scaled.opType === "Mul" ? k : 1 / k;
    scores = scaled.inputs[scalarOf(ctx, scaled.inputs[1]) === undefined ? 1 : 0] ?? "";
  }
  const qk = producedBy(ctx, scores, "MatMul");
  // SDPA's decomposition may scale Kᵀ (by √scale, Q too) before the product: fold it into the scale
  let keys = qk?.inputs[1];
  const keyScale = producedBy(ctx, keys, "Mul", "Div");
  const ks = keyScale ? scalarOf(ctx, keyScale.inputs[1]) : undefined;
  if (keyScale && ks !== undefined) {
    scale *= keyScale.opType === "Mul" ? ks : 1 / ks;
    keys = keyScale.inputs[0];
  }
  const kt = producedBy(ctx, keys, "Transpose");
  const perm = kt?.attrs.get("perm");
  if (!qk || !kt || perm?.type !== "ints" || perm.value.join() !== "0,1,3,2") throw nodeError(node, "softmax · V whose scores are not Q · Kᵀ");
  const q = ctx.act(node, qk.inputs[0] ?? "");
  const k = unrepeated(ctx, node, kt.inputs[0] ?? "");
  const v = unrepeated(ctx, node, node.inputs[1] ?? "");
  const qv = headsView(q);
  const kv = headsView(k.a);
  const vv = headsView(v.a);
  if (!qv || !kv || !vv) throw nodeError(node, "Q, K and V are not [batch, heads, tokens, head_dim] views of the token batch");
  if (kv.heads !== vv.heads || kv.headDim !== qv.headDim || vv.headDim !== qv.headDim || kv.heads * k.rep !== qv.heads || v.rep !== k.rep) {
    throw nodeError(node, `Q (${qv.heads}×${qv.headDim}), K (${kv.heads}×${kv.headDim}) and V (${vv.heads}×${vv.headDim}) heads do not fit`);
  }
  const tok = q.dims.find((d) => d.kind === "tok");
  if (!mask) throw nodeError(node, "attention without a mask attends both ways; only causal attention maps to kiln's attention");
  if (tok?.kind === "tok") checkCausal(node, mask, tok.size);
  const cacheKey = ctx.nextCacheKey();
  const g = q.t.graph;
  g.registerKvLayer({ cacheKey, numKvHeads: kv.heads, headDim: kv.headDim, slidingWindow: undefined });
  const t = g.add({
    kind: "attention",
    q: q.t.id,
    k: k.a.t.id,
    v: v.a.t.id,
    cacheKey,
    numHeads: qv.heads,
    numKvHeads: kv.heads,
    headDim: qv.headDim,
    scale,
    slidingWindow: undefined,
    softcap: undefined,
    shape: q.t.shape,
    dtype: "f32",
  });
  return { kind: "act", t, dims: q.dims, physical: q.physical };
}
