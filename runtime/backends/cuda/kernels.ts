/**
 * kiln's hand-written CUDA kernels on a device: each kernels/cuda/*.cu compiled by NVRTC for the
 * device's architecture (CUBINs cached on disk), loaded as a module, and every kernel of the
 * catalog resolved once. Launches are typed by the catalog.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KilnError } from "../../engine/errors.ts";
import { PACKAGE_ROOT } from "../../io/package_root.ts";
import type { CudaDevice, Dim3, KernelFunction } from "./device.ts";
import { kernelArgs, KERNEL_FILES, KERNEL_HEADERS, KERNELS, type KernelArgValues, type KernelName } from "./kernel_catalog.ts";
import type { CudaProgram, NvrtcCompiler } from "./nvrtc_compiler.ts";

export interface CompileReport {
  readonly file: string;
  readonly ms: number;
  readonly fromCache: boolean;
}

/**
 * Where the .cu sources are: $KILN_CUDA_KERNELS_DIR, else kernels/cuda in kiln's package, else
 * beside this file's tree (runtime/backends/cuda/ → ../../../kernels/cuda; a bundle in .device/ →
 * ../kernels/cuda), else under the working directory.
 */
export function kernelSourceDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const override = env["KILN_CUDA_KERNELS_DIR"];
  const candidates = [
    ...(override !== undefined && override !== "" ? [override] : []),
    ...(PACKAGE_ROOT === undefined ? [] : [join(PACKAGE_ROOT, "kernels/cuda")]),
    fileURLToPath(new URL("../../../kernels/cuda/", import.meta.url)),
    fileURLToPath(new URL("../kernels/cuda/", import.meta.url)),
    join(process.cwd(), "kernels/cuda"),
  ];
  const found = candidates.find((d) => existsSync(join(d, KERNEL_HEADERS[0])));
  if (found === undefined) {
    throw new KilnError("CUDA_UNAVAILABLE", `kiln's CUDA kernel sources were not found; tried ${candidates.join(", ")} (set KILN_CUDA_KERNELS_DIR)`);
  }
  return found;
}

export function readKernelPrograms(dir: string): CudaProgram[] {
  const headers = new Map(KERNEL_HEADERS.map((h) => [h, readFileSync(join(dir, h), "utf8")] as const));
  return KERNEL_FILES.map((file) => ({ name: file, source: readFileSync(join(dir, file), "utf8"), headers }));
}

export class CudaKernels {
  private constructor(
    private readonly device: CudaDevice,
    private readonly functions: ReadonlyMap<KernelName, KernelFunction>,
    readonly compileReport: readonly CompileReport[],
  ) {}

  static load(device: CudaDevice, compiler: NvrtcCompiler, dir: string = kernelSourceDir()): CudaKernels {
    const functions = new Map<KernelName, KernelFunction>();
    const report: CompileReport[] = [];
    const names = Object.keys(KERNELS).filter((n): n is KernelName => n in KERNELS);
    for (const program of readKernelPrograms(dir)) {
      const compiled = compiler.compile(program, device.info.arch);
      report.push({ file: program.name, ms: compiled.ms, fromCache: compiled.fromCache });
      const module = device.loadModule(compiled.cubin, program.name);
      for (const name of names) {
        if (KERNELS[name].file === program.name) functions.set(name, device.getFunction(module, name));
      }
    }
    return new CudaKernels(device, functions, report);
  }

  launch<N extends KernelName>(name: N, grid: Dim3, block: Dim3, args: KernelArgValues<N> & readonly (bigint | number)[]): void {
    const fn = this.functions.get(name);
    if (fn === undefined) throw new Error(`kernel ${name} is not loaded`);
    this.device.launch(fn, grid, block, kernelArgs(name, args));
  }
}

/** Blocks for a grid-stride kernel over n elements at `threads` per block. */
export function strideGrid(n: number, threads = 256): Dim3 {
  return [Math.max(1, Math.min(Math.ceil(n / threads), 65535)), 1, 1];
}
