/**
 * koffi declarations of NVRTC (libnvrtc), the runtime CUDA C++ compiler. Declarations only: the
 * compiler wrapper is runtime/backends/cuda/nvrtc_compiler.ts. Conventions as in cuda_driver.ts: the
 * program handle is a `uint64_t`, out-parameters are one-element typed arrays, and the log and
 * CUBIN are read into Buffers sized by the matching *Size call.
 */
import type { LibraryHandle } from "koffi";

export type NvrtcResult = number;

export interface NvrtcApi {
  nvrtcVersion(major: Int32Array, minor: Int32Array): NvrtcResult;
  nvrtcGetErrorString(status: number): string | null;
  nvrtcCreateProgram(
    program: BigUint64Array,
    source: string,
    name: string,
    numHeaders: number,
    headers: readonly string[],
    includeNames: readonly string[],
  ): NvrtcResult;
  nvrtcDestroyProgram(program: BigUint64Array): NvrtcResult;
  nvrtcCompileProgram(program: bigint, numOptions: number, options: readonly string[]): NvrtcResult;
  nvrtcGetProgramLogSize(program: bigint, size: BigUint64Array): NvrtcResult;
  nvrtcGetProgramLog(program: bigint, log: Buffer): NvrtcResult;
  nvrtcGetCUBINSize(program: bigint, size: BigUint64Array): NvrtcResult;
  nvrtcGetCUBIN(program: bigint, cubin: Buffer): NvrtcResult;
}

export const NVRTC = {
  SUCCESS: 0,
  ERROR_COMPILATION: 6,
} as const;

export function bindNvrtc(lib: LibraryHandle): NvrtcApi {
  return {
    nvrtcVersion: lib.func("int nvrtcVersion(int *major, int *minor)"),
    nvrtcGetErrorString: lib.func("const char *nvrtcGetErrorString(int status)"),
    nvrtcCreateProgram: lib.func(
      "int nvrtcCreateProgram(uint64_t *program, const char *source, const char *name, int numHeaders, " +
        "const char **headers, const char **includeNames)",
    ),
    nvrtcDestroyProgram: lib.func("int nvrtcDestroyProgram(uint64_t *program)"),
    nvrtcCompileProgram: lib.func("int nvrtcCompileProgram(uint64_t program, int numOptions, const char **options)"),
    nvrtcGetProgramLogSize: lib.func("int nvrtcGetProgramLogSize(uint64_t program, size_t *size)"),
    nvrtcGetProgramLog: lib.func("int nvrtcGetProgramLog(uint64_t program, void *log)"),
    nvrtcGetCUBINSize: lib.func("int nvrtcGetCUBINSize(uint64_t program, size_t *size)"),
    nvrtcGetCUBIN: lib.func("int nvrtcGetCUBIN(uint64_t program, void *cubin)"),
  };
}
