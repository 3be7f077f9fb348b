// Helpers shared by kiln's CUDA kernels. Self-contained on purpose: NVRTC compiles these files
// with no system headers, so nothing here includes one (bf16 is converted by hand, infinity is
// a bit pattern). Every kernel file includes this header; NVRTC receives it as an in-memory
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
