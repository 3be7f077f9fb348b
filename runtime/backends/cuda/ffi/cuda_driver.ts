/**
 * koffi declarations of the CUDA driver API (libcuda) that kiln uses. Declarations only: the
 * wrappers that check results live in runtime/backends/cuda/device.ts.
 *
 * Conventions (all measured with koffi 3 on x86-64):
 * - handles (CUcontext, CUstream, CUmodule, CUfunction, CUgraph, CUgraphExec, CUevent) and device
 *   pointers (CUdeviceptr) are declared `uint64_t` and travel as bigint; on x86-64 a pointer and a
 *   uint64_t are passed the same way;
 * - out-parameters are one-element typed arrays (`BigUint64Array` for handles, pointers and
 *   size_t, `Int32Array` for int), which koffi passes as a pointer to their memory;
 * - host buffers are any typed array or Buffer (a pointer to its contents for the call's duration);
 * - `kernelParams` is a `BigUint64Array` of addresses into stable native memory (kernel_args.ts).
 * Only symbols present in every CUDA 12/13 driver are declared: a missing one fails the load.
 */
import type { LibraryHandle } from "koffi";

export type CuResult = number;

export interface CudaDriverApi {
  cuInit(flags: number): CuResult;
  cuDriverGetVersion(version: Int32Array): CuResult;
  cuGetErrorName(status: number, name: [string | null]): CuResult;
  cuGetErrorString(status: number, text: [string | null]): CuResult;

  cuDeviceGetCount(count: Int32Array): CuResult;
  cuDeviceGet(device: Int32Array, ordinal: number): CuResult;
  cuDeviceGetName(name: Uint8Array, length: number, device: number): CuResult;
  cuDeviceGetAttribute(value: Int32Array, attribute: number, device: number): CuResult;
  cuDeviceTotalMem_v2(bytes: BigUint64Array, device: number): CuResult;

  cuDevicePrimaryCtxRetain(context: BigUint64Array, device: number): CuResult;
  cuDevicePrimaryCtxRelease_v2(device: number): CuResult;
  cuCtxSetCurrent(context: bigint): CuResult;
  cuCtxSynchronize(): CuResult;

  cuMemGetInfo_v2(free: BigUint64Array, total: BigUint64Array): CuResult;
  cuMemAlloc_v2(pointer: BigUint64Array, bytes: number): CuResult;
  cuMemFree_v2(pointer: bigint): CuResult;
  cuMemcpyHtoD_v2(dst: bigint, src: ArrayBufferView, bytes: number): CuResult;
  cuMemcpyDtoH_v2(dst: ArrayBufferView, src: bigint, bytes: number): CuResult;
  cuMemcpyHtoDAsync_v2(dst: bigint, src: ArrayBufferView, bytes: number, stream: bigint): CuResult;
  cuMemcpyDtoHAsync_v2(dst: ArrayBufferView, src: bigint, bytes: number, stream: bigint): CuResult;
  cuMemcpyDtoDAsync_v2(dst: bigint, src: bigint, bytes: number, stream: bigint): CuResult;
  cuMemsetD8Async(dst: bigint, value: number, count: number, stream: bigint): CuResult;
  cuMemsetD32Async(dst: bigint, value: number, count: number, stream: bigint): CuResult;

  cuModuleLoadData(module: BigUint64Array, image: Uint8Array): CuResult;
  cuModuleUnload(module: bigint): CuResult;
  cuModuleGetFunction(fn: BigUint64Array, module: bigint, name: string): CuResult;
  cuFuncSetAttribute(fn: bigint, attribute: number, value: number): CuResult;
  cuLaunchKernel(
    fn: bigint,
    gridX: number,
    gridY: number,
    gridZ: number,
    blockX: number,
    blockY: number,
    blockZ: number,
    sharedBytes: number,
    stream: bigint,
    kernelParams: BigUint64Array,
    extra: null,
  ): CuResult;

  cuStreamCreate(stream: BigUint64Array, flags: number): CuResult;
  cuStreamDestroy_v2(stream: bigint): CuResult;
  cuStreamSynchronize(stream: bigint): CuResult;

  cuEventCreate(event: BigUint64Array, flags: number): CuResult;
  cuEventRecord(event: bigint, stream: bigint): CuResult;
  cuEventSynchronize(event: bigint): CuResult;
  cuEventDestroy_v2(event: bigint): CuResult;
  cuEventElapsedTime(ms: Float32Array, start: bigint, end: bigint): CuResult;

  cuStreamBeginCapture_v2(stream: bigint, mode: number): CuResult;
  cuStreamEndCapture(stream: bigint, graph: BigUint64Array): CuResult;
  cuGraphInstantiateWithFlags(exec: BigUint64Array, graph: bigint, flags: bigint): CuResult;
  cuGraphLaunch(exec: bigint, stream: bigint): CuResult;
  cuGraphExecDestroy(exec: bigint): CuResult;
  cuGraphDestroy(graph: bigint): CuResult;
}

/** Driver enum values kiln passes (cuda.h). */
export const CU = {
  SUCCESS: 0,
  DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 16,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 75,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 76,
  /** the most shared memory a block may have when its kernel opts in (cuFuncSetAttribute) */
  DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
  /** a kernel's dynamic shared memory limit; 48 KiB until raised */
  FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
  STREAM_NON_BLOCKING: 1,
  EVENT_DISABLE_TIMING: 2,
  STREAM_CAPTURE_MODE_RELAXED: 2,
} as const;

