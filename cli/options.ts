/** Parsers for CLI flags that reject what they cannot use. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "commander";
import { declaredArtifactDtype, declaredArtifactKvDtype, isArtifactDir } from "../runtime/io/artifact_loader.ts";
import { configDtype, loadConfigJson } from "../models/hf_config.ts";
import { KilnError } from "../runtime/engine/errors.ts";
import { BACKENDS, type BackendName } from "../runtime/backends/step_executor.ts";
import type { CudaRegistration } from "../runtime/backends/cuda/register.ts";
import type { FloatDtype, KvDtype } from "../compiler/dtype.ts";

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

/** A --dtype / --kv-cache-dtype value: auto, or how the device holds the tensors. */
export type CudaDtypeChoice = "auto" | FloatDtype;

/** --dtype / --kv-cache-dtype of the CUDA backend: auto, float32 (f32), bfloat16 (bf16) or float16 (f16). */
export function cudaDtypeFlag(name: string): (v: string) => CudaDtypeChoice {
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
      case "float16":
      case "half":
      case "f16":
      case "fp16":
        return "f16";
      default:
        throw new InvalidArgumentError(`${name} must be auto, float32, bfloat16 or float16 (got '${v}')`);
    }
  };
}

/** A --kv-cache-dtype value: auto (as the weights), or how the device holds the KV cache. */
export type CudaKvDtypeChoice = "auto" | KvDtype;

/**
 * --kv-cache-dtype of the CUDA backend: what cudaDtypeFlag takes, or fp8 (vLLM's spelling, and
 * fp8_e4m3): e4m3 storage with per-layer K and V scales of 1. Only the KV cache takes fp8.
 */
export function kvCacheDtypeFlag(name: string): (v: string) => CudaKvDtypeChoice {
  const float = cudaDtypeFlag(name);
  return (v) => {
    switch (v.trim().toLowerCase()) {
      case "fp8":
      case "fp8_e4m3":
        return "fp8";
      default:
        try {
          return float(v);
        } catch {
          throw new InvalidArgumentError(`${name} must be auto, float32, bfloat16, float16 or fp8 (got '${v}')`);
        }
    }
  };
}

/** The CUDA flags `kiln serve` and `kiln golden` share. */
export interface CudaFlags {
  readonly backend: BackendName;
  readonly enforceEager?: boolean;
  readonly dtype: CudaDtypeChoice;
  readonly kvCacheDtype: CudaKvDtypeChoice;
}

/**
 * Registers the CUDA backend as the flags ask (loaded only for --backend cuda, nothing touched
 * otherwise). On the CPU backend a --dtype other than `cpuDtype` or a --kv-cache-dtype other than
 * auto is an INVALID_ARGUMENT error: the CPU computes in f32. --dtype goes through cudaWeightDtype.
 */
export async function registerCudaFromFlags(flags: CudaFlags, cpuDtype: "auto" | "f32", modelDir?: string): Promise<CudaRegistration | undefined> {
  if (flags.backend !== "cuda") {
    if (flags.dtype !== cpuDtype || flags.kvCacheDtype !== "auto") {
      throw new KilnError("INVALID_ARGUMENT", "--dtype and --kv-cache-dtype apply to --backend cuda (the CPU backend computes in f32)");
    }
    return undefined;
  }
  // run and serve default to auto, so an explicit storage is one the artifact must have (golden's
  // f32 default is its reference precision, not a request)
  if (cpuDtype === "auto" && modelDir !== undefined && isArtifactDir(modelDir)) checkArtifactDtypes(modelDir, flags);
  const { registerCudaBackend } = await import("../runtime/backends/cuda/register.ts");
  return registerCudaBackend({ cudaGraphs: flags.enforceEager !== true, weightDtype: cudaWeightDtype(flags.dtype, modelDir), kvCacheDtype: flags.kvCacheDtype });
}

/**
 * An engine artifact runs the program it stores, with the storage it was compiled for: a --dtype
 * or --kv-cache-dtype that asks for another is refused, not silently ignored (auto follows the
 * artifact).
 */
export function checkArtifactDtypes(dir: string, flags: Pick<CudaFlags, "dtype" | "kvCacheDtype">): void {
  const dtype = declaredArtifactDtype(dir);
  if (flags.dtype !== "auto" && dtype !== undefined && flags.dtype !== dtype) {
    throw new KilnError("INVALID_ARGUMENT", `engine artifact ${dir} was compiled with its weights in ${dtype}; it runs what it stores: drop --dtype ${flags.dtype}, or recompile with it`);
  }
  const kv = declaredArtifactKvDtype(dir);
  if (flags.kvCacheDtype !== "auto" && kv !== undefined && flags.kvCacheDtype !== kv) {
    throw new KilnError(
      "INVALID_ARGUMENT",
      `engine artifact ${dir} was compiled with its KV cache in ${kv}; it runs what it stores: drop --kv-cache-dtype ${flags.kvCacheDtype}, or recompile with it`,
    );
  }
}

/**
 * --dtype as the backend gets it: auto becomes f16 for an engine artifact stored in f16, or a
 * model folder whose config.json declares float16 (the loaders widen f16 tensors to f32, so the
 * backend's own "auto", which looks at the loaded weights, would not see them).
 */
export function cudaWeightDtype(flag: CudaDtypeChoice, modelDir: string | undefined): CudaDtypeChoice {
  if (flag !== "auto" || modelDir === undefined) return flag;
  if (isArtifactDir(modelDir)) return declaredArtifactDtype(modelDir) === "f16" ? "f16" : "auto";
  if (!existsSync(join(modelDir, "config.json"))) return flag;
  return configDtype(loadConfigJson(modelDir)) === "float16" ? "f16" : "auto";
}
