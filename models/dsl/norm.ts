/** Normalization layers. */
import type { Tensor } from "../../compiler/trace.ts";
import { Module } from "./module.ts";
import type { Parameter } from "./parameter.ts";

export interface RMSNormOptions {
  /** Gemma scales by (1 + w): pass 1 */
  readonly weightOffset?: number;
}

/** RMS norm over the last `size` elements; applied per group when the row is a multiple of size (per-head q/k norm). */
export class RMSNorm extends Module {
  readonly weight: Parameter;
  readonly weightOffset: number;
  constructor(
    prefix: string,
    readonly size: number,
    readonly eps: number,
    opts: RMSNormOptions = {},
  ) {
    super(prefix);
    this.weight = this.param("weight", [size]);
    this.weightOffset = opts.weightOffset ?? 0;
  }

  /** x [R, k * size] → same shape */
  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      x.expectF32("rms_norm");
      if (x.rank !== 2 || x.cols % this.size !== 0) {
        x.graph.fail(`rms_norm of size ${this.size} cannot normalize [${x.shape.join(", ")}]`);
      }
      const w = this.use(x.graph, this.weight);
      return x.graph.add({
        kind: "rms_norm",
        x: x.id,
        weight: w.id,
        eps: this.eps,
        group: this.size,
        weightOffset: this.weightOffset,
        shape: x.shape,
        dtype: "f32",
      });
    });
  }
}

export class LayerNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  constructor(
    prefix: string,
    readonly size: number,
    readonly eps: number,
    opts: { readonly bias?: boolean } = {},
  ) {
    super(prefix);
    this.weight = this.param("weight", [size]);
    this.bias = opts.bias === false ? undefined : this.param("bias", [size]);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      x.expect([x.shape[0]!, this.size], "layer_norm");
      const w = this.use(x.graph, this.weight);
      const b = this.bias ? this.use(x.graph, this.bias) : undefined;
      return x.graph.add({ kind: "layer_norm", x: x.id, weight: w.id, bias: b?.id, eps: this.eps, shape: x.shape, dtype: "f32" });
    });
  }
}
