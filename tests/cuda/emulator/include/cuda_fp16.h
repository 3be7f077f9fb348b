// Host stand-in for CUDA's cuda_fp16.h when an NVRTC program is compiled for the emulator:
// __half as its bit pattern, with round-to-nearest-even conversions. Needs gpu_emu.h first.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

struct __half {
  unsigned short x;
};
struct __half2 {
  __half x, y;
};

inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.x & 0x8000u) << 16;
  const uint32_t e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
  uint32_t bits;
  if (e == 0x1f) {
    bits = sign | 0x7f800000u | (m << 13);
  } else if (e == 0) {
    const float v = std::ldexp(static_cast<float>(m), -24);  // zero or subnormal
    return sign ? -v : v;
  } else {
    bits = sign | ((e + 112) << 23) | (m << 13);
  }
  return __uint_as_float(bits);
}

inline __half __float2half(float f) {
  const uint32_t u = __float_as_uint(f);
  const unsigned short sign = static_cast<unsigned short>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  uint32_t h;
  if (a > 0x7f800000u) {
    h = 0x7e00u;  // NaN
  } else if (a >= 0x477ff000u) {
    h = 0x7c00u;  // rounds past 65504: infinity
  } else if (a >= 0x38800000u) {
    const uint32_t m = a - 0x38000000u;  // exponent rebiased from 127 to 15
    h = (m + 0xfffu + ((m >> 13) & 1u)) >> 13;
  } else if (a < 0x33000000u) {
    h = 0;  // below half the smallest subnormal
  } else {
    const uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    h = mant >> shift;
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
  }
  return __half{static_cast<unsigned short>(sign | h)};
}

inline float2 __half22float2(__half2 h) { return make_float2(__half2float(h.x), __half2float(h.y)); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half(a), __float2half(b)}; }
