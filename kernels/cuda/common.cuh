// Helpers shared by kiln's CUDA kernels. Self-contained on purpose: NVRTC compiles these files
// with no system headers, so nothing here includes one (bf16, f16 and e4m3 are converted by hand,
// infinity is a bit pattern). Every kernel file includes this header; NVRTC receives it as an in-memory
// header, nvcc finds it beside the .cu file.
#pragma once

#define KILN_FULL_MASK 0xffffffffu
#define KILN_WARP 32

// +infinity for running maxima (no <math.h> under NVRTC)
__device__ __forceinline__ float kiln_inf() { return __int_as_float(0x7f800000); }

// bf16 bit pattern → f32: the bf16 bits are the high half of the f32 bits.
__device__ __forceinline__ float kiln_widen_bf16(unsigned short bits) {
  return __uint_as_float(((unsigned int)bits) << 16);
}

// f32 → nearest bf16 bit pattern, ties to even; NaN stays NaN (quiet), infinities stay.
__device__ __forceinline__ unsigned short kiln_round_bf16(float x) {
  const unsigned int u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// f16 bit pattern → f32, exact. The magnitude bits shifted into f32 position read as a float
// 2^112 too small (normal and subnormal halves alike, as f32 has the wider exponent), so one
// multiply by 2^112 rebiases; infinities and NaNs (exponent 31) keep f32's all-ones exponent.
__device__ __forceinline__ float kiln_widen_f16(unsigned short bits) {
  const unsigned int mag = ((unsigned int)bits & 0x7fffu) << 13;
  const unsigned int sign = ((unsigned int)bits & 0x8000u) << 16;
  const unsigned int wide = mag >= (0x7c00u << 13) ? (mag | 0x7f800000u)
                                                   : __float_as_uint(__uint_as_float(mag) * __uint_as_float(0x77800000u));
  return __uint_as_float(sign | wide);
}

// f32 → nearest f16 bit pattern, ties to even; NaN stays a (quiet) NaN, |x| ≥ 65520 becomes
// infinity. Below 2^-14 the result is subnormal: adding 0.5 rounds |x| to a multiple of 2^-24
// (the f32 spacing at 0.5) in the float unit, and the f32 bits past 0.5's are the f16's.
__device__ __forceinline__ unsigned short kiln_round_f16(float x) {
  const unsigned int u = __float_as_uint(x);
  const unsigned int sign = (u >> 16) & 0x8000u;
  const unsigned int a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);
  if (a < 0x38800000u) return (unsigned short)(sign | (__float_as_uint(__uint_as_float(a) + 0.5f) - 0x3f000000u));
  const unsigned int r = a - 0x38000000u;  // exponent rebiased from 127 to 15
  return (unsigned short)(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
}

// e4m3 bit pattern (an fp8 KV cache: sign, 4 exponent bits of bias 7, 3 mantissa bits; no
// infinities, NaN = 0x7f / 0xff, largest finite 448) → f32, exact. Subnormals (exponent 0) are
// m · 2^-9, computed as a float product so a flush-to-zero mode cannot lose them; normals move
// their exponent and mantissa into f32 position and rebias 7 → 127.
__device__ __forceinline__ float kiln_widen_e4m3(unsigned char bits) {
  const unsigned int b = bits;
  const unsigned int sign = (b & 0x80u) << 24;
  const unsigned int mag = b & 0x7fu;
  if (mag == 0x7fu) return __uint_as_float(sign | 0x7fc00000u);
  const float v = mag < 8u ? (float)mag * 0.001953125f : __uint_as_float((mag << 20) + (120u << 23));
  return __uint_as_float(sign | __float_as_uint(v));
}

// f32 → nearest e4m3 bit pattern, ties to even; |x| ≥ 448 and infinities saturate to ±448 (as
// vLLM's saturating conversion does: e4m3 has no infinity); NaN stays NaN. Below 2^-6 the result
// is subnormal: adding 2^14 rounds |x| to a multiple of 2^-9 (the f32 spacing at 2^14) in the
// float unit, and the f32 bits past 2^14's count the 2^-9 steps (8 of them reach 2^-6, 0x08).
// compiler/render/cuda.ts's CUDA_FP8_PRELUDE restates this for generated kernels, bit for bit.
__device__ __forceinline__ unsigned char kiln_round_e4m3(float x) {
  const unsigned int u = __float_as_uint(x);
  const unsigned int sign = (u >> 24) & 0x80u;
  const unsigned int a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (unsigned char)(sign | 0x7fu);
  if (a >= 0x43e00000u) return (unsigned char)(sign | 0x7eu);  // 448
  if (a < 0x3c800000u) return (unsigned char)(sign | (__float_as_uint(__uint_as_float(a) + 16384.0f) - 0x46800000u));
  const unsigned int r = a - 0x3c000000u;  // exponent rebiased from 127 to 7
  return (unsigned char)(sign | ((r + 0x7ffffu + ((r >> 20) & 1u)) >> 20));
}

// The 16-bit formats as types, for kernels templated over them: widen (exact) and round (to
// nearest even) between the bit pattern and f32.
struct kiln_bf16_format {
  __device__ static __forceinline__ float widen(unsigned short bits) { return kiln_widen_bf16(bits); }
  __device__ static __forceinline__ unsigned short round(float x) { return kiln_round_bf16(x); }
};
struct kiln_f16_format {
  __device__ static __forceinline__ float widen(unsigned short bits) { return kiln_widen_f16(bits); }
  __device__ static __forceinline__ unsigned short round(float x) { return kiln_round_f16(x); }
};

// e4m3 as a format type (a byte per element), for kernels templated over the cache format
struct kiln_e4m3_format {
  __device__ static __forceinline__ float widen(unsigned char bits) { return kiln_widen_e4m3(bits); }
  __device__ static __forceinline__ unsigned char round(float x) { return kiln_round_e4m3(x); }
};

// Butterfly reductions over the 32 lanes of a warp; every lane gets the result. All lanes must
// call them (full mask).
__device__ __forceinline__ float kiln_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KILN_FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ double kiln_warp_sum_f64(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KILN_FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ float kiln_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(KILN_FULL_MASK, v, o));
  return v;
}

// Grid-stride loop bounds: element i of n handled by the calling thread.
#define KILN_GRID_STRIDE(i, n)                                                              \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
       i += (long long)blockDim.x * gridDim.x)
