// Conversions between f32 and bf16 (bf16 kept as its 16-bit pattern).
//
// kiln_bf16_to_f32: out[i] = in[i] widened, exact (bf16 ⊂ f32).
// kiln_f32_to_bf16: out[i] = in[i] rounded to the nearest bf16, ties to even, NaN kept a (quiet)
//   NaN — what PyTorch's .to(torch.bfloat16) does.
// Launch: grid (min(ceil(n / 256), 65535)), block (256); grid-stride.
#include "common.cuh"

extern "C" __global__ void kiln_bf16_to_f32(float* out, const unsigned short* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_widen_bf16(in[i]); }
}

extern "C" __global__ void kiln_f32_to_bf16(unsigned short* out, const float* in, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = kiln_round_bf16(in[i]); }
}
