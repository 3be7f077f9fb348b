/**
 * Linear layers in vLLM's vocabulary. Each layer holds its rank's partition of the weight
 * ([out_per_rank, in_per_rank], PyTorch Linear layout) and a loader that narrows the full
 * checkpoint tensor to that partition. At tensor-parallel size 1 every partition is the whole.
 *
 * Each layer asks the model's quantization config (`ctx.quantization`) for its linear method:
 * a quantized layer holds its packed checkpoint tensors (quantization/linear_method.ts), sharded
 * and stacked by the layer's geometry, and its `weight` is made from them after loading.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import { Module, type ModelContext } from "./module.ts";
import { type Parameter, type WeightLoader } from "./parameter.ts";
import { QuantizedLinearWeights, quantizedFormatFor } from "./quantization/linear_method.ts";
import type { LinearGeometry } from "./quantization/packed_parameter.ts";

function divide(n: number, by: number, what: string): number {
  if (n % by !== 0) throw new KilnError("INVALID_ARGUMENT", `${what} ${n} is not divisible by tensor-parallel size ${by}`);
  return n / by;
}

export interface LinearOptions {
  readonly bias?: boolean;
}

/**
 * The layer's quantized weights when its linear method is a quantized one, else undefined (the
 * layer then declares its float weight itself).
 */
function quantizedWeights(ctx: ModelContext, geometry: LinearGeometry): QuantizedLinearWeights | undefined {
  const format = quantizedFormatFor(ctx.quantization, geometry);
  return format === undefined ? undefined : new QuantizedLinearWeights(format, geometry, ctx.weightStorage);
}

abstract class LinearBase extends Module {
  abstract readonly weight: Parameter;
  abstract readonly bias: Parameter | undefined;
  /** set when the layer is quantized: its packed tensors, dequantized into `weight` after loading */
  abstract readonly quant: QuantizedLinearWeights | undefined;

  constructor(
    prefix: string,
    readonly inPerRank: number,
    readonly outPerRank: number,
  ) {
    super(prefix);
  }

  /** x [R, in_per_rank] → [R, out_per_rank] */
  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => {
      x.expectF32("linear input");
      if (x.rank !== 2 || x.cols !== this.inPerRank) {
        x.graph.fail(`linear expects [rows, ${this.inPerRank}], got [${x.shape.join(", ")}]`);
      }
      const b = this.bias ? this.use(x.graph, this.bias) : undefined;
      if (this.quant) return this.quant.apply(x, b);
      const w = this.use(x.graph, this.weight);
      return x.graph.add({
        kind: "linear",
        x: x.id,
        weight: w.id,
        bias: b?.id,
        shape: [x.shape[0]!, this.outPerRank],
        dtype: "f32",
      });
    });
  }
}

/** The whole weight on every rank. */
export class ReplicatedLinear extends LinearBase {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly quant: QuantizedLinearWeights | undefined;
  constructor(prefix: string, inputSize: number, outputSize: number, ctx: ModelContext, opts: LinearOptions = {}) {
    super(prefix, inputSize, outputSize);
    this.quant = quantizedWeights(ctx, {
      prefix,
      outPerRank: outputSize,
      inPerRank: inputSize,
      fullIn: inputSize,
      inStart: 0,
      shards: [{ id: "*", dstStart: 0, rows: outputSize, srcStart: 0, srcRows: outputSize }],
    });
    this.weight = this.quant?.weight ?? this.param("weight", [outputSize, inputSize], ctx.weightStorage);
    this.bias = opts.bias ? this.param("bias", [outputSize]) : undefined;
  }
}

/** Output features split across ranks (dim 0 of the weight). */
export class ColumnParallelLinear extends LinearBase {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly quant: QuantizedLinearWeights | undefined;
  constructor(prefix: string, inputSize: number, outputSize: number, ctx: ModelContext, opts: LinearOptions = {}) {
    const per = divide(outputSize, ctx.parallel.tpSize, `${prefix}: output size`);
    super(prefix, inputSize, per);
    const rank = ctx.parallel.tpRank;
    const load: WeightLoader = (p, src) =>
      p.fill(src, { rowStart: 0, rows: per }, { dim: 0, start: rank * per, size: per }, "*");
    this.quant = quantizedWeights(ctx, {
      prefix,
      outPerRank: per,
      inPerRank: inputSize,
      fullIn: inputSize,
      inStart: 0,
      shards: [{ id: "*", dstStart: 0, rows: per, srcStart: rank * per, srcRows: outputSize }],
    });
    this.weight = this.quant?.weight ?? this.param("weight", [per, inputSize], ctx.weightStorage, load);
    this.bias = opts.bias ? this.param("bias", [per], "f32", load) : undefined;
  }
}

