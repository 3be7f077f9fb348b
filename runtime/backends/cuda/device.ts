/**
 * The CUDA device through the driver API: primary context, one stream, device memory, copies,
 * modules loaded from CUBINs, kernel launches and CUDA-graph capture. Every driver call's status
 * goes through check().
 *
 * Ordering: kernels, memsets and device-to-device copies are queued on `stream`, created blocking
 * (flags 0), so the synchronous host copies (cuMemcpyHtoD/DtoH, on the legacy default stream) wait
 * for the work queued before them and the work queued after waits for them. Host buffers are
 * therefore read or written completely before the copy call returns; no JS memory is ever held
 * by the driver after a call.
 */
import * as koffi from "koffi";
import { KilnError } from "../../engine/errors.ts";
import { check, CudaError, type StatusText } from "./check.ts";
import { bindCudaDriver, CU, type CudaDriverApi } from "./ffi/cuda_driver.ts";
import { KernelArgs, type KernelArg } from "./kernel_args.ts";
import { LIBCUDA, locateLibrary, SYSTEM_PROBE, type HostProbe } from "./library_locator.ts";

export type DevicePtr = bigint;
export type Dim3 = readonly [number, number, number];

/** dynamic shared memory any kernel may use without opting in */
export const DEFAULT_DYNAMIC_SHARED = 48 * 1024;

export interface DeviceInfo {
  readonly ordinal: number;
  readonly name: string;
  readonly computeCapability: readonly [number, number];
  /** NVRTC's --gpu-architecture value for this device, e.g. "sm_90" */
  readonly arch: string;
  readonly multiprocessors: number;
  /** the most shared memory (static + dynamic) a block may have once its kernel opts in */
  readonly maxSharedPerBlockOptin: number;
  readonly totalMemory: number;
  /** e.g. 13000 for CUDA 13.0 */
  readonly driverVersion: number;
  readonly libraryPath: string;
}

export interface KernelFunction {
  readonly name: string;
  readonly handle: bigint;
}

export interface CudaGraph {
  readonly graph: bigint;
  readonly exec: bigint;
}

export interface DeviceOpenOptions {
  readonly ordinal?: number;
  readonly probe?: HostProbe;
}

export class CudaDevice {
  private readonly allocations = new Map<DevicePtr, number>();
  private readonly modules = new Set<bigint>();
  private readonly args = new KernelArgs();
  private readonly out64 = new BigUint64Array(1);
  private readonly outB = new BigUint64Array(1);
  private disposed = false;

  private constructor(
    private readonly api: CudaDriverApi,
    private readonly text: StatusText,
    readonly info: DeviceInfo,
    readonly stream: bigint,
  ) {}

