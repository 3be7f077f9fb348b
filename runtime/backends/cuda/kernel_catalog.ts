/**
 * The hand-written CUDA kernels (kernels/cuda/*.cu) as the host sees them: which file defines
 * each, and its parameter list as C types. Launches are typed from this table, so a call with
 * the wrong arity or a pointer where an int belongs does not compile; a test reads the .cu
 * sources and checks this table against their extern "C" signatures.
 */
import type { ArgKind, KernelArg } from "./kernel_args.ts";

export const KERNEL_FILES = [
  "convert.cu",
  "elementwise.cu",
  "paged_attention.cu",
  "sampling.cu",
  "moe_experts.cu",
  "short_conv.cu",
  "linear_attention.cu",
  "mamba_scan.cu",
  "gemv.cu",
  "profile.cu",
] as const;
export type KernelFile = (typeof KERNEL_FILES)[number];

/** The header every kernel file includes; NVRTC receives it in memory. */
export const KERNEL_HEADERS = ["common.cuh"] as const;

interface KernelSpec {
  readonly file: KernelFile;
  readonly args: readonly ArgKind[];
}

// out, x, w, bias, hasBias, M, N, K, split
const GEMV = ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32"] as const;
const ATTENTION = {
  file: "paged_attention.cu",
  // out, partial, q, kCache, vCache, tokenSeq, tokenPos, blockTables, maxBlocksPerSeq, blockSize,
  // numHeads, numKvHeads, headDim, scale, window, softcap, numSplits
  args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32", "f32", "i32", "f32", "i32"],
} as const;
// an e4m3 cache: ATTENTION's arguments, then the layer's kScale and vScale (the cache holds value / scale)
const ATTENTION_FP8 = { file: "paged_attention.cu", args: [...ATTENTION.args, "f32", "f32"] } as const;

export const KERNELS = {
  kiln_bf16_to_f32: { file: "convert.cu", args: ["ptr", "ptr", "i64"] },
  kiln_f32_to_bf16: { file: "convert.cu", args: ["ptr", "ptr", "i64"] },
  kiln_f16_to_f32: { file: "convert.cu", args: ["ptr", "ptr", "i64"] },
  kiln_f32_to_f16: { file: "convert.cu", args: ["ptr", "ptr", "i64"] },
  kiln_bf16_to_f16: { file: "convert.cu", args: ["ptr", "ptr", "i64"] },
  kiln_gemv_bf16: { file: "gemv.cu", args: GEMV },
  kiln_gemv_f16: { file: "gemv.cu", args: GEMV },
  kiln_gemv_f32: { file: "gemv.cu", args: GEMV },
  // out, a, b, n, bn: a GEMM's bias where cuBLASLt has no bias epilogue for the shape
  kiln_add: { file: "elementwise.cu", args: ["ptr", "ptr", "ptr", "i64", "i64"] },
  // out, x, n, factor
  kiln_scale: { file: "elementwise.cu", args: ["ptr", "ptr", "i64", "f32"] },
  kiln_paged_attention: ATTENTION,
  kiln_paged_attention_softcap: ATTENTION,
  kiln_paged_attention_bf16: ATTENTION,
  kiln_paged_attention_softcap_bf16: ATTENTION,
  kiln_paged_attention_f16: ATTENTION,
  kiln_paged_attention_softcap_f16: ATTENTION,
  kiln_paged_attention_fp8: ATTENTION_FP8,
  kiln_paged_attention_softcap_fp8: ATTENTION_FP8,
  kiln_attention_combine: { file: "paged_attention.cu", args: ["ptr", "ptr", "i32", "i32", "i32", "i32"] },
  kiln_argmax_rows: { file: "sampling.cu", args: ["ptr", "ptr", "i32", "i32"] },
  // partVal, partAt, logits, S, V, B
  kiln_argmax_partial: { file: "sampling.cu", args: ["ptr", "ptr", "ptr", "i32", "i32", "i32"] },
  // out, partVal, partAt, S, V, B
  kiln_argmax_final: { file: "sampling.cu", args: ["ptr", "ptr", "ptr", "i32", "i32", "i32"] },
  // out, logits (adjusted in place), params, S, V
  kiln_sample_rows: { file: "sampling.cu", args: ["ptr", "ptr", "ptr", "i32", "i32"] },
  // experts, weights, x, router, T, H, E, K, renorm
  kiln_moe_route: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32"] },
  // h, x, w13, experts, T, H, I, K
  kiln_moe_act: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  kiln_moe_act_bf16: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  kiln_moe_act_f16: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  // out, h, w2, experts, weights, T, H, I, K
  kiln_moe_down: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  kiln_moe_down_bf16: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  kiln_moe_down_f16: { file: "moe_experts.cu", args: ["ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32"] },
  // out, x, w, bias, hasBias, states, queryStartLoc, slots, S, D, L
  kiln_short_conv: { file: "short_conv.cu", args: ["ptr", "ptr", "ptr", "ptr", "i32", "ptr", "ptr", "ptr", "i32", "i32", "i32"] },
  // out, qkv, states, decays, queryStartLoc, slots, S, heads, D
  kiln_linear_attention: { file: "linear_attention.cu", args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32"] },
  // out, u, delta, aLog, B, C, D, z, states, queryStartLoc, slots, S, I, N
  kiln_selective_scan: {
    file: "mamba_scan.cu",
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32"],
  },
  // out, x, dt, dtBias, aLog, B, C, D, states, queryStartLoc, slots, S, H, P, G, N, dtMin, dtMax
  kiln_ssd_scan: {
    file: "mamba_scan.cu",
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32", "f32", "f32"],
  },
  // nanoseconds
  kiln_spin: { file: "profile.cu", args: ["i64"] },
} as const satisfies Record<string, KernelSpec>;

export type KernelName = keyof typeof KERNELS;

type ArgValue<K> = K extends "ptr" ? bigint : number;

// homomorphic over the tuple type parameter, so the result is a tuple of the same length
type ArgValues<T extends readonly ArgKind[]> = { readonly [I in keyof T]: ArgValue<T[I]> };

/** The launch values of kernel N, one per parameter: bigint for pointers, number otherwise. */
export type KernelArgValues<N extends KernelName> = ArgValues<(typeof KERNELS)[N]["args"]>;

/** Pairs each value with its parameter's kind, checking the count at run time as well. */
export function kernelArgs(name: KernelName, values: readonly (bigint | number)[]): KernelArg[] {
  const kinds: readonly ArgKind[] = KERNELS[name].args;
  if (values.length !== kinds.length) throw new Error(`${name} takes ${kinds.length} arguments, got ${values.length}`);
  return kinds.map((kind, i): KernelArg => {
    const v = values[i];
    if (kind === "ptr") {
      if (typeof v !== "bigint") throw new TypeError(`${name} argument ${i} must be a device pointer`);
      return { kind, value: v };
    }
    if (typeof v !== "number") throw new TypeError(`${name} argument ${i} must be a number`);
    return { kind, value: v };
  });
}
