/**
 * A constant ONNX tensor as the importer holds it: initializers, Constant nodes and everything
 * folded from them at import (shapes, ranges, masks). Floating-point data is kept as float32
 * (what kiln computes in); integer and boolean data as float64, exact for every int64 a shape or
 * an index holds (|x| < 2^53).
 */
export const ONNX_DTYPES = ["f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"] as const;
export type OnnxDtype = (typeof ONNX_DTYPES)[number];

export function isFloatDtype(d: OnnxDtype): boolean {
  return d === "f32" || d === "f16" || d === "bf16" || d === "f64";
}

export interface ConstTensor {
  readonly dtype: OnnxDtype;
  readonly shape: readonly number[];
  /** row-major; float32 for float dtypes, float64 for integers and booleans */
  readonly data: Float32Array | Float64Array;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function makeConst(dtype: OnnxDtype, shape: readonly number[], values: ArrayLike<number>): ConstTensor {
  const data = isFloatDtype(dtype) ? Float32Array.from(values) : Float64Array.from(values);
  return { dtype, shape: [...shape], data };
}

/** The values as plain numbers (shape arithmetic). */
export function constValues(t: ConstTensor): number[] {
  return Array.from(t.data);
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** NumPy broadcasting of two shapes; undefined when they do not broadcast. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** `t` broadcast to `shape` (which it must broadcast to), as a dense array. */
export function broadcastTo(t: ConstTensor, shape: readonly number[]): ConstTensor {
  const n = numelOf(shape);
  const outStrides = stridesOf(shape);
  const off = shape.length - t.shape.length;
  const inStrides = stridesOf(t.shape);
  const out = isFloatDtype(t.dtype) ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let src = 0;
    let rem = i;
    for (let d = 0; d < shape.length; d++) {
      const idx = Math.floor(rem / outStrides[d]!);
      rem -= idx * outStrides[d]!;
      const sd = d - off;
      if (sd >= 0 && t.shape[sd] !== 1) src += idx * inStrides[sd]!;
    }
    out[i] = t.data[src]!;
  }
  return { dtype: t.dtype, shape: [...shape], data: out };
}

/** Axes of `t` along which its values change (a size-1 axis never does). */
export function varyingAxes(t: ConstTensor): number[] {
  const strides = stridesOf(t.shape);
  const axes: number[] = [];
  for (let d = 0; d < t.shape.length; d++) {
    const size = t.shape[d]!;
    if (size === 1) continue;
    let varies = false;
    for (let i = 0; i < t.data.length && !varies; i++) {
      const idx = Math.floor(i / strides[d]!) % size;
      if (idx !== 0 && t.data[i] !== t.data[i - idx * strides[d]!]) varies = true;
    }
    if (varies) axes.push(d);
  }
  return axes;
}
