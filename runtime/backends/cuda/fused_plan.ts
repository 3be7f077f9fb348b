/**
 * The compiled program as the CUDA executor runs it. The executor holds every buffer as the
 * program declares it (weight matrices in the program's dtype, other weights and activations in
 * f32, the step inputs in i32, the KV cache in the program's KV dtype), so every kernel step of
 * the program runs as its generated CUDA C: one module, loaded from an artifact's stored CUBIN
 * when it was built for this device, else compiled by NVRTC from the program (or from the
 * artifact's stored source, for another sm_XX). GEMMs and custom ops run node by node with the
 * hand-written kernels. A KV layer whose k/v a fused kernel writes into the cache is recorded, so
 * its attention skips its own write.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Dim, SymbolicDim, ValueId } from "../../../compiler/ir.ts";
import type { BufferSpec, Program } from "../../../compiler/program.ts";
import { cudaLaunch, renderCudaModule } from "../../../compiler/render/cuda.ts";
import type { KernelOrigin, StoredModule } from "../step_executor.ts";
import type { CudaBackend } from "./backend.ts";
import type { CudaDevice, DevicePtr, KernelFunction } from "./device.ts";
import type { KernelArg } from "./kernel_args.ts";

/** A fused kernel of the compiled program, loaded: launched with `rows` then its buffers' addresses. */
export interface FusedKernel {
  readonly fn: KernelFunction;
  readonly block: number;
  readonly sharedBytes: number;
  readonly rows: Dim;
  readonly buffers: readonly BufferSpec[];
}

/** One step of the executor's plan: a fused kernel, or an IR node run by its own kernel(s). */
export type ExecStep = { readonly kind: "fused"; readonly kernel: FusedKernel } | { readonly kind: "node"; readonly node: ValueId };

/** A step of the plan before its kernels are loaded: a program kernel step run fused, or an IR node. */
export type PlannedStep =
  | { readonly kind: "fused"; readonly kernel: string; readonly rows: Dim; readonly buffers: readonly BufferSpec[] }
  | { readonly kind: "node"; readonly node: ValueId };

/** The program's steps as the executor plans them. Pure: the memory budget plans with it before any device is touched. */
export function planSteps(program: Program): PlannedStep[] {
  return program.steps.map((s): PlannedStep =>
    s.kind === "kernel" ? { kind: "fused", kernel: s.kernel, rows: s.rows, buffers: s.args.map((id) => program.buffers[id]!) } : { kind: "node", node: s.node },
  );
}

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** The program's module as a CUBIN for this device, and where it came from. */
function programCubin(program: Program, backend: CudaBackend, stored: StoredModule | undefined): { cubin: Uint8Array; origin: KernelOrigin } {
  const arch = backend.device.info.arch;
  const binary = stored?.binary;
  if (binary !== undefined && binary.builtFor === arch) {
    const cubin = new Uint8Array(readFileSync(binary.path));
    return { cubin, origin: { origin: "artifact", sha256: sha256(cubin) } };
  }
  // the portable-artifact promise: the stored source compiles for any sm_XX
  const source = stored === undefined ? renderCudaModule(program.kernels) : readFileSync(stored.sourcePath, "utf8");
  const { cubin } = backend.compiler.compile({ name: "module.cu", source, headers: new Map() }, arch);
  if (stored === undefined) return { cubin, origin: { origin: "compiled", sha256: sha256(cubin) } };
  const built = binary === undefined ? "no CUBIN" : `a CUBIN for ${binary.builtFor}`;
  const note = `the artifact carries ${built}; compiled its stored CUDA source for this ${arch} device with NVRTC`;
  return { cubin, origin: { origin: "rebuilt", sha256: sha256(cubin), note } };
}

/**
 * The plan for `program` with its module loaded (`kernelOrigin` says from where);
 * `kvWritten` receives the cache keys whose KV write a fused kernel does.
 */
export function planProgram(
  program: Program,
  backend: CudaBackend,
  stored: StoredModule | undefined,
  kvWritten: Set<string>,
): { readonly steps: ExecStep[]; readonly kernelOrigin: KernelOrigin | undefined } {
  const planned = planSteps(program);
  const functions = new Map<string, KernelFunction>();
  let kernelOrigin: KernelOrigin | undefined;
  if (program.kernels.length > 0) {
    const { cubin, origin } = programCubin(program, backend, stored);
    kernelOrigin = origin;
    const module = backend.device.loadModule(cubin, "module.cu");
    for (const k of program.kernels) functions.set(k.name, backend.device.getFunction(module, k.name));
  }
  const kernels = new Map(program.kernels.map((k) => [k.name, k]));
  const steps = planned.map((s): ExecStep => {
    if (s.kind === "node") return s;
    for (const b of s.buffers) if (b.role.kind === "kv_cache") kvWritten.add(b.role.cacheKey);
    const launch = cudaLaunch(kernels.get(s.kernel)!);
    const fn = functions.get(s.kernel)!;
    // row-local arrays of a wide row (a 16k hidden size is 64 KiB of f32) pass the default 48 KiB
    backend.device.allowDynamicShared(fn, launch.sharedBytes);
    return { kind: "fused", kernel: { fn, block: launch.block[0], sharedBytes: launch.sharedBytes, rows: s.rows, buffers: s.buffers } };
  });
  return { steps, kernelOrigin };
}

/** Launches a fused kernel over this step's rows (none when the step has none). */
export function launchFused(device: CudaDevice, k: FusedKernel, sizes: Readonly<Record<SymbolicDim, number>>, address: (b: BufferSpec) => DevicePtr): void {
  const rows = typeof k.rows === "number" ? k.rows : sizes[k.rows];
  if (rows === 0) return;
  const args: KernelArg[] = [{ kind: "i64", value: rows }, ...k.buffers.map((b): KernelArg => ({ kind: "ptr", value: address(b) }))];
  device.launch(k.fn, [rows, 1, 1], [k.block, 1, 1], args, k.sharedBytes);
}
