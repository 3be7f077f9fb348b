/**
 * A quantized layer's checkpoint-side tensors (packed int32 weights, zero points, scales, g_idx,
 * fp8 weights), kept in their stored element type until the layer's linear method dequantizes
 * them after loading. They are not graph parameters: `Module.parameters()` does not list them, the
 * weight loader fills them by checkpoint name like any parameter.
 *
 * Each source dim maps onto the layer's logical weight [out, in] through a `PackedAxis`, so one
 * fill routine shards every format by the same tensor-parallel rules as the float weight and
 * stacks q/k/v or gate/up pieces along the output axis:
 *
 *   AWQ qweight [in, out/8]          axes [in/1, out/8]
 *   GPTQ qweight [in/(32/bits), out] axes [in/(32/bits), out/1]
 *   scales [in/group, out]           axes [in/group, out/1]
 *   fp8 block scale [⌈out/bn⌉, ⌈in/bk⌉] axes [out/bn, in/bk]
 *   fp8 per-tensor scale [] or [1]   no axes, one value per shard
 */
import { KilnError } from "../../../runtime/engine/errors.ts";
import { bf16BitsToF32, DTYPE_SIZES, f16BitsToF32, isDType, type DType } from "../../../runtime/io/safetensors.ts";
import type { SourceTensor } from "../parameter.ts";

/**
 * One source dim: `per` logical features (of the output or the input) per stored element, or a
 * dim every rank keeps whole ("none": GPTQ's groups under desc_act, which follow g_idx).
 */
export type PackedAxis =
  | { readonly along: "out" | "in"; readonly per: number }
  | { readonly along: "none"; readonly extent: number };

/** One output piece of the layer (a q/k/v or gate/up shard, or the whole output as "*"). */
export interface OutputShard {
  readonly id: string;
  /** where its rows start in this rank's (stacked) output */
  readonly dstStart: number;
  /** its rows on this rank */
  readonly rows: number;
  /** where this rank's rows start in the checkpoint tensor */
  readonly srcStart: number;
  /** the checkpoint tensor's full output size */
  readonly srcRows: number;
}

/** The layer's logical weight and how this rank's part sits in the checkpoint's. */
export interface LinearGeometry {
  readonly prefix: string;
  readonly outPerRank: number;
  readonly inPerRank: number;
  /** the checkpoint's input features, and where this rank's start (row-parallel layers) */
  readonly fullIn: number;
  readonly inStart: number;
  readonly shards: readonly OutputShard[];
}

export interface PackedSpec {
  /** source dims, outermost first; [] for a scalar */
  readonly axes: readonly PackedAxis[];
  /** element types accepted (safetensors names) */
  readonly dtypes: readonly DType[];
  /**
   * one stored copy per output shard instead of one stacked tensor: per-tensor scales, g_idx
   * (q, k and v each carry their own)
   */
  readonly perShard?: boolean;
  /** a tensor a checkpoint may leave out (GPTQ's g_idx without desc_act, static input scales) */
  readonly optional?: boolean;
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

export class PackedParameter {
  /** stored bytes: [shards?][...local extents] in the source's element type */
  private bytes: Uint8Array | undefined = undefined;
  private storedDtype: DType | undefined = undefined;
  private readonly filled = new Set<string>();
  /** local extents per source axis (this rank's part, all shards stacked) */
  readonly localShape: readonly number[];

  constructor(
    readonly name: string,
    readonly spec: PackedSpec,
    readonly geometry: LinearGeometry,
    /** the graph parameter it is dequantized into, and its own name there (`qweight`), for load reports */
    readonly feeds: { readonly param: string; readonly label: string },
  ) {
    // format definitions, not checkpoint data: a broken one is a bug here
    if (spec.axes.length > 2) throw new Error(`${name}: packed tensors have at most two dims`);
    if (spec.perShard && spec.axes.some((a) => a.along === "out")) throw new Error(`${name}: a per-shard tensor cannot have an output axis`);
    this.localShape = spec.axes.map((a) => this.localExtent(a));
  }

  get shards(): readonly string[] {
    return this.geometry.shards.map((s) => s.id);
  }

  get missingShards(): string[] {
    return this.shards.filter((s) => !this.filled.has(s));
  }

  get loaded(): boolean {
    return this.bytes !== undefined && this.missingShards.length === 0;
  }

  get dtype(): DType | undefined {
    return this.storedDtype;
  }

  /** this rank's extent along one axis, all shards stacked */
  private localExtent(a: PackedAxis): number {
    const g = this.geometry;
    switch (a.along) {
      case "none":
        return a.extent;
      case "in":
        return ceilDiv(g.inPerRank, a.per);
      case "out":
        return ceilDiv(g.outPerRank, a.per);
    }
  }

  private invalid(src: SourceTensor, problem: string): KilnError {
    return new KilnError("QUANT_INVALID", `tensor '${src.name}' in ${src.origin} ${problem} (quantized parameter '${this.name}')`);
  }

