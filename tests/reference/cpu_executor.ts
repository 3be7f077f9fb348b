/**
 * The CPU backend's executor: runs a graph node by node over one step's packed tokens.
 * GEMMs, norms, rotary and paged attention go to the native addon; cheap elementwise ops
 * run in JS over typed arrays.
 */
import { assertNever, numel, type Graph, type Node, type NodeOf, type SymbolicDim } from "../../compiler/ir.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import { KvCache, type StepInputs } from "../../runtime/backends/kv_cache.ts";
import type { ExecutorOptions, StepExecutor } from "../../runtime/backends/step_executor.ts";
import type { StateSlots } from "../../runtime/engine/state_slots.ts";
import { hostStateSlots, seqStates } from "../../runtime/backends/state_layers.ts";
import { headDecays, linearAttention } from "../../runtime/backends/cpu/linear_attention.ts";
import { fusedExperts, moeDims } from "../../runtime/backends/cpu/moe.ts";
import { shortConv } from "../../runtime/backends/cpu/short_conv.ts";
import { negExp, selectiveScan, ssdScan } from "../../runtime/backends/cpu/mamba.ts";
import type { NativeKernels } from "../../runtime/backends/cpu/native.ts";

type Value = Float32Array | Int32Array | WeightData;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export class CpuExecutor implements StepExecutor {
  readonly kv: KvCache;
  readonly statePool: StateSlots | undefined;

  constructor(
    readonly graph: Graph,
    private readonly weights: ReadonlyMap<string, WeightData>,
    private readonly native: NativeKernels,
    opts: ExecutorOptions,
  ) {
    this.kv = new KvCache(graph.kvLayers, opts.numBlocks, opts.blockSize);
    this.statePool = hostStateSlots(graph.stateLayers, opts.numStateSlots);
    for (const n of graph.nodes) {
      if (n.kind === "param" && !weights.has(n.name)) {
        throw new KilnError("TENSOR_MISSING", `parameter '${n.name}' has no loaded weight`);
      }
    }
  }

  get numBlocks(): number {
    return this.kv.numBlocks;
  }

  get blockSize(): number {
    return this.kv.blockSize;
  }

  dispose(): void {}

  /** Runs one step; returns the logits [S, vocab] (row-major). */
  run(step: StepInputs): Float32Array {
    const kv = this.kv;
    const sizes: Record<SymbolicDim, number> = { T: step.inputIds.length, S: step.logitsIndices.length };
    const values: Value[] = new Array<Value>(this.graph.nodes.length);
    const f32 = (id: number): Float32Array => {
      const v = values[id];
      if (!(v instanceof Float32Array)) throw new Error(`value ${id} is not an f32 activation`);
      return v;
    };
    const i32 = (id: number): Int32Array => {
      const v = values[id];
      if (!(v instanceof Int32Array)) throw new Error(`value ${id} is not an i32 activation`);
      return v;
    };
    const weight = (id: number): WeightData => {
      const v = values[id];
      if (v === undefined || v instanceof Float32Array || v instanceof Int32Array) throw new Error(`value ${id} is not a weight`);
      return v;
    };
    const f32Weight = (id: number): Float32Array => {
      const w = weight(id);
      if (w.dtype !== "f32") throw new Error(`weight ${id} must be stored as f32`);
      return w.data;
    };
    const rowsOf = (n: Node): number => numel(n.shape.slice(0, -1), sizes);

    for (const n of this.graph.nodes) {
      const out = (): Float32Array => new Float32Array(numel(n.shape, sizes));
      values[n.id] = this.exec(n, step, kv, { f32, i32, weight, f32Weight, out, rows: () => rowsOf(n) });
    }
    return f32(this.graph.outputs.logits);
  }

  private exec(
    n: Node,
    step: StepInputs,
    kv: KvCache,
    v: {
      f32: (id: number) => Float32Array;
      i32: (id: number) => Int32Array;
      weight: (id: number) => WeightData;
      f32Weight: (id: number) => Float32Array;
      out: () => Float32Array;
      rows: () => number;
    },
  ): Value {
    const k = this.native;
    switch (n.kind) {
      case "input":
        return n.name === "input_ids" ? step.inputIds : n.name === "positions" ? step.positions : step.logitsIndices;
      case "param":
        return this.weights.get(n.name)!;
      case "embedding":
        return embedding(v.weight(n.table), v.i32(n.ids), v.out(), n.shape[1] as number);
      case "linear": {
        const y = v.out();
        const w = v.weight(n.weight);
        const x = v.f32(n.x);
        const N = n.shape[1] as number;
        const K = x.length / Math.max(1, v.rows());
        const bias = n.bias === undefined ? null : v.f32Weight(n.bias);
        if (w.dtype === "f32") k.gemmF32(y, x, w.data, bias, v.rows(), N, K);
        else k.gemmBf16(y, x, w.data, bias, v.rows(), N, K);
        return y;
      }
      case "rms_norm": {
        const y = v.out();
        const cols = n.shape[n.shape.length - 1] as number;
        k.rmsNorm(y, v.f32(n.x), v.f32Weight(n.weight), v.rows(), cols, n.group, n.eps, n.weightOffset);
        return y;
      }
      case "layer_norm":
        return layerNorm(n, v.f32(n.x), v.f32Weight(n.weight), n.bias === undefined ? undefined : v.f32Weight(n.bias), v.out());
      case "binary":
        return binary(n, v.f32(n.a), v.f32(n.b), v.out());
      case "unary":
        return unary(n, v.f32(n.x), v.out());
      case "scale": {
        const x = v.f32(n.x);
        const y = v.out();
        for (let i = 0; i < y.length; i++) y[i] = x[i]! * n.factor;
        return y;
      }
      case "slice": {
        const x = v.f32(n.x);
        const y = v.out();
        const rows = v.rows();
        const cols = x.length / Math.max(1, rows);
        for (let r = 0; r < rows; r++) y.set(x.subarray(r * cols + n.start, r * cols + n.start + n.size), r * n.size);
        return y;
      }
      case "gather_rows": {
        const x = v.f32(n.x);
        const idx = v.i32(n.indices);
        const y = v.out();
        const cols = n.shape[1] as number;
        for (let s = 0; s < idx.length; s++) y.set(x.subarray(idx[s]! * cols, (idx[s]! + 1) * cols), s * cols);
        return y;
      }
      case "rope": {
        const y = v.out();
        y.set(v.f32(n.x));
        const T = v.rows();
        k.rope(y, v.i32(n.positions), this.invFreq(n), T, n.numHeads, n.headDim, n.rotaryDim, n.neox);
        return y;
      }
      case "attention":
        return this.attention(n, step, kv, v.f32(n.q), v.f32(n.k), v.f32(n.v), v.out());
      case "moe":
        return fusedExperts(k, v.out(), v.f32(n.x), v.weight(n.router), v.weight(n.w13), v.weight(n.w2), moeDims(n));
      case "short_conv": {
        const seqs = seqStates(step, this.statePool, n.stateKey, "conv");
        const bias = n.bias === undefined ? undefined : v.f32Weight(n.bias);
        return shortConv(v.out(), v.f32(n.x), v.f32Weight(n.weight), bias, seqs, n.shape[1] as number, n.kernelSize);
      }
      case "linear_attention": {
        const seqs = seqStates(step, this.statePool, n.stateKey, "kv");
        return linearAttention(v.out(), v.f32(n.qkv), headDecays(n.slopes), seqs, n.numHeads, n.headDim);
      }
      case "selective_scan": {
        const seqs = seqStates(step, this.statePool, n.stateKey, "ssm");
        const a = negExp(v.f32Weight(n.aLog));
        const dims = { dim: n.shape[1] as number, stateSize: n.stateSize };
        return selectiveScan(v.out(), v.f32(n.u), v.f32(n.delta), a, v.f32(n.b), v.f32(n.c), v.f32Weight(n.d), v.f32(n.z), seqs, dims);
      }
      case "ssd_scan": {
        const seqs = seqStates(step, this.statePool, n.stateKey, "ssm");
        const a = negExp(v.f32Weight(n.aLog));
        return ssdScan(v.out(), v.f32(n.x), v.f32(n.dt), v.f32Weight(n.dtBias), a, v.f32(n.b), v.f32(n.c), v.f32Weight(n.d), seqs, n);
      }
      default:
        return assertNever(n, "node kind");
    }
  }

  private readonly invFreqs = new Map<number, Float32Array>();
  private invFreq(n: NodeOf<"rope">): Float32Array {
    let f = this.invFreqs.get(n.id);
    if (!f) this.invFreqs.set(n.id, (f = Float32Array.from(n.invFreq)));
    return f;
  }

  private attention(
    n: NodeOf<"attention">,
    step: StepInputs,
    kv: KvCache,
    q: Float32Array,
    kNew: Float32Array,
    vNew: Float32Array,
    out: Float32Array,
  ): Float32Array {
    const layer = kv.layer(n.cacheKey);
    const a = step.attn;
    const T = step.inputIds.length;
    this.native.writeKv(layer.k, layer.v, kNew, vNew, a.slotMapping, T, n.numKvHeads, n.headDim);
    this.native.pagedAttention(
      out,
      q,
      layer.k,
      layer.v,
      a.queryStartLoc,
      a.seqLens,
      a.blockTables,
      a.maxBlocksPerSeq,
      kv.blockSize,
      n.numHeads,
      n.numKvHeads,
      n.headDim,
      n.scale,
      n.slidingWindow ?? 0, // the native ABI uses 0 for "no window"
      n.softcap ?? 0, // and 0 for "no soft-cap"
    );
    return out;
  }
}

