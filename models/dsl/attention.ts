/**
 * Attention as a custom op. The layer owns no parameters: it names its KV cache by its prefix,
 * and at run time reads and writes that cache through the step's block tables (paged attention).
 */
import type { Tensor } from "../../compiler/trace.ts";
import { Module } from "./module.ts";

export interface AttentionOptions {
  /** keys further back than this many positions are masked (Mistral, Gemma local layers) */
  readonly slidingWindow?: number | undefined;
  /** scores become cap · tanh(score / cap) (Gemma 2) */
  readonly softcap?: number | undefined;
}

export class Attention extends Module {
  readonly slidingWindow: number | undefined;
  readonly softcap: number | undefined;

  constructor(
    prefix: string,
    readonly numHeads: number,
    readonly headDim: number,
    readonly scale: number,
    readonly numKvHeads: number,
    opts: AttentionOptions = {},
  ) {
    super(prefix);
    if (numHeads % numKvHeads !== 0) {
      throw new Error(`${prefix}: ${numHeads} query heads cannot share ${numKvHeads} kv heads evenly`);
    }
    this.slidingWindow = opts.slidingWindow;
    this.softcap = opts.softcap;
  }

  /** q [T, heads * D], k and v [T, kvHeads * D] → [T, heads * D] */
  forward(q: Tensor, k: Tensor, v: Tensor): Tensor {
    const g = q.graph;
    return this.scoped(g, () => {
      const T = q.shape[0]!;
      q.expect([T, this.numHeads * this.headDim], "attention q");
      k.expect([T, this.numKvHeads * this.headDim], "attention k");
      v.expect([T, this.numKvHeads * this.headDim], "attention v");
      g.registerKvLayer({
        cacheKey: this.prefix,
        numKvHeads: this.numKvHeads,
        headDim: this.headDim,
        slidingWindow: this.slidingWindow,
      });
      return g.add({
        kind: "attention",
        q: q.id,
        k: k.id,
        v: v.id,
        cacheKey: this.prefix,
        numHeads: this.numHeads,
        numKvHeads: this.numKvHeads,
        headDim: this.headDim,
        scale: this.scale,
        slidingWindow: this.slidingWindow,
        softcap: this.softcap,
        shape: q.shape,
        dtype: "f32",
      });
    });
  }
}