  /** Copies this rank's window of `src` into the shard's place. */
  fill(src: SourceTensor, shardId: string | undefined): void {
    const g = this.geometry;
    const shard = g.shards.find((s) => s.id === (shardId ?? "*"));
    if (!shard) throw this.invalid(src, `maps to shard '${shardId ?? "*"}', which the layer does not have (shards: ${this.shards.join(", ")})`);
    if (!isDType(src.dtype) || !this.spec.dtypes.includes(src.dtype)) {
      throw this.invalid(src, `has dtype ${src.dtype}; expected ${this.spec.dtypes.join(" or ")}`);
    }
    if (this.storedDtype !== undefined && this.storedDtype !== src.dtype) {
      throw this.invalid(src, `has dtype ${src.dtype}, but another shard of it was ${this.storedDtype}`);
    }
    const expected = this.spec.axes.map((a) => (a.along === "none" ? a.extent : a.along === "in" ? ceilDiv(g.fullIn, a.per) : ceilDiv(shard.srcRows, a.per)));
    const squeeze = (s: readonly number[]): number[] => s.filter((d) => d !== 1);
    const got = squeeze(src.shape);
    const want = squeeze(expected);
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      throw this.invalid(src, `has shape [${src.shape.join(", ")}]; expected [${expected.join(", ")}]`);
    }
    // the window of the source this rank reads, per axis: [start, start + count)
    const windows = this.spec.axes.map((a, i) => {
      const extent = expected[i]!;
      if (a.along === "none") return { start: 0, count: extent, dst: 0, extent };
      if (a.along === "in") {
        if (g.inStart % a.per !== 0 || (g.inPerRank !== g.fullIn && g.inPerRank % a.per !== 0)) {
          throw this.invalid(src, `packs ${a.per} input features per element, which does not divide this rank's ${g.inPerRank} inputs`);
        }
        return { start: g.inStart / a.per, count: ceilDiv(g.inPerRank, a.per), dst: 0, extent };
      }
      const aligned = shard.srcStart % a.per === 0 && shard.dstStart % a.per === 0 && (shard.rows % a.per === 0 || g.shards.length === 1);
      if (!aligned) {
        throw this.invalid(src, `packs ${a.per} output features per element, which does not divide its shard '${shard.id}' of ${shard.rows} rows`);
      }
      return { start: shard.srcStart / a.per, count: ceilDiv(shard.rows, a.per), dst: shard.dstStart / a.per, extent };
    });
    const dtype = src.dtype;
    const size = DTYPE_SIZES[dtype];
    const shardIndex = g.shards.indexOf(shard);
    const local = this.localShape;
    const perShardNumel = local.reduce((a, b) => a * b, 1);
    if (!this.bytes) {
      this.bytes = new Uint8Array(perShardNumel * (this.spec.perShard ? g.shards.length : 1) * size);
      this.storedDtype = dtype;
    }
    const from = src.bytes();
    const dst = this.bytes;
    const base = this.spec.perShard ? shardIndex * perShardNumel : 0;
    // at most two axes: copy row by row of the (possibly 1-D or scalar) window
    const [w0, w1] = windows;
    if (w0 === undefined) {
      dst.set(from.subarray(0, size), base * size);
    } else if (w1 === undefined) {
      dst.set(from.subarray(w0.start * size, (w0.start + w0.count) * size), (base + w0.dst) * size);
    } else {
      const dstCols = local[1]!;
      for (let r = 0; r < w0.count; r++) {
        const s = ((w0.start + r) * w1.extent + w1.start) * size;
        dst.set(from.subarray(s, s + w1.count * size), (base + (w0.dst + r) * dstCols + w1.dst) * size);
      }
    }
    this.filled.add(shard.id);
  }

  private data(): Uint8Array {
    if (!this.bytes) throw new KilnError("QUANT_INVALID", `quantized parameter '${this.name}' was not loaded`);
    return this.bytes;
  }

  /** The stored values as int32 (packed words, g_idx). */
  int32(): Int32Array {
    const b = this.data();
    if (this.storedDtype === "I32") return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    throw new KilnError("QUANT_INVALID", `quantized parameter '${this.name}' holds ${this.storedDtype}, not I32`);
  }

  /** The stored bytes as one element each (fp8 bit patterns). */
  uint8(): Uint8Array {
    const b = this.data();
    if (DTYPE_SIZES[this.storedDtype ?? "F32"] === 1) return b;
    throw new KilnError("QUANT_INVALID", `quantized parameter '${this.name}' holds ${this.storedDtype}, not a one-byte type`);
  }

  /** The stored floats widened to f32 (scales). */
  float32(): Float32Array {
    const b = this.data();
    const buf = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    switch (this.storedDtype) {
      case "F32":
        return new Float32Array(buf);
      case "F16":
        return f16BitsToF32(new Uint16Array(buf));
      case "BF16":
        return bf16BitsToF32(new Uint16Array(buf));
      default:
        throw new KilnError("QUANT_INVALID", `quantized parameter '${this.name}' holds ${this.storedDtype}, not a float type`);
    }
  }

  /** Drops the stored bytes once the weight is dequantized (their memory goes back). */
  release(): void {
    this.bytes = undefined;
  }
}
