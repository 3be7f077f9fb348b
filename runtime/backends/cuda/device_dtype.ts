/**
 * How a weight matrix or the KV cache is held in device memory: f32, or a 16-bit float (bf16 or
 * f16) stored as its bit pattern. Arithmetic is f32 either way: 16-bit values are widened
 * exactly when read and rounded to nearest even when written.
 */
import type { KernelName } from "./kernel_catalog.ts";

export const DEVICE_DTYPES = ["f32", "bf16", "f16"] as const;
export type DeviceDtype = (typeof DEVICE_DTYPES)[number];
/** the 16-bit formats */
export type HalfDtype = Exclude<DeviceDtype, "f32">;

export function isHalf(d: DeviceDtype): d is HalfDtype {
  return d !== "f32";
}

/** Bytes per element held as `d`. */
export function deviceElementBytes(d: DeviceDtype): 2 | 4 {
  return isHalf(d) ? 2 : 4;
}

/** The kernel that rounds f32 values to each 16-bit format, (out, in, n). */
export const ROUND_KERNELS = { bf16: "kiln_f32_to_bf16", f16: "kiln_f32_to_f16" } as const satisfies Record<HalfDtype, KernelName>;