function embedding(table: WeightData, ids: Int32Array, y: Float32Array, H: number): Float32Array {
  const vocab = table.data.length / H;
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id < 0 || id >= vocab) throw new KilnError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (${vocab})`);
    if (table.dtype === "f32") {
      y.set(table.data.subarray(id * H, (id + 1) * H), t * H);
    } else {
      const bits = new Uint32Array(y.buffer, y.byteOffset + t * H * 4, H);
      for (let j = 0; j < H; j++) bits[j] = table.data[id * H + j]! << 16;
    }
  }
  return y;
}

function binary(n: NodeOf<"binary">, a: Float32Array, b: Float32Array, y: Float32Array): Float32Array {
  const bl = b.length;
  if (n.op === "add") {
    if (bl === a.length) for (let i = 0; i < y.length; i++) y[i] = a[i]! + b[i]!;
    else for (let i = 0; i < y.length; i++) y[i] = a[i]! + b[i % bl]!;
  } else {
    if (bl === a.length) for (let i = 0; i < y.length; i++) y[i] = a[i]! * b[i]!;
    else for (let i = 0; i < y.length; i++) y[i] = a[i]! * b[i % bl]!;
  }
  return y;
}

function unary(n: NodeOf<"unary">, x: Float32Array, y: Float32Array): Float32Array {
  switch (n.op) {
    case "silu":
      for (let i = 0; i < y.length; i++) y[i] = x[i]! / (1 + Math.exp(-x[i]!));
      return y;
    case "gelu_tanh":
      for (let i = 0; i < y.length; i++) {
        const z = x[i]!;
        y[i] = 0.5 * z * (1 + Math.tanh(SQRT_2_OVER_PI * (z + 0.044715 * z * z * z)));
      }
      return y;
    case "gelu":
      for (let i = 0; i < y.length; i++) y[i] = 0.5 * x[i]! * (1 + erf(x[i]! / Math.SQRT2));
      return y;
    case "relu":
      for (let i = 0; i < y.length; i++) y[i] = x[i]! > 0 ? x[i]! : 0;
      return y;
    case "tanh":
      for (let i = 0; i < y.length; i++) y[i] = Math.tanh(x[i]!);
      return y;
    case "neg":
      for (let i = 0; i < y.length; i++) y[i] = -x[i]!;
      return y;
    case "sigmoid":
      for (let i = 0; i < y.length; i++) y[i] = 1 / (1 + Math.exp(-x[i]!));
      return y;
    default:
      return assertNever(n.op, "unary op");
  }
}

/** erf to near double precision: a Taylor series near 0, a continued fraction for erfc beyond. */
function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 2.5) {
    // Taylor series: converges quickly for |x| < 2.5
    let sum = t;
    let term = t;
    const x2 = t * t;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // continued fraction for erfc at large |x|
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (t + f);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
  return x < 0 ? erfc - 1 : 1 - erfc;
}

function layerNorm(
  n: NodeOf<"layer_norm">,
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | undefined,
  y: Float32Array,
): Float32Array {
  const C = w.length;
  const rows = x.length / C;
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let mean = 0;
    for (let j = 0; j < C; j++) mean += x[o + j]!;
    mean /= C;
    let varSum = 0;
    for (let j = 0; j < C; j++) varSum += (x[o + j]! - mean) ** 2;
    const inv = 1 / Math.sqrt(varSum / C + n.eps);
    for (let j = 0; j < C; j++) y[o + j] = (x[o + j]! - mean) * inv * w[j]! + (b ? b[j]! : 0);
  }
  return y;
}
