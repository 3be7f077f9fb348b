// Conversions between f32 and the 16-bit float formats (bf16 and f16 kept as their bit patterns).
//
// kiln_bf16_to_f32, kiln_f16_to_f32: out[i] = in[i] widened, exact (both ⊂ f32).
// kiln_f32_to_bf16, kiln_f32_to_f16: out[i] = in[i] rounded to the nearest bf16 / f16, ties to
//   even, NaN kept a (quiet) NaN, f16 overflow to infinity — what PyTorch's .to(dtype) does.
// kiln_bf16_to_f16: out[i] = in[i] (bf16) rounded to the nearest f16, as through f32.
// Launch: grid (min(ceil(n / 256), 65535)), block (256); grid-stride.
#include "common.cuh"

extern "C" __global__ void kiln_bf16_to_f32(float* out, const unsigned short* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_widen_bf16(in[i]); }
}

extern "C" __global__ void kiln_f32_to_bf16(unsigned short* out, const float* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_round_bf16(in[i]); }
}

extern "C" __global__ void kiln_f16_to_f32(float* out, const unsigned short* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_widen_f16(in[i]); }
}

extern "C" __global__ void kiln_f32_to_f16(unsigned short* out, const float* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_round_f16(in[i]); }
}

extern "C" __global__ void kiln_bf16_to_f16(unsigned short* out, const unsigned short* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_round_f16(kiln_widen_bf16(in[i])); }
}
