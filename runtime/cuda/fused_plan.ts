/**
 * The compiled program as the CUDA executor runs it. Each fused kernel whose buffers are all
 * held on the device as the program declares them (activations and f32 weights in f32, the
 * step inputs in i32, the KV cache in the executor's KV dtype) is rendered to CUDA C, and all of them are
 * compiled by NVRTC as one module and launched in place of their nodes; the others (a region
 * reading a weight kept in bf16 or f16) and every GEMM and custom op run node by node. A KV layer whose
 * k/v a fused kernel writes into the cache is recorded, so its attention skips its own write.
 */
import { createHash } from "node:crypto";
import type { Dim, SymbolicDim, ValueId } from "../../compiler/ir.ts";
import type { BufferSpec, Program } from "../../compiler/program.ts";
import { CUDA_PRELUDE, cudaLaunch, renderCudaKernel } from "../../compiler/render/cuda.ts";
import type { CudaBackend } from "./backend.ts";
import type { CudaDevice, DevicePtr, KernelFunction } from "./device.ts";
import type { DeviceDtype } from "./device_dtype.ts";
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

/**
 * Which of `program`'s kernel steps run fused: those whose every buffer is held on the device as
 * the program declares it. `paramDtype` says how the device holds a parameter and `kvDtype` the
 * KV cache. Pure: the memory budget plans with it before any device is touched.
 */
export function planSteps(program: Program, paramDtype: (name: string) => DeviceDtype, kvDtype: DeviceDtype): PlannedStep[] {
  const onDevice = (b: BufferSpec): boolean => {
    switch (b.role.kind) {
      case "input":
        return b.elem === "i32";
      case "kv_cache":
        return b.elem === kvDtype;
      case "param":
        return b.elem === "f32" && paramDtype(b.role.name) === "f32";
      default:
        return b.elem === "f32";
    }
  };
  const plan: PlannedStep[] = [];
  for (const s of program.steps) {
    if (s.kind !== "kernel") {
      plan.push({ kind: "node", node: s.node });
      continue;
    }
    const buffers = s.args.map((id) => program.buffers[id]!);
    if (buffers.every(onDevice)) plan.push({ kind: "fused", kernel: s.kernel, rows: s.rows, buffers });
    else for (const node of s.nodes) plan.push({ kind: "node", node });
  }
  return plan;
}

/**
 * The plan for `program` with its fused kernels compiled by NVRTC (one module) and loaded;
 * `kvWritten` receives the cache keys whose KV write a fused kernel does.
 */
export function planProgram(
  program: Program,
  backend: CudaBackend,
  paramDtype: (name: string) => DeviceDtype,
  kvDtype: DeviceDtype,
  kvWritten: Set<string>,
): ExecStep[] {
  const planned = planSteps(program, paramDtype, kvDtype);
  const kernels = new Map(program.kernels.map((k) => [k.name, k]));
  const lowered = [...new Set(planned.flatMap((s) => (s.kind === "fused" ? [s.kernel] : [])))].map((name) => kernels.get(name)!);
  const functions = new Map<string, KernelFunction>();
  if (lowered.length > 0) {
    const source = [CUDA_PRELUDE, ...lowered.map(renderCudaKernel)].join("\n");
    const name = `fused_${createHash("sha256").update(source).digest("hex").slice(0, 16)}.cu`;
    const compiled = backend.compiler.compile({ name, source, headers: new Map() }, backend.device.info.arch);
    const module = backend.device.loadModule(compiled.cubin, name);
    for (const k of lowered) functions.set(k.name, backend.device.getFunction(module, k.name));
  }
  return planned.map((s): ExecStep => {
    if (s.kind === "node") return s;
    for (const b of s.buffers) if (b.role.kind === "kv_cache") kvWritten.add(b.role.cacheKey);
    const launch = cudaLaunch(kernels.get(s.kernel)!);
    return { kind: "fused", kernel: { fn: functions.get(s.kernel)!, block: launch.block[0], sharedBytes: launch.sharedBytes, rows: s.rows, buffers: s.buffers } };
  });
}

/** Launches a fused kernel over this step's rows (none when the step has none). */
export function launchFused(device: CudaDevice, k: FusedKernel, sizes: Readonly<Record<SymbolicDim, number>>, address: (b: BufferSpec) => DevicePtr): void {
  const rows = typeof k.rows === "number" ? k.rows : sizes[k.rows];
  if (rows === 0) return;
  const args: KernelArg[] = [{ kind: "i64", value: rows }, ...k.buffers.map((b): KernelArg => ({ kind: "ptr", value: address(b) }))];
  device.launch(k.fn, [rows, 1, 1], [k.block, 1, 1], args, k.sharedBytes);
}
