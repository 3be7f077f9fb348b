/**
 * The CUDA kernels that round f32 values to each 16-bit format (weights and GEMM inputs held in
 * bf16 or f16). The dtypes themselves are compiler/dtype.ts's.
 */
import type { HalfDtype } from "../../../compiler/dtype.ts";
import type { KernelName } from "./kernel_catalog.ts";

/** The kernel that rounds f32 values to each 16-bit format, (out, in, n). */
export const ROUND_KERNELS = { bf16: "kiln_f32_to_bf16", f16: "kiln_f32_to_f16" } as const satisfies Record<HalfDtype, KernelName>;
