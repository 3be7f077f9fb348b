// Elementwise kernels over dense row-major f32 tensors. The compiled program's fused kernels do
// a model's elementwise work; these serve the host around it.
// Launch: grid (min(ceil(n / 256), 65535)), block (256); grid-stride loops, so any n runs with
// any grid.
//
// kiln_add: out[i] = a[i] + b[i mod bn]; bn = n for equal shapes, bn = N for b [N] broadcast over
//   the rows of a [R, N]: a GEMM's bias, in place (out = a), for the shapes cuBLASLt has no
//   bias-epilogue algorithm for.
// kiln_scale: out[i] = x[i] · factor.
#include "common.cuh"

extern "C" __global__ void kiln_add(float* out, const float* a, const float* b, long long n, long long bn) {
  KILN_GRID_STRIDE(i, n) { out[i] = a[i] + b[bn == n ? i : i % bn]; }
}

extern "C" __global__ void kiln_scale(float* out, const float* x, long long n, float factor) {
  KILN_GRID_STRIDE(i, n) { out[i] = x[i] * factor; }
}