  /** Loads libcuda, initialises the driver and makes the device's primary context current. */
  static open(opts: DeviceOpenOptions = {}): CudaDevice {
    const ordinal = opts.ordinal ?? 0;
    const { path, library: api } = locateLibrary(LIBCUDA, (p) => bindCudaDriver(koffi.load(p)), opts.probe ?? SYSTEM_PROBE);
    const text = driverStatusText(api);
    const unavailable = (what: string, e: unknown): KilnError =>
      new KilnError("CUDA_UNAVAILABLE", `${path} loaded, but ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    const i32 = new Int32Array(1);
    try {
      check(api.cuInit(0), "cuInit", text);
      check(api.cuDeviceGetCount(i32), "cuDeviceGetCount", text);
    } catch (e) {
      throw unavailable("the driver did not initialise", e);
    }
    if ((i32[0] ?? 0) <= ordinal) {
      throw new KilnError("CUDA_UNAVAILABLE", `${path} loaded, but it reports ${i32[0]} CUDA device(s); device ${ordinal} was asked for`);
    }
    check(api.cuDeviceGet(i32, ordinal), "cuDeviceGet", text);
    const dev = i32[0] ?? 0;
    const attr = (a: number, what: string): number => {
      check(api.cuDeviceGetAttribute(i32, a, dev), `cuDeviceGetAttribute(${what})`, text);
      return i32[0] ?? 0;
    };
    const major = attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "compute capability major");
    const minor = attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "compute capability minor");
    const multiprocessors = attr(CU.DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count");
    const maxSharedPerBlockOptin = attr(CU.DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "shared memory per block (opt-in)");
    const nameBuf = new Uint8Array(256);
    check(api.cuDeviceGetName(nameBuf, nameBuf.length, dev), "cuDeviceGetName", text);
    const zero = nameBuf.indexOf(0);
    const name = Buffer.from(nameBuf.subarray(0, zero < 0 ? nameBuf.length : zero)).toString("utf8");
    const u64 = new BigUint64Array(1);
    check(api.cuDeviceTotalMem_v2(u64, dev), "cuDeviceTotalMem", text);
    const totalMemory = Number(u64[0]);
    check(api.cuDriverGetVersion(i32), "cuDriverGetVersion", text);
    const driverVersion = i32[0] ?? 0;
    check(api.cuDevicePrimaryCtxRetain(u64, dev), "cuDevicePrimaryCtxRetain", text);
    const context = u64[0] ?? 0n;
    check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent", text);
    check(api.cuStreamCreate(u64, 0), "cuStreamCreate", text);
    const stream = u64[0] ?? 0n;
    const info: DeviceInfo = {
      ordinal: dev,
      name,
      computeCapability: [major, minor],
      arch: `sm_${major}${minor}`,
      multiprocessors,
      maxSharedPerBlockOptin,
      totalMemory,
      driverVersion,
      libraryPath: path,
    };
    return new CudaDevice(api, text, info, stream);
  }

  private check(status: number, call: string): void {
    check(status, call, this.text);
  }

  private live(): void {
    if (this.disposed) throw new Error("the CUDA device has been disposed");
  }

  /** Device memory of `bytes` (≥ 1), uninitialised. */
  alloc(bytes: number): DevicePtr {
    this.live();
    const n = Math.max(1, Math.ceil(bytes));
    this.check(this.api.cuMemAlloc_v2(this.out64, n), `cuMemAlloc(${n} bytes)`);
    const ptr = this.out64[0] ?? 0n;
    this.allocations.set(ptr, n);
    return ptr;
  }

  free(ptr: DevicePtr): void {
    if (!this.allocations.delete(ptr)) throw new Error(`0x${ptr.toString(16)} is not a live allocation of this device`);
    this.check(this.api.cuMemFree_v2(ptr), "cuMemFree");
  }

  /** Bytes currently allocated through this device object. */
  get allocatedBytes(): number {
    let n = 0;
    for (const b of this.allocations.values()) n += b;
    return n;
  }

  memInfo(): { free: number; total: number } {
    this.check(this.api.cuMemGetInfo_v2(this.out64, this.outB), "cuMemGetInfo");
    return { free: Number(this.out64[0]), total: Number(this.outB[0]) };
  }

  /** Host → device, synchronous: `src` is fully read when this returns. */
  upload(dst: DevicePtr, src: ArrayBufferView): void {
    if (src.byteLength === 0) return;
    this.check(this.api.cuMemcpyHtoD_v2(dst, src, src.byteLength), `cuMemcpyHtoD(${src.byteLength} bytes)`);
  }

  /** Device → host, synchronous: waits for the queued work, then fills `dst`. */
  download(dst: ArrayBufferView, src: DevicePtr): void {
    if (dst.byteLength === 0) return;
    this.check(this.api.cuMemcpyDtoH_v2(dst, src, dst.byteLength), `cuMemcpyDtoH(${dst.byteLength} bytes)`);
  }

  copy(dst: DevicePtr, src: DevicePtr, bytes: number): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemcpyDtoDAsync_v2(dst, src, bytes, this.stream), `cuMemcpyDtoDAsync(${bytes} bytes)`);
  }

  zero(dst: DevicePtr, bytes: number): void {
    if (bytes === 0) return;
    this.check(this.api.cuMemsetD8Async(dst, 0, bytes, this.stream), `cuMemsetD8Async(${bytes} bytes)`);
  }

  /** Fills `count` 32-bit words with the bit pattern `word`. */
  fill32(dst: DevicePtr, word: number, count: number): void {
    if (count === 0) return;
    this.check(this.api.cuMemsetD32Async(dst, word >>> 0, count, this.stream), `cuMemsetD32Async(${count} words)`);
  }

  synchronize(): void {
    this.check(this.api.cuStreamSynchronize(this.stream), "cuStreamSynchronize");
  }

  /** A timing event (flags 0: it records a timestamp); free it with destroyEvent. */
  createEvent(): bigint {
    this.live();
    this.check(this.api.cuEventCreate(this.out64, 0), "cuEventCreate");
    return this.out64[0] ?? 0n;
  }

  /** Queues `event` on the stream: it completes, with its timestamp, when the work before it has. */
  recordEvent(event: bigint): void {
    this.check(this.api.cuEventRecord(event, this.stream), "cuEventRecord");
  }

  /** Milliseconds of device time between two recorded events; waits for `end` first. */
  elapsedMs(start: bigint, end: bigint): number {
    this.check(this.api.cuEventSynchronize(end), "cuEventSynchronize");
    const ms = new Float32Array(1);
    this.check(this.api.cuEventElapsedTime(ms, start, end), "cuEventElapsedTime");
    return ms[0] ?? 0;
  }

  destroyEvent(event: bigint): void {
    this.check(this.api.cuEventDestroy_v2(event), "cuEventDestroy");
  }

  /** Loads a CUBIN; `what` names it in errors. Unloaded by dispose(). */
  loadModule(cubin: Uint8Array, what: string): bigint {
    this.live();
    this.check(this.api.cuModuleLoadData(this.out64, cubin), `cuModuleLoadData(${what})`);
    const m = this.out64[0] ?? 0n;
    this.modules.add(m);
    return m;
  }

  getFunction(module: bigint, name: string): KernelFunction {
    this.check(this.api.cuModuleGetFunction(this.out64, module, name), `cuModuleGetFunction(${name})`);
    return { name, handle: this.out64[0] ?? 0n };
  }

  /**
   * Lets fn launch with `bytes` of dynamic shared memory. Up to 48 KiB needs nothing; past that a
   * kernel must opt in (the launch fails otherwise), up to the device's per-block limit less the
   * kernel's static shared memory. Over that limit no launch can work: a typed error says so.
   */
  allowDynamicShared(fn: KernelFunction, bytes: number): void {
    if (bytes <= DEFAULT_DYNAMIC_SHARED) return;
    if (bytes > this.info.maxSharedPerBlockOptin) {
      throw new KilnError(
        "CUDA_ERROR",
        `${fn.name} needs ${bytes} bytes of shared memory a block; ${this.info.name} allows at most ${this.info.maxSharedPerBlockOptin}`,
      );
    }
    this.check(this.api.cuFuncSetAttribute(fn.handle, CU.FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes), `cuFuncSetAttribute(${fn.name}, max dynamic shared ${bytes})`);
  }

  /** Queues fn<<<grid, block, sharedBytes, stream>>>(args). */
  launch(fn: KernelFunction, grid: Dim3, block: Dim3, args: readonly KernelArg[], sharedBytes = 0): void {
    const table = this.args.write(args);
    this.check(
      this.api.cuLaunchKernel(fn.handle, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, this.stream, table, null),
      `cuLaunchKernel(${fn.name}, grid [${grid.join(", ")}], block [${block.join(", ")}])`,
    );
  }

  /**
   * Records the work `record` queues on the stream into a CUDA graph (relaxed capture mode) and
   * instantiates it. Host copies are not allowed while capturing.
   */
  captureGraph(record: () => void): CudaGraph {
    this.check(this.api.cuStreamBeginCapture_v2(this.stream, CU.STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture");
    let failure: unknown;
    try {
      record();
    } catch (e) {
      failure = e;
    }
    const ended = this.api.cuStreamEndCapture(this.stream, this.out64);
    const graph = this.out64[0] ?? 0n;
    if (failure !== undefined) {
      // cleanup after a failure; its own status would only hide the first error
      if (ended === 0 && graph !== 0n) this.api.cuGraphDestroy(graph);
      throw failure;
    }
    this.check(ended, "cuStreamEndCapture");
    const instantiated = this.api.cuGraphInstantiateWithFlags(this.outB, graph, 0n);
    if (instantiated !== 0) this.api.cuGraphDestroy(graph); // cleanup, as above
    this.check(instantiated, "cuGraphInstantiateWithFlags");
    return { graph, exec: this.outB[0] ?? 0n };
  }

  replay(g: CudaGraph): void {
    this.check(this.api.cuGraphLaunch(g.exec, this.stream), "cuGraphLaunch");
  }

  destroyGraph(g: CudaGraph): void {
    this.check(this.api.cuGraphExecDestroy(g.exec), "cuGraphExecDestroy");
    this.check(this.api.cuGraphDestroy(g.graph), "cuGraphDestroy");
  }

  /** Frees what is still allocated, unloads modules, destroys the stream, releases the context. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const errors: CudaError[] = [];
    const attempt = (status: number, call: string): void => {
      try {
        this.check(status, call);
      } catch (e) {
        if (e instanceof CudaError) errors.push(e);
        else throw e;
      }
    };
    attempt(this.api.cuStreamSynchronize(this.stream), "cuStreamSynchronize");
    for (const ptr of this.allocations.keys()) attempt(this.api.cuMemFree_v2(ptr), "cuMemFree");
    this.allocations.clear();
    for (const m of this.modules) attempt(this.api.cuModuleUnload(m), "cuModuleUnload");
    this.modules.clear();
    attempt(this.api.cuStreamDestroy_v2(this.stream), "cuStreamDestroy");
    attempt(this.api.cuDevicePrimaryCtxRelease_v2(this.info.ordinal), "cuDevicePrimaryCtxRelease");
    this.args.dispose();
    if (errors[0]) throw errors[0];
  }
}

function driverStatusText(api: CudaDriverApi): StatusText {
  return {
    library: "libcuda",
    describe: (status) => {
      const name: [string | null] = [null];
      const text: [string | null] = [null];
      const okName = api.cuGetErrorName(status, name) === 0;
      const okText = api.cuGetErrorString(status, text) === 0;
      return {
        name: okName && name[0] ? name[0] : `CUresult ${status}`,
        text: okText && text[0] ? text[0] : "(the driver has no description for this code)",
      };
    },
  };
}