/**
 * Several column-parallel outputs stacked in one weight (gate_proj and up_proj → gate_up_proj);
 * the checkpoint's pieces load as shards "0", "1", ...
 */
export class MergedColumnParallelLinear extends LinearBase {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly quant: QuantizedLinearWeights | undefined;
  readonly sizesPerRank: readonly number[];
  constructor(prefix: string, inputSize: number, outputSizes: readonly number[], ctx: ModelContext, opts: LinearOptions = {}) {
    const tp = ctx.parallel.tpSize;
    const per = outputSizes.map((s) => divide(s, tp, `${prefix}: output size`));
    super(prefix, inputSize, per.reduce((a, b) => a + b, 0));
    this.sizesPerRank = per;
    const rank = ctx.parallel.tpRank;
    const shards = per.map((_, i) => String(i));
    const load: WeightLoader = (p, src, shard) => {
      const i = Number(shard);
      const size = per[i];
      if (shard === undefined || size === undefined) {
        throw new KilnError("TENSOR_UNUSED", `tensor '${src.name}' maps to '${p.name}' without a valid shard id (${shard})`);
      }
      const rowStart = per.slice(0, i).reduce((a, b) => a + b, 0);
      p.fill(src, { rowStart, rows: size }, { dim: 0, start: rank * size, size }, shard);
    };
    this.quant = quantizedWeights(ctx, {
      prefix,
      outPerRank: this.outPerRank,
      inPerRank: inputSize,
      fullIn: inputSize,
      inStart: 0,
      shards: per.map((size, i) => ({
        id: String(i),
        dstStart: per.slice(0, i).reduce((a, b) => a + b, 0),
        rows: size,
        srcStart: rank * size,
        srcRows: outputSizes[i]!,
      })),
    });
    this.weight = this.quant?.weight ?? this.param("weight", [this.outPerRank, inputSize], ctx.weightStorage, load, shards);
    this.bias = opts.bias ? this.param("bias", [this.outPerRank], "f32", load, shards) : undefined;
  }
}

export interface QkvSizes {
  readonly numHeads: number; // query heads on this rank
  readonly numKvHeads: number; // kv heads on this rank (replicated when tp > total kv heads)
  readonly headDim: number;
}

/**
 * q, k and v projections stacked in one weight; shards "q", "k", "v". A checkpoint that stores
 * them fused (GPT-2's c_attn: rows [q | k | v] of the full heads) loads without a shard id and
 * fills all three, each narrowed to this rank's heads.
 */
