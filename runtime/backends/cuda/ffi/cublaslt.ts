/**
 * koffi declarations of cuBLASLt (libcublasLt). Declarations only: the GEMM wrapper is
 * runtime/backends/cuda/cublaslt.ts. Handles, descriptors, device pointers, the stream and pointers into
 * koffi-allocated native memory (alpha, beta, heuristic results) are all `uint64_t`; attribute
 * values are passed as small typed arrays.
 */
import type { LibraryHandle } from "koffi";

export type CublasStatus = number;

export interface CublasLtApi {
  cublasLtCreate(handle: BigUint64Array): CublasStatus;
  cublasLtDestroy(handle: bigint): CublasStatus;
  cublasLtGetVersion(): number | bigint;
  cublasLtGetStatusName(status: number): string | null;
  cublasLtGetStatusString(status: number): string | null;
  cublasLtMatmulDescCreate(desc: BigUint64Array, computeType: number, scaleType: number): CublasStatus;
  cublasLtMatmulDescDestroy(desc: bigint): CublasStatus;
  cublasLtMatmulDescSetAttribute(desc: bigint, attribute: number, value: ArrayBufferView, bytes: number): CublasStatus;
  cublasLtMatrixLayoutCreate(layout: BigUint64Array, type: number, rows: number, cols: number, ld: number): CublasStatus;
  cublasLtMatrixLayoutDestroy(layout: bigint): CublasStatus;
  cublasLtMatmulPreferenceCreate(pref: BigUint64Array): CublasStatus;
  cublasLtMatmulPreferenceDestroy(pref: bigint): CublasStatus;
  cublasLtMatmulPreferenceSetAttribute(pref: bigint, attribute: number, value: ArrayBufferView, bytes: number): CublasStatus;
  cublasLtMatmulAlgoGetHeuristic(
    handle: bigint,
    desc: bigint,
    aLayout: bigint,
    bLayout: bigint,
    cLayout: bigint,
    dLayout: bigint,
    pref: bigint,
    requested: number,
    results: bigint,
    returned: Int32Array,
  ): CublasStatus;
  cublasLtMatmul(
    handle: bigint,
    desc: bigint,
    alpha: bigint,
    a: bigint,
    aLayout: bigint,
    b: bigint,
    bLayout: bigint,
    beta: bigint,
    c: bigint,
    cLayout: bigint,
    d: bigint,
    dLayout: bigint,
    algo: bigint,
    workspace: bigint,
    workspaceBytes: number,
    stream: bigint,
  ): CublasStatus;
}

/** Enum values from cublasLt.h / library_types.h. */
export const CUBLASLT = {
  STATUS_SUCCESS: 0,
  COMPUTE_32F: 68,
  R_32F: 0,
  R_16F: 2,
  R_16BF: 14,
  OP_N: 0,
  OP_T: 1,
  MATMUL_DESC_TRANSA: 3,
  MATMUL_DESC_TRANSB: 4,
  /** cublasLtEpilogue_t, uint32 */
  MATMUL_DESC_EPILOGUE: 7,
  /** const void *: a bias vector of D's row count (N here), of D's type */
  MATMUL_DESC_BIAS_POINTER: 8,
  EPILOGUE_BIAS: 4,
  PREF_MAX_WORKSPACE_BYTES: 1,
  /** sizeof(cublasLtMatmulHeuristicResult_t): algo (64 bytes), workspaceSize, state, wavesCount, reserved[4] */
  HEURISTIC_RESULT_BYTES: 96,
  HEURISTIC_WORKSPACE_OFFSET: 64,
  HEURISTIC_STATE_OFFSET: 72,
} as const;

export function bindCublasLt(lib: LibraryHandle): CublasLtApi {
  return {
    cublasLtCreate: lib.func("int cublasLtCreate(uint64_t *handle)"),
    cublasLtDestroy: lib.func("int cublasLtDestroy(uint64_t handle)"),
    cublasLtGetVersion: lib.func("size_t cublasLtGetVersion()"),
    cublasLtGetStatusName: lib.func("const char *cublasLtGetStatusName(int status)"),
    cublasLtGetStatusString: lib.func("const char *cublasLtGetStatusString(int status)"),
    cublasLtMatmulDescCreate: lib.func("int cublasLtMatmulDescCreate(uint64_t *desc, int computeType, int scaleType)"),
    cublasLtMatmulDescDestroy: lib.func("int cublasLtMatmulDescDestroy(uint64_t desc)"),
    cublasLtMatmulDescSetAttribute: lib.func(
      "int cublasLtMatmulDescSetAttribute(uint64_t desc, int attribute, const void *value, size_t bytes)",
    ),
    cublasLtMatrixLayoutCreate: lib.func(
      "int cublasLtMatrixLayoutCreate(uint64_t *layout, int type, uint64_t rows, uint64_t cols, int64_t ld)",
    ),
    cublasLtMatrixLayoutDestroy: lib.func("int cublasLtMatrixLayoutDestroy(uint64_t layout)"),
    cublasLtMatmulPreferenceCreate: lib.func("int cublasLtMatmulPreferenceCreate(uint64_t *pref)"),
    cublasLtMatmulPreferenceDestroy: lib.func("int cublasLtMatmulPreferenceDestroy(uint64_t pref)"),
    cublasLtMatmulPreferenceSetAttribute: lib.func(
      "int cublasLtMatmulPreferenceSetAttribute(uint64_t pref, int attribute, const void *value, size_t bytes)",
    ),
    cublasLtMatmulAlgoGetHeuristic: lib.func(
      "int cublasLtMatmulAlgoGetHeuristic(uint64_t handle, uint64_t desc, uint64_t aLayout, uint64_t bLayout, " +
        "uint64_t cLayout, uint64_t dLayout, uint64_t pref, int requested, uint64_t results, int *returned)",
    ),
    cublasLtMatmul: lib.func(
      "int cublasLtMatmul(uint64_t handle, uint64_t desc, uint64_t alpha, uint64_t a, uint64_t aLayout, " +
        "uint64_t b, uint64_t bLayout, uint64_t beta, uint64_t c, uint64_t cLayout, uint64_t d, uint64_t dLayout, " +
        "uint64_t algo, uint64_t workspace, size_t workspaceBytes, uint64_t stream)",
    ),
  };
}