export function bindCudaDriver(lib: LibraryHandle): CudaDriverApi {
  return {
    cuInit: lib.func("int cuInit(unsigned int flags)"),
    cuDriverGetVersion: lib.func("int cuDriverGetVersion(int *version)"),
    cuGetErrorName: lib.func("int cuGetErrorName(int status, _Out_ const char **name)"),
    cuGetErrorString: lib.func("int cuGetErrorString(int status, _Out_ const char **text)"),

    cuDeviceGetCount: lib.func("int cuDeviceGetCount(int *count)"),
    cuDeviceGet: lib.func("int cuDeviceGet(int *device, int ordinal)"),
    cuDeviceGetName: lib.func("int cuDeviceGetName(uint8_t *name, int length, int device)"),
    cuDeviceGetAttribute: lib.func("int cuDeviceGetAttribute(int *value, int attribute, int device)"),
    cuDeviceTotalMem_v2: lib.func("int cuDeviceTotalMem_v2(uint64_t *bytes, int device)"),

    cuDevicePrimaryCtxRetain: lib.func("int cuDevicePrimaryCtxRetain(uint64_t *context, int device)"),
    cuDevicePrimaryCtxRelease_v2: lib.func("int cuDevicePrimaryCtxRelease_v2(int device)"),
    cuCtxSetCurrent: lib.func("int cuCtxSetCurrent(uint64_t context)"),
    cuCtxSynchronize: lib.func("int cuCtxSynchronize()"),

    cuMemGetInfo_v2: lib.func("int cuMemGetInfo_v2(uint64_t *free, uint64_t *total)"),
    cuMemAlloc_v2: lib.func("int cuMemAlloc_v2(uint64_t *pointer, size_t bytes)"),
    cuMemFree_v2: lib.func("int cuMemFree_v2(uint64_t pointer)"),
    cuMemcpyHtoD_v2: lib.func("int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)"),
    cuMemcpyDtoH_v2: lib.func("int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t bytes)"),
    cuMemcpyHtoDAsync_v2: lib.func("int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, uint64_t stream)"),
    cuMemcpyDtoHAsync_v2: lib.func("int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, uint64_t stream)"),
    cuMemcpyDtoDAsync_v2: lib.func("int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, uint64_t stream)"),
    cuMemsetD8Async: lib.func("int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t count, uint64_t stream)"),
    cuMemsetD32Async: lib.func("int cuMemsetD32Async(uint64_t dst, uint32_t value, size_t count, uint64_t stream)"),

    cuModuleLoadData: lib.func("int cuModuleLoadData(uint64_t *module, const void *image)"),
    cuModuleUnload: lib.func("int cuModuleUnload(uint64_t module)"),
    cuModuleGetFunction: lib.func("int cuModuleGetFunction(uint64_t *fn, uint64_t module, const char *name)"),
    cuFuncSetAttribute: lib.func("int cuFuncSetAttribute(uint64_t fn, int attrib, int value)"),
    cuLaunchKernel: lib.func(
      "int cuLaunchKernel(uint64_t fn, unsigned int gridX, unsigned int gridY, unsigned int gridZ, " +
        "unsigned int blockX, unsigned int blockY, unsigned int blockZ, unsigned int sharedBytes, " +
        "uint64_t stream, void *kernelParams, void *extra)",
    ),

    cuStreamCreate: lib.func("int cuStreamCreate(uint64_t *stream, unsigned int flags)"),
    cuStreamDestroy_v2: lib.func("int cuStreamDestroy_v2(uint64_t stream)"),
    cuStreamSynchronize: lib.func("int cuStreamSynchronize(uint64_t stream)"),

    cuEventCreate: lib.func("int cuEventCreate(uint64_t *event, unsigned int flags)"),
    cuEventRecord: lib.func("int cuEventRecord(uint64_t event, uint64_t stream)"),
    cuEventSynchronize: lib.func("int cuEventSynchronize(uint64_t event)"),
    cuEventDestroy_v2: lib.func("int cuEventDestroy_v2(uint64_t event)"),
    // the original entry point: every driver exports it (CUDA 13's header renames calls to _v2)
    cuEventElapsedTime: lib.func("int cuEventElapsedTime(float *ms, uint64_t start, uint64_t end)"),

    cuStreamBeginCapture_v2: lib.func("int cuStreamBeginCapture_v2(uint64_t stream, int mode)"),
    cuStreamEndCapture: lib.func("int cuStreamEndCapture(uint64_t stream, uint64_t *graph)"),
    cuGraphInstantiateWithFlags: lib.func("int cuGraphInstantiateWithFlags(uint64_t *exec, uint64_t graph, uint64_t flags)"),
    cuGraphLaunch: lib.func("int cuGraphLaunch(uint64_t exec, uint64_t stream)"),
    cuGraphExecDestroy: lib.func("int cuGraphExecDestroy(uint64_t exec)"),
    cuGraphDestroy: lib.func("int cuGraphDestroy(uint64_t graph)"),
  };
}
