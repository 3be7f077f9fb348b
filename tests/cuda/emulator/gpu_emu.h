// Force-included before kiln's .cu files when they are compiled as host C++ for the emulator
// (tests/cuda/emulator): CUDA's built-in variables, qualifiers, warp shuffles, barriers and
// intrinsics, implemented over the fiber scheduler in fibers.cc. One block runs at a time, its
// threads as fibers in one OS thread, so `__shared__` becomes `static`.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "fibers.h"

#define threadIdx (::kiln_emu::g_threadIdx)
#define blockIdx (::kiln_emu::g_blockIdx)
#define blockDim (::kiln_emu::g_blockDim)
#define gridDim (::kiln_emu::g_gridDim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)

// CUDA's built-in vector types (vector_types.h), as far as generated kernels use them
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline void __syncthreads() { kiln_emu::syncthreads(); }
inline void __syncwarp(unsigned int = 0xffffffffu) { kiln_emu::syncwarp(); }

template <class T>
inline T __shfl_xor_sync(unsigned int, T v, int laneMask, int = 32) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  T r;
  kiln_emu::exchange(&v, &r, sizeof(T), laneMask, true);
  return r;
}

template <class T>
inline T __shfl_sync(unsigned int, T v, int srcLane, int = 32) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  T r;
  kiln_emu::exchange(&v, &r, sizeof(T), srcLane, false);
  return r;
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, 4);
  return u;
}
// round-to-nearest products and sums, never contracted into an FMA
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
// double-precision round-to-nearest arithmetic, never contracted, and double bit casts
inline double __dadd_rn(double a, double b) {
  volatile double r = a + b;
  return r;
}
inline double __dsub_rn(double a, double b) {
  volatile double r = a - b;
  return r;
}
inline double __dmul_rn(double a, double b) {
  volatile double r = a * b;
  return r;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, 8);
  return d;
}
inline double __hiloint2double(int hi, int lo) {
  const unsigned long long bits = ((unsigned long long)(unsigned int)hi << 32) | (unsigned int)lo;
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
