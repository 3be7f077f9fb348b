/**
 * kiln's one dtype vocabulary. Every buffer element is one of these; compute is f32 whatever the
 * storage (16-bit values are widened exactly when read and rounded to nearest even when written).
 * Subsets are named where a place accepts fewer: the IR's value and parameter types (compiler/ir.ts),
 * the state slots' storage. Names outside kiln's own (safetensors' "BF16", Hugging Face's
 * "bfloat16", the CLI's "bfloat16" spelling) are translated at the edge that reads them.
 */
export const FLOAT_DTYPES = ["f32", "bf16", "f16"] as const;
/** storage of weights, activations and caches */
export type FloatDtype = (typeof FLOAT_DTYPES)[number];
/** the 16-bit formats */
export type HalfDtype = Exclude<FloatDtype, "f32">;
/**
 * Storage of the paged KV cache on CUDA: a float storage, or fp8 (e4m3: bias 7, no infinities,
 * NaN 0x7f/0xff, largest finite 448) holding value / scale with one scale per layer for K and
 * one for V (vLLM's kv_cache_dtype "fp8"). Only KV caches take fp8: weights and activations
 * stay FloatDtype.
 */
export const KV_DTYPES = [...FLOAT_DTYPES, "fp8"] as const;
export type KvDtype = (typeof KV_DTYPES)[number];
/** any buffer element: a float storage, fp8 (KV caches only), or i32 (token ids, positions, slots) */
export type Dtype = KvDtype | "i32";

export const DTYPE_BYTES = { f32: 4, bf16: 2, f16: 2, fp8: 1, i32: 4 } as const satisfies Record<Dtype, number>;

export function isHalf(d: FloatDtype): d is HalfDtype {
  return d !== "f32";
}

/** Bytes per element stored as `d`. */
export function dtypeBytes(d: Dtype): 1 | 2 | 4 {
  return DTYPE_BYTES[d];
}
