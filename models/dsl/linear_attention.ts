/**
 * Lightning (linear) attention (MiniMax) as a custom op. A mamba-like layer: each sequence keeps
 * one KV state per head, [heads, D, D], decayed by exp(−slope_h) per token and updated in place
 * (vLLM's MiniMax linear-attention state). The slopes are baked into the graph as constants.
 *
 *   qkv [T, heads · 3D] (per head [q | k | v]) → out [T, heads · D]
 */
import type { StateTensorSpec } from "../../compiler/ir.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { Module } from "./module.ts";

/**
 * MiniMax's per-head decay rates for layer `layer` of `numLayers`, in float32 as HF computes them:
 * base^(h + 1) · (1 − layer / (numLayers − 1 + 1e-5) + 1e-5), base = 2^(−8 / heads).
 */
export function lightningSlopes(numHeads: number, layer: number, numLayers: number): number[] {
  const base = 1 / 2 ** (8 / numHeads);
  const factor = 1 - layer / (numLayers - 1 + 1e-5) + 1e-5;
  return Array.from({ length: numHeads }, (_, h) => Math.fround(Math.fround(base ** (h + 1)) * Math.fround(factor)));
}

export class LinearAttention extends Module {
  constructor(
    prefix: string,
    readonly numHeads: number,
    readonly headDim: number,
    readonly slopes: readonly number[],
  ) {
    super(prefix);
    if (slopes.length !== numHeads) throw new Error(`${prefix}: ${slopes.length} decay rates for ${numHeads} heads`);
  }

  /** The per-sequence state of a layer: one KV matrix per head, "kv" [heads, D, D], f32. */
  static stateTensors(numHeads: number, headDim: number): StateTensorSpec[] {
    return [{ name: "kv", shape: [numHeads, headDim, headDim], dtype: "f32" }];
  }

  forward(qkv: Tensor): Tensor {
    const g = qkv.graph;
    return this.scoped(g, () => {
      const T = qkv.shape[0]!;
      qkv.expectF32("linear attention qkv");
      qkv.expect([T, this.numHeads * 3 * this.headDim], "linear attention qkv");
      g.registerStateLayer({ stateKey: this.prefix, tensors: LinearAttention.stateTensors(this.numHeads, this.headDim) });
      return g.add({
        kind: "linear_attention",
        qkv: qkv.id,
        stateKey: this.prefix,
        numHeads: this.numHeads,
        headDim: this.headDim,
        slopes: this.slopes,
        shape: [T, this.numHeads * this.headDim],
        dtype: "f32",
      });
    });
  }
}
