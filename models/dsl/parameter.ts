/**
 * Parameters and the weight loaders that fill them from checkpoint tensors.
 *
 * As in vLLM, a parameter carries its own loader: a stacked parameter (qkv, gate_up) is filled
 * shard by shard, and a tensor-parallel layer narrows the full checkpoint tensor to its rank's
 * part. Loaders check shapes and dtypes and name the checkpoint tensor when they refuse one.
 */
import { KilnError } from "../../runtime/engine/errors.ts";
import type { StorageDType } from "../../compiler/ir.ts";

export type WeightData =
  | { readonly dtype: "f32"; readonly data: Float32Array }
  | { readonly dtype: "bf16"; readonly data: Uint16Array };

/** A checkpoint tensor as a loader sees it; data is read only when asked for. */
export interface SourceTensor {
  readonly name: string;
  /** where it came from, for error messages (a file path) */
  readonly origin: string;
  readonly shape: readonly number[];
  /** safetensors dtype name: F32, F16, BF16, I32, ... */
  readonly dtype: string;
  f32(): Float32Array;
  bf16(): Uint16Array;
  /** the raw little-endian element bytes, for tensors kept in their stored type (packed quantized weights) */
  bytes(): Uint8Array;
}

export const FLOAT_SOURCE_DTYPES = ["F32", "F16", "BF16", "F64"] as const;

/** Which slice of the parameter a shard fills: rows [rowStart, rowStart + rows) of dim 0. */
export interface ShardTarget {
  readonly rowStart: number;
  readonly rows: number;
  /**
   * The shape of one row when rows are not the parameter's dim 0: stacked experts [E, 2I, H]
   * fill as rows of [H] (default: the parameter's shape without dim 0).
   */
  readonly rowShape?: readonly number[];
}

/** Which part of the source tensor this rank reads: along `dim`, [start, start + size). */
export interface SourceNarrow {
  readonly dim: 0 | 1;
  readonly start: number;
  readonly size: number;
}

export type WeightLoader = (param: Parameter, src: SourceTensor, shard: string | undefined) => void;

/**
 * Where a parameter's data comes from: a checkpoint tensor ("checkpoint"), or the load step after
 * every tensor is in ("derived": a quantized layer's dequantized weight, made from its packed
 * tensors by its linear method; no checkpoint tensor maps to it).
 */
export type ParameterOrigin = "checkpoint" | "derived";

export class Parameter {
  data: WeightData | undefined = undefined;
  private readonly filled = new Set<string>();

  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    readonly storage: StorageDType,
    /** shard ids that must all be loaded; `["*"]` for an unstacked parameter */
    readonly shards: readonly string[],
    readonly loader: WeightLoader,
    readonly origin: ParameterOrigin = "checkpoint",
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get missingShards(): string[] {
    return this.shards.filter((s) => !this.filled.has(s));
  }

  markFilled(shard: string): void {
    this.filled.add(shard);
  }

  /** Sets the whole data at once (a derived parameter, made after loading): `values` has numel elements. */
  setF32(values: Float32Array): void {
    if (values.length !== this.numel) throw new Error(`parameter '${this.name}': ${values.length} values for [${this.shape.join(", ")}]`);
    if (this.storage === "bf16") {
      const bits = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) bits[i] = f32ToBf16(values[i]!);
      this.data = { dtype: "bf16", data: bits };
    } else {
      this.data = { dtype: "f32", data: values };
    }
    for (const s of this.shards) this.markFilled(s);
  }

  /** Copies (a narrowed part of) `src` into rows [target.rowStart, +target.rows). */
  fill(src: SourceTensor, target: ShardTarget, narrow: SourceNarrow | undefined, shard: string): void {
    if (!(FLOAT_SOURCE_DTYPES as readonly string[]).includes(src.dtype)) {
      throw new KilnError(
        "SAFETENSORS_DTYPE",
        `tensor '${src.name}' in ${src.origin} has dtype ${src.dtype}; parameter '${this.name}' needs a floating-point tensor`,
      );
    }
    const rowShape = target.rowShape ?? this.shape.slice(1);
    const rowLen = rowShape.reduce((a, b) => a * b, 1);
    if ((target.rowStart + target.rows) * rowLen > this.numel) {
      throw new Error(`parameter '${this.name}': rows [${target.rowStart}, ${target.rowStart + target.rows}) of [${rowShape.join(", ")}] overrun it`);
    }
    const srcShape = [...src.shape];
    if (narrow) srcShape[narrow.dim] = narrow.size;
    const expected = [target.rows, ...rowShape];
    const ok = srcShape.length === expected.length && srcShape.every((d, i) => d === expected[i]);
    if (!ok) {
      const what = narrow ? ` (narrowed along dim ${narrow.dim} to ${narrow.size})` : "";
      throw new KilnError(
        "TENSOR_SHAPE",
        `tensor '${src.name}' in ${src.origin} has shape [${src.shape.join(", ")}]${what}; ` +
          `parameter '${this.name}'${shard === "*" ? "" : ` shard ${shard}`} expects [${expected.join(", ")}]`,
      );
    }
    if (narrow && (narrow.start < 0 || narrow.start + narrow.size > (src.shape[narrow.dim] ?? 0))) {
      throw new KilnError("TENSOR_SHAPE", `tensor '${src.name}' in ${src.origin} is too small to narrow for '${this.name}'`);
    }
    const useBf16 = this.storage === "bf16" && src.dtype === "BF16";
    const from: Float32Array | Uint16Array = useBf16 ? src.bf16() : src.f32();
    if (!this.data) {
      this.data =
        this.storage === "bf16"
          ? { dtype: "bf16", data: new Uint16Array(this.numel) }
          : { dtype: "f32", data: new Float32Array(this.numel) };
    }
    const dst = this.data.data;
    const srcCols = src.shape.length > 1 ? src.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const put = (dstOff: number, srcOff: number, len: number): void => {
      if (dst instanceof Uint16Array && !(from instanceof Uint16Array)) {
        for (let i = 0; i < len; i++) dst[dstOff + i] = f32ToBf16(from[srcOff + i]!);
      } else {
        dst.set(from.subarray(srcOff, srcOff + len), dstOff);
      }
    };
    const dstBase = target.rowStart * rowLen;
    if (!narrow) {
      put(dstBase, 0, target.rows * rowLen);
    } else if (narrow.dim === 0) {
      put(dstBase, narrow.start * srcCols, target.rows * rowLen);
    } else {
      // narrowing columns of a 2-D tensor: copy row by row
      for (let r = 0; r < target.rows; r++) put(dstBase + r * rowLen, r * srcCols + narrow.start, rowLen);
    }
    this.markFilled(shard);
  }
}

const f32View = new Float32Array(1);
const u32View = new Uint32Array(f32View.buffer);
/** Round-to-nearest-even f32 → bf16 bits (only used when asked to store f32 weights as bf16). */
export function f32ToBf16(x: number): number {
  f32View[0] = x;
  const u = u32View[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0; // NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Loader for a parameter that takes the whole checkpoint tensor. */
export const defaultLoader: WeightLoader = (param, src) => {
  param.fill(src, { rowStart: 0, rows: param.shape[0] ?? 1 }, undefined, "*");
};
