/**
 * GEMMs through cuBLASLt: row-major Y[M,N] = X[M,K] · W[N,K]ᵀ (PyTorch Linear layout), fp32 in
 * and out with fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32), or bf16 (or f16) X/W with an
 * fp32 Y.
 *
 * cuBLASLt is column-major, so the product is stated transposed: Yᵀ (N×M, ld N) = op(A)·B with
 * A = W seen as a K×N column-major matrix (ld K) and TRANSA = T, B = Xᵀ as K×M (ld K), TRANSB = N.
 * For each (dtype, M, N, K) a plan — descriptor, layouts, and the algorithm
 * cublasLtMatmulAlgoGetHeuristic ranks first for a 32 MiB workspace — is made once and kept.
 */
import * as koffi from "koffi";
import { KilnError } from "../../engine/errors.ts";
import { check, type StatusText } from "./check.ts";
import type { CudaDevice, DevicePtr } from "./device.ts";
import { bindCublasLt, CUBLASLT, type CublasLtApi } from "./ffi/cublaslt.ts";
import { LIBCUBLASLT, locateLibrary, SYSTEM_PROBE, type HostProbe } from "./library_locator.ts";
import type { FloatDtype } from "../../../compiler/dtype.ts";

/** the cuBLASLt data type of X and W for each device format */
const INPUT_TYPES = { f32: CUBLASLT.R_32F, bf16: CUBLASLT.R_16BF, f16: CUBLASLT.R_16F } as const satisfies Record<FloatDtype, number>;

interface Plan {
  readonly desc: bigint;
  readonly layouts: readonly [bigint, bigint, bigint];
  /** native memory holding the heuristic result; its first 64 bytes are the algorithm */
  readonly result: unknown;
  readonly resultAddress: bigint;
}

const WORKSPACE_BYTES = 32 * 1024 * 1024;

export class CublasLt {
  private readonly plans = new Map<string, Plan>();
  /** GEMM shapes cuBLASLt has no bias-epilogue algorithm for */
  private readonly noBiasEpilogue = new Set<string>();
  private readonly scalars: unknown;
  private readonly alpha: bigint;
  private readonly beta: bigint;
  private readonly workspace: DevicePtr;
  private readonly out64 = new BigUint64Array(1);
  private disposed = false;

  private constructor(
    private readonly api: CublasLtApi,
    private readonly text: StatusText,
    private readonly device: CudaDevice,
    private readonly handle: bigint,
    readonly libraryPath: string,
    /** e.g. 130100 */
    readonly version: number,
  ) {
    // alpha = 1, beta = 0 as fp32 (the scale type), in native memory that outlives every call
    this.scalars = koffi.alloc("float", 2);
    const view = new Float32Array(koffi.view(this.scalars, 8));
    view[0] = 1;
    view[1] = 0;
    this.alpha = koffi.address(this.scalars);
    this.beta = this.alpha + 4n;
    this.workspace = device.alloc(WORKSPACE_BYTES);
  }

  static open(device: CudaDevice, opts: { probe?: HostProbe } = {}): CublasLt {
    // a cuBLASLt of a newer CUDA major than the driver cannot run: passed over
    const { path, library: api } = locateLibrary(LIBCUBLASLT, (p) => bindCublasLt(koffi.load(p)), opts.probe ?? SYSTEM_PROBE, { driverVersion: device.info.driverVersion });
    const text: StatusText = {
      library: "libcublasLt",
      describe: (status) => ({
        name: api.cublasLtGetStatusName(status) ?? `cublasStatus_t ${status}`,
        text: api.cublasLtGetStatusString(status) ?? "(no description)",
      }),
    };
    const out = new BigUint64Array(1);
    check(api.cublasLtCreate(out), "cublasLtCreate", text);
    return new CublasLt(api, text, device, out[0] ?? 0n, path, Number(api.cublasLtGetVersion()));
  }

