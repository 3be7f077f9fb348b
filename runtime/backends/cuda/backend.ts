/**
 * One CUDA device made ready for kiln: the driver context and stream, NVRTC, the compiled
 * kernels and cuBLASLt. Opening it is what fails (KilnError CUDA_UNAVAILABLE, naming what was
 * tried) on a machine without a usable driver or toolkit; executors share one backend.
 */
import { CublasLt } from "./cublaslt.ts";
import { CudaDevice } from "./device.ts";
import { CudaKernels, kernelSourceDir } from "./kernels.ts";
import type { HostProbe } from "./library_locator.ts";
import { NvrtcCompiler } from "./nvrtc_compiler.ts";

export interface BackendOpenOptions {
  readonly ordinal?: number;
  readonly probe?: HostProbe;
  /** where compiled CUBINs are cached (default $KILN_CACHE_DIR or ~/.cache/kiln) */
  readonly cacheDir?: string;
  /** kernels/cuda (default: found beside the code, or $KILN_CUDA_KERNELS_DIR) */
  readonly kernelDir?: string;
}

export class CudaBackend {
  private constructor(
    readonly device: CudaDevice,
    readonly compiler: NvrtcCompiler,
    readonly kernels: CudaKernels,
    readonly blas: CublasLt,
  ) {}

  static open(opts: BackendOpenOptions = {}): CudaBackend {
    const probe = opts.probe;
    const device = CudaDevice.open({ ...(opts.ordinal !== undefined ? { ordinal: opts.ordinal } : {}), ...(probe ? { probe } : {}) });
    try {
      const compiler = NvrtcCompiler.open({
        ...(probe ? { probe } : {}),
        ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
        driverVersion: device.info.driverVersion,
      });
      const kernels = CudaKernels.load(device, compiler, opts.kernelDir ?? kernelSourceDir(probe?.env));
      const blas = CublasLt.open(device, probe ? { probe } : {});
      return new CudaBackend(device, compiler, kernels, blas);
    } catch (e) {
      device.dispose();
      throw e;
    }
  }

  /** One line for logs: device, architecture, library versions. */
  describe(): string {
    const i = this.device.info;
    const driver = `${Math.floor(i.driverVersion / 1000)}.${(i.driverVersion % 1000) / 10}`;
    return `${i.name} (${i.arch}, ${i.multiprocessors} SMs, ${(i.totalMemory / 2 ** 30).toFixed(1)} GiB), CUDA driver ${driver}, NVRTC ${this.compiler.version}, cuBLASLt ${this.blas.version}`;
  }

  dispose(): void {
    try {
      this.blas.dispose();
    } finally {
      this.device.dispose();
    }
  }
}
