/**
 * Rotary position embedding. The inverse frequencies come from the config's rope settings
 * (default, linear, dynamic, llama3 scaling) and are baked into the graph as constants.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { ropeInvFreq, type RopeConfig } from "../rope_config.ts";

export class RotaryEmbedding {
  readonly invFreq: readonly number[];

  constructor(
    readonly headDim: number,
    readonly rotaryDim: number,
    rope: RopeConfig,
    /** true for HF's rotate_half layout (Llama family), false for interleaved pairs */
    readonly neox = true,
  ) {
    if (rotaryDim % 2 !== 0 || rotaryDim > headDim) {
      throw new Error(`rotary dim ${rotaryDim} must be even and at most the head dim ${headDim}`);
    }
    this.invFreq = Array.from(ropeInvFreq(rope, rotaryDim));
  }

  /** x [T, numHeads * headDim] rotated at positions [T] */
  apply(x: Tensor, positions: Tensor, numHeads: number): Tensor {
    const g = x.graph;
    x.expect([x.shape[0]!, numHeads * this.headDim], "rope input");
    if (positions.dtype !== "i32") g.fail("rope positions must be i32");
    return g.add({
      kind: "rope",
      x: x.id,
      positions: positions.id,
      numHeads,
      headDim: this.headDim,
      rotaryDim: this.rotaryDim,
      neox: this.neox,
      invFreq: this.invFreq,
      shape: x.shape,
      dtype: "f32",
    });
  }
}
