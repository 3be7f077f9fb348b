/**
 * The linear method (vLLM's LinearMethodBase): what a parallel linear layer asks to create its
 * parameters and to apply its matmul. A model reaches it through its ModelContext's
 * `quantization`; layers the config excludes, and every layer of a float checkpoint, keep the
 * unquantized method (the float `weight` [out, in] and its loaders in linear.ts).
 *
 * A quantized layer declares its checkpoint tensors (packed weights, zeros, scales, g_idx) under
 * its own prefix, named as in the checkpoint and sharded and stacked by the layer's geometry
 * (packed_parameter.ts). After loading, `processWeightsAfterLoading` dequantizes them into the
 * layer's graph weight [out_per_rank, in_per_rank] (f32, or bf16 when the model stores bf16) and
 * frees them; `apply` is then the f32 `linear` op, exactly as for a float layer. This is the CPU
 * reference path: a quantized-matmul op in the IR would change `apply` and keep the packed data.
 */
import type { Tensor } from "../../../compiler/trace.ts";
import type { StorageDType } from "../../../compiler/ir.ts";
import { KilnError } from "../../../runtime/engine/errors.ts";
import { Module } from "../module.ts";
import { Parameter, type WeightLoader } from "../parameter.ts";
import { awqFormat } from "./awq.ts";
import { isLayerSkipped, type QuantizationConfig } from "./config.ts";
import { fp8Format } from "./fp8.ts";
import { gptqFormat } from "./gptq.ts";
import { PackedParameter, type LinearGeometry, type PackedSpec } from "./packed_parameter.ts";

/** One format's checkpoint tensors (by their name under the layer) and how they dequantize. */
export interface QuantizedFormat {
  /** for messages: "awq", "gptq 4-bit", "fp8 (block)" */
  readonly name: string;
  readonly tensors: Readonly<Record<string, PackedSpec>>;
  /** W [outPerRank, inPerRank] f32 from the loaded tensors (`t(name)` gives one) */
  dequantize(t: (name: string) => PackedParameter): Float32Array;
}

/** The quantized format of the layer at `geometry.prefix`, or undefined when it stays unquantized. */
export function quantizedFormatFor(quant: QuantizationConfig | undefined, geometry: LinearGeometry): QuantizedFormat | undefined {
  if (quant === undefined || isLayerSkipped(quant, geometry.prefix)) return undefined;
  switch (quant.method) {
    case "fp8":
      return fp8Format(quant, geometry);
    case "awq":
      return awqFormat(quant, geometry);
    case "gptq":
      return gptqFormat(quant, geometry);
  }
}

const derivedLoader: WeightLoader = (p, src) => {
  throw new KilnError("QUANT_INVALID", `tensor '${src.name}' in ${src.origin} is a float weight, but '${p.name}' belongs to a quantized layer (it is made from the layer's packed tensors)`);
};

/** How a quantized weight is named and shaped when it is not a plain linear layer's. */
export interface QuantizedNaming {
  /** put before each tensor's name: fused experts' `w13_` (`experts.w13_qweight`, `experts.w13_weight`) */
  readonly tensorPrefix?: string;
  /** the graph weight's shape, when not [out, in] (stacked experts [E, 2I, H]: the same data as [E·2I, H]) */
  readonly weightShape?: readonly number[];
}

/**
 * A quantized linear layer's weights: its packed checkpoint tensors and the graph weight they
 * dequantize into. Lives under the layer's own prefix, so its tensors are `<prefix>.qweight` etc.
 */
export class QuantizedLinearWeights extends Module {
  /** the graph weight [outPerRank, inPerRank], filled after loading */
  readonly weight: Parameter;
  readonly packed: readonly PackedParameter[];

  constructor(
    readonly format: QuantizedFormat,
    readonly geometry: LinearGeometry,
    storage: StorageDType,
    naming: QuantizedNaming = {},
  ) {
    super(geometry.prefix);
    this.tensorPrefix = naming.tensorPrefix ?? "";
    const shape = naming.weightShape ?? [geometry.outPerRank, geometry.inPerRank];
    this.weight = new Parameter(this.join(`${this.tensorPrefix}weight`), shape, storage, ["*"], derivedLoader, "derived");
    this.packed = Object.entries(format.tensors).map(
      ([name, spec]) => new PackedParameter(this.join(`${this.tensorPrefix}${name}`), spec, geometry, { param: this.weight.name, label: name }),
    );
  }

  private readonly tensorPrefix: string;

  override processWeightsAfterLoading(): void {
    const byName = (name: string): PackedParameter => {
      const full = this.join(`${this.tensorPrefix}${name}`);
      const p = this.packed.find((x) => x.name === full);
      if (!p?.loaded) throw new KilnError("QUANT_INVALID", `quantized layer '${this.prefix}' (${this.format.name}) has no tensor '${full}'`);
      return p;
    };
    this.weight.setF32(this.format.dequantize(byName));
    for (const p of this.packed) p.release();
  }

  /** x [R, in_per_rank] → [R, out_per_rank]: the f32 linear on the dequantized weight */
  apply(x: Tensor, bias: Tensor | undefined): Tensor {
    const w = this.use(x.graph, this.weight);
    return x.graph.add({ kind: "linear", x: x.id, weight: w.id, bias: bias?.id, shape: [x.shape[0]!, this.geometry.outPerRank], dtype: "f32" });
  }
}
