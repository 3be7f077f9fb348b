/**
 * The causal depthwise convolution of gated short-conv layers (LFM2) as a custom op. A mamba-like
 * layer: each sequence keeps a conv state of its last L − 1 inputs, [L − 1, D] (vLLM's
 * get_short_conv_state_shape), updated in place at every step instead of growing like a KV
 * cache. The weight keeps PyTorch's depthwise Conv1d layout [D, 1, L] under `<prefix>.weight`.
 *
 *   x [T, D] → out [T, D]:  out[t, c] = bias[c] + Σ_j w[c, j] · x[t − (L − 1) + j, c]
 */
import type { StateTensorSpec } from "../../compiler/ir.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { Module } from "./module.ts";
import type { Parameter } from "./parameter.ts";

export class CausalShortConv extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;

  constructor(
    prefix: string,
    readonly dim: number,
    readonly kernelSize: number,
    opts: { readonly bias?: boolean } = {},
  ) {
    super(prefix);
    if (!(Number.isInteger(kernelSize) && kernelSize >= 2)) throw new Error(`${prefix}: conv kernel size ${kernelSize} must be at least 2`);
    this.weight = this.param("weight", [dim, 1, kernelSize]);
    this.bias = opts.bias ? this.param("bias", [dim]) : undefined;
  }

  /** The per-sequence state of a layer: its last L − 1 inputs, "conv" [L − 1, D], f32. */
  static stateTensors(dim: number, kernelSize: number): StateTensorSpec[] {
    return [{ name: "conv", shape: [kernelSize - 1, dim], dtype: "f32" }];
  }

  forward(x: Tensor): Tensor {
    const g = x.graph;
    return this.scoped(g, () => {
      x.expectF32("short conv input");
      x.expect([x.shape[0]!, this.dim], "short conv input");
      const w = this.use(g, this.weight);
      const b = this.bias ? this.use(g, this.bias) : undefined;
      g.registerStateLayer({ stateKey: this.prefix, tensors: CausalShortConv.stateTensors(this.dim, this.kernelSize) });
      return g.add({
        kind: "short_conv",
        x: x.id,
        weight: w.id,
        bias: b?.id,
        stateKey: this.prefix,
        kernelSize: this.kernelSize,
        shape: x.shape,
        dtype: "f32",
      });
    });
  }
}
