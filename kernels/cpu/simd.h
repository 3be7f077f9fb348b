// 8-lane float vectors via GCC/Clang vector extensions. With -march=native on an AVX2 machine these
// compile to ymm registers and FMA (GCC contracts `acc += a * b`); elsewhere they still compile
// (split into SSE/NEON halves), so the addon builds on any host without intrinsics per ISA.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace kiln {

constexpr size_t kLanes = 8;

typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
// Unaligned, may-alias views: typed arrays give only element alignment.
typedef float f32x8_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef uint16_t u16x8_u __attribute__((vector_size(16), aligned(2), may_alias));

// Spelled out: `f32x8{} + s` would cost an add (0 + s is not s for s = -0) before the broadcast.
inline f32x8 splat(float s) { return f32x8{s, s, s, s, s, s, s, s}; }

inline f32x8 load8(const float* p) { return *reinterpret_cast<const f32x8_u*>(p); }

// bf16 is the high half of an f32: widen the 16-bit pattern and shift it into place.
inline f32x8 load8(const uint16_t* p) {
  u16x8 h = *reinterpret_cast<const u16x8_u*>(p);
  u32x8 bits = __builtin_convertvector(h, u32x8) << 16;
  return __builtin_bit_cast(f32x8, bits);
}

inline void store8(float* p, f32x8 v) { *reinterpret_cast<f32x8_u*>(p) = v; }

inline float toF32(float v) { return v; }
inline float toF32(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

inline float hsum(f32x8 v) {
  f32x4 s = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  s += __builtin_shufflevector(s, s, 2, 3, 0, 1);
  s += __builtin_shufflevector(s, s, 1, 0, 3, 2);
  return s[0];
}

inline float hmax(f32x8 v) {
  f32x4 a = __builtin_shufflevector(v, v, 0, 1, 2, 3), b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  f32x4 s = a > b ? a : b;
  f32x4 t = __builtin_shufflevector(s, s, 2, 3, 0, 1);
  s = s > t ? s : t;
  t = __builtin_shufflevector(s, s, 1, 0, 3, 2);
  s = s > t ? s : t;
  return s[0];
}

// e^x for x <= 0 (softmax after max subtraction), ~2 ulp: x = n ln2 + r with |r| <= ln2/2, a
// degree-7 Taylor polynomial for e^r (truncation error < 6e-9), then 2^n added into the exponent.
// Inputs below -87.3 are clamped so 2^n stays a normal float (the result is ~1e-38, i.e. zero
// for a softmax weight).
inline f32x8 exp8(f32x8 x) {
  const f32x8 lo = splat(-87.3f);
  x = x < lo ? lo : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  f32x8 n = (x * 1.44269504088896341f + shifter) - shifter;
  f32x8 r = x - n * 0.693359375f;  // ln2 split in a short high part and the rest
  r = r - n * -2.12194440e-4f;
  f32x8 p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  i32x8 bits = __builtin_bit_cast(i32x8, p) + (__builtin_convertvector(n, i32x8) << 23);
  return __builtin_bit_cast(f32x8, bits);
}

// The horizontal sums of a[0..7] as one vector: [sum(a[0]), ..., sum(a[7])]. Three rounds of
// pairwise adds (24 lane ops) instead of eight separate hsums.
inline f32x8 hsum8(const f32x8 a[8]) {
  auto hadd = [](f32x8 x, f32x8 y) {  // per 128-bit lane: [x0+x1, x2+x3, y0+y1, y2+y3]
    return __builtin_shufflevector(x, y, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(x, y, 1, 3, 9, 11, 5, 7, 13, 15);
  };
  const f32x8 lo = hadd(hadd(a[0], a[1]), hadd(a[2], a[3]));  // [a0..a3 low halves | a0..a3 high]
  const f32x8 hi = hadd(hadd(a[4], a[5]), hadd(a[6], a[7]));
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
}

// dot(a, b) over n floats with two vector accumulators (hides FMA latency) and a scalar tail.
inline float dot(const float* a, const float* b, size_t n) {
  f32x8 s0{}, s1{};
  size_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    s0 += load8(a + i) * load8(b + i);
    s1 += load8(a + i + kLanes) * load8(b + i + kLanes);
  }
  if (i + kLanes <= n) {
    s0 += load8(a + i) * load8(b + i);
    i += kLanes;
  }
  float s = hsum(s0 + s1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[0..n) += alpha * x[0..n)
inline void axpy(float* y, float alpha, const float* x, size_t n) {
  const f32x8 a = splat(alpha);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store8(y + i, load8(y + i) + a * load8(x + i));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

inline void scale(float* y, float alpha, size_t n) {
  const f32x8 a = splat(alpha);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store8(y + i, load8(y + i) * a);
  for (; i < n; ++i) y[i] *= alpha;
}

}  // namespace kiln
