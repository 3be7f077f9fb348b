/** Parsers for CLI flags that reject what they cannot use. */
import { InvalidArgumentError } from "commander";
import { KilnError } from "../runtime/errors.ts";
import { BACKENDS, type BackendName } from "../runtime/step_executor.ts";
import type { CudaRegistration } from "../runtime/cuda/register.ts";

export function intFlag(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

export function floatFlag(name: string, min = -Infinity, max = Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

/** --backend: one of BACKENDS. */
export function backendFlag(v: string): BackendName {
  const b = BACKENDS.find((name) => name === v);
  if (b === undefined) throw new InvalidArgumentError(`backend '${v}' is not available; use ${BACKENDS.join(" or ")}`);
  return b;
}

/** --gpu-memory-utilization: a fraction f with 0 < f ≤ 1. */
export function gpuMemoryUtilizationFlag(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError(`--gpu-memory-utilization must be a fraction f with 0 < f ≤ 1 (got '${v}')`);
  }
  return n;
}

/** --dtype / --kv-cache-dtype of the CUDA backend: auto, float32 (f32) or bfloat16 (bf16). */
export function cudaDtypeFlag(name: string): (v: string) => "auto" | "f32" | "bf16" {
  return (v) => {
    switch (v.trim().toLowerCase()) {
      case "auto":
        return "auto";
      case "float32":
      case "float":
      case "f32":
      case "fp32":
        return "f32";
      case "bfloat16":
      case "bf16":
        return "bf16";
      default:
        throw new InvalidArgumentError(`${name} must be auto, float32 or bfloat16 (got '${v}')`);
    }
  };
}

/** The CUDA flags `kiln serve` and `kiln golden` share. */
export interface CudaFlags {
  readonly backend: BackendName;
  readonly enforceEager?: boolean;
  readonly dtype: "auto" | "f32" | "bf16";
  readonly kvCacheDtype: "auto" | "f32" | "bf16";
}

/**
 * Registers the CUDA backend as the flags ask (loaded only for --backend cuda, nothing touched
 * otherwise). On the CPU backend a --dtype other than `cpuDtype` or a --kv-cache-dtype other than
 * auto is an INVALID_ARGUMENT error: the CPU computes in f32.
 */
export async function registerCudaFromFlags(flags: CudaFlags, cpuDtype: "auto" | "f32"): Promise<CudaRegistration | undefined> {
  if (flags.backend !== "cuda") {
    if (flags.dtype !== cpuDtype || flags.kvCacheDtype !== "auto") {
      throw new KilnError("INVALID_ARGUMENT", "--dtype and --kv-cache-dtype apply to --backend cuda (the CPU backend computes in f32)");
    }
    return undefined;
  }
  const { registerCudaBackend } = await import("../runtime/cuda/register.ts");
  return registerCudaBackend({ cudaGraphs: flags.enforceEager !== true, weightDtype: flags.dtype, kvCacheDtype: flags.kvCacheDtype });
}