  /**
   * y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N], f32, by cuBLASLt's bias epilogue), queued on the
   * device's stream. f32: all three fp32. bf16 / f16: x and w in that format, y fp32. Returns whether the bias
   * was added: false when it was not given, or when cuBLASLt offers no algorithm with the bias
   * epilogue for this shape (then the caller adds it).
   */
  matmul(dtype: FloatDtype, y: DevicePtr, x: DevicePtr, w: DevicePtr, M: number, N: number, K: number, bias?: DevicePtr): boolean {
    if (this.disposed) throw new Error("cuBLASLt has been disposed");
    if (M === 0 || N === 0) return bias !== undefined;
    if (bias !== undefined && this.noBiasEpilogue.has(`${dtype}:${M}:${N}:${K}`)) bias = undefined;
    let plan: Plan;
    try {
      plan = this.plan(dtype, M, N, K, bias);
    } catch (e) {
      if (bias === undefined) throw e;
      // no algorithm with the epilogue: this shape runs without it from now on
      this.noBiasEpilogue.add(`${dtype}:${M}:${N}:${K}`);
      bias = undefined;
      plan = this.plan(dtype, M, N, K, undefined);
    }
    const [a, b, c] = plan.layouts;
    if (bias !== undefined) {
      // the plan's descriptor serves every GEMM of this shape: it takes this call's bias
      check(this.api.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT.MATMUL_DESC_BIAS_POINTER, BigUint64Array.of(bias), 8), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)", this.text);
    }
    check(
      this.api.cublasLtMatmul(this.handle, plan.desc, this.alpha, w, a, x, b, this.beta, y, c, y, c, plan.resultAddress, this.workspace, WORKSPACE_BYTES, this.device.stream),
      `cublasLtMatmul(${dtype}, M=${M}, N=${N}, K=${K})`,
      this.text,
    );
    return bias !== undefined;
  }

  private plan(dtype: FloatDtype, M: number, N: number, K: number, bias: DevicePtr | undefined): Plan {
    const key = `${dtype}:${M}:${N}:${K}${bias === undefined ? "" : ":bias"}`;
    const cached = this.plans.get(key);
    if (cached) return cached;
    const api = this.api;
    const what = `(${dtype}, M=${M}, N=${N}, K=${K}${bias === undefined ? "" : ", bias"})`;
    const inType = INPUT_TYPES[dtype];
    const out = this.out64;
    check(api.cublasLtMatmulDescCreate(out, CUBLASLT.COMPUTE_32F, CUBLASLT.R_32F), `cublasLtMatmulDescCreate${what}`, this.text);
    const desc = out[0] ?? 0n;
    const created: bigint[] = [];
    try {
      check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT.MATMUL_DESC_TRANSA, Int32Array.of(CUBLASLT.OP_T), 4), "cublasLtMatmulDescSetAttribute(TRANSA)", this.text);
      check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT.MATMUL_DESC_TRANSB, Int32Array.of(CUBLASLT.OP_N), 4), "cublasLtMatmulDescSetAttribute(TRANSB)", this.text);
      if (bias !== undefined) {
        // set before the heuristic, which reads the bias pointer's alignment
        check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT.MATMUL_DESC_EPILOGUE, Uint32Array.of(CUBLASLT.EPILOGUE_BIAS), 4), "cublasLtMatmulDescSetAttribute(EPILOGUE)", this.text);
        check(api.cublasLtMatmulDescSetAttribute(desc, CUBLASLT.MATMUL_DESC_BIAS_POINTER, BigUint64Array.of(bias), 8), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)", this.text);
      }
      const layout = (type: number, rows: number, cols: number, ld: number, name: string): bigint => {
        check(api.cublasLtMatrixLayoutCreate(out, type, rows, cols, ld), `cublasLtMatrixLayoutCreate(${name}${what})`, this.text);
        const l = out[0] ?? 0n;
        created.push(l);
        return l;
      };
      const a = layout(inType, K, N, K, "W"); // W [N,K] row-major = K×N column-major
      const b = layout(inType, K, M, K, "X"); // X [M,K] row-major = K×M column-major
      const c = layout(CUBLASLT.R_32F, N, M, N, "Y"); // Y [M,N] row-major = N×M column-major
      const result = koffi.alloc("uint8", CUBLASLT.HEURISTIC_RESULT_BYTES);
      const resultAddress = koffi.address(result);
      try {
        this.chooseAlgorithm(desc, a, b, c, result, what);
      } catch (e) {
        koffi.free(result);
        throw e;
      }
      const plan: Plan = { desc, layouts: [a, b, c], result, resultAddress };
      this.plans.set(key, plan);
      return plan;
    } catch (e) {
      // cleanup after a failure; its own status would only hide the first error
      for (const l of created) api.cublasLtMatrixLayoutDestroy(l);
      api.cublasLtMatmulDescDestroy(desc);
      throw e;
    }
  }

  /** Writes the heuristic's first choice into `result` (native memory of HEURISTIC_RESULT_BYTES). */
  private chooseAlgorithm(desc: bigint, a: bigint, b: bigint, c: bigint, result: unknown, what: string): void {
    const api = this.api;
    check(api.cublasLtMatmulPreferenceCreate(this.out64), "cublasLtMatmulPreferenceCreate", this.text);
    const pref = this.out64[0] ?? 0n;
    try {
      check(
        api.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT.PREF_MAX_WORKSPACE_BYTES, BigUint64Array.of(BigInt(WORKSPACE_BYTES)), 8),
        "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)",
        this.text,
      );
      const returned = new Int32Array(1);
      check(api.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, a, b, c, c, pref, 1, koffi.address(result), returned), `cublasLtMatmulAlgoGetHeuristic${what}`, this.text);
      if ((returned[0] ?? 0) < 1) throw new KilnError("CUDA_ERROR", `cuBLASLt has no algorithm for the GEMM ${what}`);
      const state = new DataView(koffi.view(result, CUBLASLT.HEURISTIC_RESULT_BYTES)).getInt32(CUBLASLT.HEURISTIC_STATE_OFFSET, true);
      check(state, `cublasLtMatmulAlgoGetHeuristic${what} (the chosen algorithm's state)`, this.text);
    } finally {
      check(api.cublasLtMatmulPreferenceDestroy(pref), "cublasLtMatmulPreferenceDestroy", this.text);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.plans.values()) {
      for (const l of p.layouts) check(this.api.cublasLtMatrixLayoutDestroy(l), "cublasLtMatrixLayoutDestroy", this.text);
      check(this.api.cublasLtMatmulDescDestroy(p.desc), "cublasLtMatmulDescDestroy", this.text);
      koffi.free(p.result);
    }
    this.plans.clear();
    this.device.free(this.workspace);
    koffi.free(this.scalars);
    check(this.api.cublasLtDestroy(this.handle), "cublasLtDestroy", this.text);
  }
}
