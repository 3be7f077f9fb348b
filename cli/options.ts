/** Parsers for CLI flags that reject what they cannot use. */
import { InvalidArgumentError } from "commander";
import { BACKENDS, type BackendName } from "../runtime/step_executor.ts";

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
