/**
 * What the kernel parity cases share: results, seeded random inputs, the comparison, and the
 * device buffers a case may ask for.
 */
import type { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import type { DevicePtr } from "../../runtime/backends/cuda/device.ts";
import { f32ToF16 } from "../../runtime/io/artifact_weights.ts";
import { f16BitsToF32 } from "../../runtime/io/safetensors.ts";

export interface ParityResult {
  readonly name: string;
  /** worst error: |got − ref| / max(1, |ref|), or / Σ|x·w| for GEMMs */
  readonly maxErr: number;
  readonly tol: number;
  readonly ok: boolean;
}

export interface ParityCase {
  readonly name: string;
  run(b: CudaBackend, s: DeviceScratch): ParityResult;
}

/** Device buffers for one case, freed when it ends. `out` buffers start as NaN (or -7). */
export interface DeviceScratch {
  f32(x: Float32Array): DevicePtr;
  i32(x: Int32Array): DevicePtr;
  u16(x: Uint16Array): DevicePtr;
  out(n: number): DevicePtr;
  outI32(n: number): DevicePtr;
  read(p: DevicePtr, n: number): Float32Array;
  readI32(p: DevicePtr, n: number): Int32Array;
  readU16(p: DevicePtr, n: number): Uint16Array;
}

/** mulberry32: seeded, so a failure reproduces */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomF32(n: number, r: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

export function randomInts(n: number, below: number, r: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(r() * below));
}

export function toBf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(bits, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
}

/** f32 values rounded to the nearest f16 bit patterns, ties to even (the host's own converter) */
export function toF16(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, f32ToF16);
}

/** f16 bit patterns widened to f32 (exact) */
export function fromF16(bits: Uint16Array): Float32Array {
  return f16BitsToF32(bits);
}

/** bf16 bit patterns widened to f32 (exact) */
export function fromBf16(bits: Uint16Array): Float32Array {
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

export function compare(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, scale?: ArrayLike<number>): ParityResult {
  let worst = got.length === ref.length ? 0 : Infinity;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const s = scale === undefined ? Math.max(1, Math.abs(r)) : Math.max(scale[i]!, 1e-30);
    const e = Math.abs(got[i]! - r) / s;
    if (!(e <= worst)) worst = e; // NaN counts as the worst
  }
  return { name, maxErr: worst, tol, ok: worst <= tol };
}
