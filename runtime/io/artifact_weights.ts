/**
 * An engine artifact's weights and weight map: the model's parameters (already re-laid out by weight loading:
 * fused qkv_proj, gate_up_proj) converted to the storage the target runs with, in one
 * safetensors file named by parameter.
 *
 *   CPU:  matrix weights f32 or bf16 (what the native GEMM reads), vectors (norms, biases) f32
 *   CUDA: each parameter as the compiled program stores it: weight matrices (GEMM weights,
 *         embedding tables) in the artifact's dtype (f32, bf16 or f16), the others in f32
 */
import { assertNever } from "../../compiler/ir.ts";
import type { LoadReport } from "../../models/dsl/load_weights.ts";
import { f32ToBf16, type WeightData } from "../../models/dsl/parameter.ts";
import { KilnError } from "../engine/errors.ts";
import { DTYPE_SIZES, SafetensorsFile } from "./safetensors.ts";
import { writeSafetensors, type TensorToWrite } from "./safetensors_writer.ts";
import type { FloatDtype } from "../../compiler/dtype.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round-to-nearest-even f32 → IEEE half bits (overflow → ±inf, tiny → subnormal or ±0). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000; // the implicit leading bit becomes explicit in a subnormal
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // a carry may round up to inf: correct
  return sign | half;
}

function asF32(w: WeightData): Float32Array {
  if (w.dtype === "f32") return w.data;
  const out = new Float32Array(w.data.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < w.data.length; i++) bits[i] = w.data[i]! << 16;
  return out;
}

/** One parameter as it is stored for the target. */
export function tensorFor(name: string, shape: readonly number[], w: WeightData, cuda: boolean, dtype: FloatDtype): TensorToWrite {
  if (!cuda || dtype === w.dtype) {
    return w.dtype === "f32" ? { name, dtype: "F32", shape, data: w.data } : { name, dtype: "BF16", shape, data: w.data };
  }
  const x = asF32(w);
  switch (dtype) {
    case "f32":
      return { name, dtype: "F32", shape, data: x };
    case "bf16":
      return { name, dtype: "BF16", shape, data: Uint16Array.from(x, f32ToBf16) };
    case "f16":
      return { name, dtype: "F16", shape, data: Uint16Array.from(x, f32ToF16) };
    default:
      return assertNever(dtype, "storage dtype");
  }
}

/**
 * Writes the weights file. `shapes` gives each parameter's shape (the graph's param nodes),
 * `storage` each one's storage on CUDA (the program's param buffers; the artifact's dtype when
 * absent). `onTensor` is called after each tensor is converted (for a progress bar).
 */
export function writeArtifactWeights(
  path: string,
  weights: ReadonlyMap<string, WeightData>,
  shapes: ReadonlyMap<string, readonly number[]>,
  cuda: boolean,
  dtype: FloatDtype,
  onTensor: () => void,
  storage: ReadonlyMap<string, FloatDtype> = new Map(),
): { tensors: number; bytes: number } {
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of [...shapes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const w = weights.get(name);
    if (!w) throw new Error(`no weight for parameter '${name}'`);
    tensors.push(tensorFor(name, shape, w, cuda, storage.get(name) ?? dtype));
    onTensor();
  }
  // 4-byte tensors first, then 2-byte ones: every tensor starts aligned to its element size (the
  // data area starts 8-aligned), so a memory-mapped file is read through typed views, uncopied
  tensors.sort((a, b) => DTYPE_SIZES[b.dtype] - DTYPE_SIZES[a.dtype]);
  writeSafetensors(path, tensors, { format: "kiln-engine-weights", dtype });
  return { tensors: tensors.length, bytes: tensors.reduce((n, t) => n + t.data.byteLength, 0) };
}

/**
 * Reads the weights back: F32 and BF16 as stored, F16 widened to f32 (exact). With `mapFile` (the
 * native addon's) the file is memory-mapped and aligned tensors are views of it, so nothing is
 * read or copied until a kernel touches it; without it, or for a misaligned tensor, they are read.
 */
export function readArtifactWeights(path: string, mapFile?: (path: string) => ArrayBuffer): Map<string, WeightData> {
  const file = SafetensorsFile.open(path);
  try {
    const mapped = mapFile?.(path);
    const out = new Map<string, WeightData>();
    for (const info of file.tensors.values()) {
      const at = info.fileOffset;
      if (mapped !== undefined && info.dtype === "BF16" && at % 2 === 0) {
        out.set(info.name, { dtype: "bf16", data: new Uint16Array(mapped, at, info.byteLength / 2) });
      } else if (mapped !== undefined && info.dtype === "F32" && at % 4 === 0) {
        out.set(info.name, { dtype: "f32", data: new Float32Array(mapped, at, info.byteLength / 4) });
      } else {
        out.set(info.name, info.dtype === "BF16" ? { dtype: "bf16", data: file.readBf16Bits(info.name) } : { dtype: "f32", data: file.readF32(info.name) });
      }
    }
    return out;
  } finally {
    file.close();
  }
}

/** weight_map.json: how the checkpoint became the artifact's parameters. */
export interface WeightMap {
  readonly checkpoint: string;
  /** checkpoint tensor → the parameter it fills (`name[shard]` for stacked parameters) */
  readonly tensors: Readonly<Record<string, string>>;
  /** checkpoint tensors that are not parameters (rotary caches, a tied head's copy) */
  readonly skipped: readonly string[];
  /** parameter → the checkpoint tensors that fill it, in shard order */
  readonly parameters: Readonly<Record<string, readonly string[]>>;
}

/**
 * The weight map, checked: every checkpoint tensor fills exactly one parameter (or is skipped by
 * rule), no shard of a parameter is filled twice, and every parameter is filled.
 */
export function weightMapReport(report: LoadReport, params: Iterable<string>, checkpoint: string): WeightMap {
  const parameters: Record<string, string[]> = {};
  for (const p of params) parameters[p] = [];
  const filled = new Map<string, string>();
  const tensors: Record<string, string> = {};
  for (const [tensor, target] of [...report.loaded].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const param = target.replace(/\[[^\]]*\]$/, "");
    const list = parameters[param];
    if (list === undefined) throw new KilnError("TENSOR_UNUSED", `${checkpoint}: tensor '${tensor}' maps to '${target}', which is no parameter`);
    const twice = filled.get(target);
    if (twice !== undefined) throw new KilnError("TENSOR_UNUSED", `${checkpoint}: tensors '${twice}' and '${tensor}' both fill '${target}'`);
    filled.set(target, tensor);
    list.push(tensor);
    tensors[tensor] = target;
  }
  const empty = Object.entries(parameters).filter(([, l]) => l.length === 0).map(([p]) => p);
  if (empty.length > 0) throw new KilnError("TENSOR_MISSING", `${checkpoint}: no checkpoint tensor fills ${empty.join(", ")}`);
  return { checkpoint, tensors, skipped: [...report.skipped].sort(), parameters };
}
