/**
 * A program's fused kernels as callable functions: rendered to C, compiled into a shared library
 * (cached on disk by source hash) and bound through koffi. Typed arrays pass as pointers to their
 * own memory (no copy), so a kernel writes straight into the executor's buffers.
 */
import koffi from "koffi";
import type { LoweredKernel } from "../../../compiler/kernel_ir.ts";
import { KernelCache } from "../../../compiler/kernel_cache.ts";
import { renderCModule } from "../../../compiler/render/c.ts";
import { compileC } from "../../../compiler/toolchain.ts";
import { KilnError } from "../../engine/errors.ts";
import type { Dtype } from "../../../compiler/dtype.ts";

export type KernelArg = Float32Array | Uint16Array | Int32Array;
export type KernelCall = (rows: number, args: readonly KernelArg[]) => void;

export interface KernelLibrary {
  readonly path: string;
  /** seconds spent compiling (0 when the cache had it) */
  readonly compileSeconds: number;
  readonly kernels: ReadonlyMap<string, KernelCall>;
}

const FFI_TYPES = { f32: "float", bf16: "uint16_t", i32: "int32_t", f16: undefined, fp8: undefined } as const satisfies Record<Dtype, string | undefined>;

/** The koffi prototype of a kernel: `void name(int64_t rows, const float *x0, float *y0, ...)`. */
function prototype(k: LoweredKernel): string {
  const params = k.params.map((p) => {
    const t = FFI_TYPES[p.elem];
    if (t === undefined) throw new KilnError("INVALID_ARGUMENT", `kernel ${k.name}: the CPU backend has no ${p.elem} storage`);
    return `${p.io === "in" ? "const " : ""}${t} *${p.name}`;
  });
  return `void ${k.name}(int64_t rows, ${params.join(", ")})`;
}

export function loadKernelLibrary(kernels: readonly LoweredKernel[], cache: KernelCache = new KernelCache()): KernelLibrary {
  const compiled = compileC(renderCModule(kernels), cache);
  return bindKernelLibrary(compiled.path, kernels, compiled.hit ? 0 : compiled.seconds);
}

/** Binds the kernels of an already built shared library (an engine artifact's kernels/module.so). */
export function bindKernelLibrary(path: string, kernels: readonly LoweredKernel[], compileSeconds = 0): KernelLibrary {
  let lib: ReturnType<typeof koffi.load>;
  // OpenMP's threads otherwise spin after each fused kernel and steal the cores the native GEMM
  // and attention threads need next (prefill measured ~25% faster); libgomp reads this when the
  // library is first loaded, and an explicit setting by the user wins.
  process.env["OMP_WAIT_POLICY"] ??= "PASSIVE";
  try {
    lib = koffi.load(path);
  } catch (cause) {
    throw new KilnError("NATIVE_UNAVAILABLE", `cannot load the compiled kernels ${path}: ${String(cause)}`, { cause });
  }
  const calls = new Map<string, KernelCall>();
  for (const k of kernels) {
    const fn = lib.func(prototype(k));
    const arity = k.params.length;
    calls.set(k.name, (rows, args) => {
      if (args.length !== arity) throw new Error(`kernel ${k.name} takes ${arity} buffers, got ${args.length}`);
      fn(rows, ...args);
    });
  }
  return { path, compileSeconds, kernels: calls };
}