export class QKVParallelLinear extends LinearBase {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly quant: QuantizedLinearWeights | undefined;
  readonly sizes: QkvSizes;
  constructor(
    prefix: string,
    hiddenSize: number,
    headDim: number,
    totalHeads: number,
    totalKvHeads: number,
    ctx: ModelContext,
    opts: LinearOptions = {},
  ) {
    const { tpSize: tp, tpRank: rank } = ctx.parallel;
    const numHeads = divide(totalHeads, tp, `${prefix}: attention heads`);
    // kv heads are split when there are enough of them, else each is replicated on several ranks
    const numKvHeads = totalKvHeads >= tp ? divide(totalKvHeads, tp, `${prefix}: kv heads`) : 1;
    const kvRank = totalKvHeads >= tp ? rank : Math.floor((rank * totalKvHeads) / tp);
    const q = numHeads * headDim;
    const kv = numKvHeads * headDim;
    super(prefix, hiddenSize, q + 2 * kv);
    this.sizes = { numHeads, numKvHeads, headDim };
    const layout: Record<string, { rowStart: number; rows: number; srcStart: number }> = {
      q: { rowStart: 0, rows: q, srcStart: rank * q },
      k: { rowStart: q, rows: kv, srcStart: kvRank * kv },
      v: { rowStart: q + kv, rows: kv, srcStart: kvRank * kv },
    };
    // where each shard starts in a fused checkpoint tensor: [q of all heads | k | v]
    const fusedBase: Record<string, number> = { q: 0, k: totalHeads * headDim, v: (totalHeads + totalKvHeads) * headDim };
    const load: WeightLoader = (p, src, shard) => {
      const fill = (s: string, base: number): void => {
        const l = layout[s];
        if (!l) throw new KilnError("TENSOR_UNUSED", `tensor '${src.name}' maps to '${p.name}' with an unknown shard id '${s}'`);
        p.fill(src, { rowStart: l.rowStart, rows: l.rows }, { dim: 0, start: base + l.srcStart, size: l.rows }, s);
      };
      if (shard !== undefined) return fill(shard, 0);
      const fused = (totalHeads + 2 * totalKvHeads) * headDim;
      if (src.shape[0] !== fused) {
        throw new KilnError(
          "TENSOR_SHAPE",
          `tensor '${src.name}' in ${src.origin} has shape [${src.shape.join(", ")}]; parameter '${p.name}' reads it as fused q/k/v with ${fused} rows`,
        );
      }
      for (const s of ["q", "k", "v"]) fill(s, fusedBase[s]!);
    };
    // quantized: q, k and v come as separate checkpoint tensors (a fused c_attn is not a quantized layout)
    const srcRows: Record<string, number> = { q: totalHeads * headDim, k: totalKvHeads * headDim, v: totalKvHeads * headDim };
    this.quant = quantizedWeights(ctx, {
      prefix,
      outPerRank: this.outPerRank,
      inPerRank: hiddenSize,
      fullIn: hiddenSize,
      inStart: 0,
      shards: (["q", "k", "v"] as const).map((s) => ({ id: s, dstStart: layout[s]!.rowStart, rows: layout[s]!.rows, srcStart: layout[s]!.srcStart, srcRows: srcRows[s]! })),
    });
    this.weight = this.quant?.weight ?? this.param("weight", [this.outPerRank, hiddenSize], ctx.weightStorage, load, ["q", "k", "v"]);
    this.bias = opts.bias ? this.param("bias", [this.outPerRank], "f32", load, ["q", "k", "v"]) : undefined;
  }

  /** x [T, hidden] → q [T, numHeads · headDim], k and v [T, numKvHeads · headDim] (this rank's heads) */
  forwardQkv(x: Tensor): [Tensor, Tensor, Tensor] {
    const { numHeads, numKvHeads, headDim } = this.sizes;
    const [q, k, v] = this.forward(x).split([numHeads * headDim, numKvHeads * headDim, numKvHeads * headDim]);
    return [q!, k!, v!];
  }
}

/**
 * Input features split across ranks (dim 1 of the weight); partial outputs are summed across
 * ranks (an all-reduce, the identity at size 1). The bias is added once, after the reduction.
 */
export class RowParallelLinear extends LinearBase {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly quant: QuantizedLinearWeights | undefined;
  constructor(prefix: string, inputSize: number, outputSize: number, ctx: ModelContext, opts: LinearOptions = {}) {
    const per = divide(inputSize, ctx.parallel.tpSize, `${prefix}: input size`);
    super(prefix, per, outputSize);
    const rank = ctx.parallel.tpRank;
    const load: WeightLoader = (p, src) =>
      p.fill(src, { rowStart: 0, rows: outputSize }, { dim: 1, start: rank * per, size: per }, "*");
    this.quant = quantizedWeights(ctx, {
      prefix,
      outPerRank: outputSize,
      inPerRank: per,
      fullIn: inputSize,
      inStart: rank * per,
      shards: [{ id: "*", dstStart: 0, rows: outputSize, srcStart: 0, srcRows: outputSize }],
    });
    this.weight = this.quant?.weight ?? this.param("weight", [outputSize, per], ctx.weightStorage, load);
    this.bias = opts.bias ? this.param("bias", [outputSize]) : undefined;
  }
}
