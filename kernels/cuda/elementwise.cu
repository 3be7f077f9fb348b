// Elementwise and data-movement kernels over dense row-major f32 tensors.
// Unless noted, launch: grid (min(ceil(n / 256), 65535)), block (256); grid-stride loops, so any
// n runs with any grid.
//
// kiln_add / kiln_mul: out[i] = a[i] op b[i mod bn]; bn = n for equal shapes, bn = N for b [N]
//   broadcast over the rows of a [R, N] (also the bias add after a GEMM, in place: out = a).
// kiln_silu, kiln_gelu_tanh, kiln_gelu (erf), kiln_relu, kiln_tanh, kiln_neg, kiln_sigmoid:
//   out[i] = f(x[i]).
// kiln_scale: out[i] = x[i] · factor.
// kiln_slice_cols: out [rows, size] = columns [start, start + size) of x [rows, cols].
// kiln_gather_rows: out [S, cols] = rows idx[s] of x [T, cols]; launch grid (S), block (256).
#include "common.cuh"

extern "C" __global__ void kiln_add(float* out, const float* a, const float* b, long long n, long long bn) {
  KILN_GRID_STRIDE(i, n) { out[i] = a[i] + b[bn == n ? i : i % bn]; }
}

extern "C" __global__ void kiln_mul(float* out, const float* a, const float* b, long long n, long long bn) {
  KILN_GRID_STRIDE(i, n) { out[i] = a[i] * b[bn == n ? i : i % bn]; }
}

extern "C" __global__ void kiln_silu(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) {
    const float v = x[i];
    out[i] = v / (1.0f + expf(-v));
  }
}

// 0.5 · z · (1 + tanh(√(2/π) · (z + 0.044715 z³))), as PyTorch's gelu(approximate="tanh")
extern "C" __global__ void kiln_gelu_tanh(float* out, const float* x, long long n) {
  const float k = 0.7978845608028654f;
  KILN_GRID_STRIDE(i, n) {
    const float z = x[i];
    out[i] = 0.5f * z * (1.0f + tanhf(k * (z + 0.044715f * z * z * z)));
  }
}

// 0.5 · z · (1 + erf(z / √2)), the exact GELU
extern "C" __global__ void kiln_gelu(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) {
    const float z = x[i];
    out[i] = 0.5f * z * (1.0f + erff(z * 0.7071067811865476f));
  }
}

extern "C" __global__ void kiln_relu(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = x[i] > 0.0f ? x[i] : 0.0f; }
}

extern "C" __global__ void kiln_tanh(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = tanhf(x[i]); }
}

extern "C" __global__ void kiln_neg(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = -x[i]; }
}

extern "C" __global__ void kiln_sigmoid(float* out, const float* x, long long n) {
  KILN_GRID_STRIDE(i, n) { out[i] = 1.0f / (1.0f + expf(-x[i])); }
}

extern "C" __global__ void kiln_scale(float* out, const float* x, long long n, float factor) {
  KILN_GRID_STRIDE(i, n) { out[i] = x[i] * factor; }
}

extern "C" __global__ void kiln_slice_cols(float* out, const float* x, int rows, int cols, int start, int size) {
  const long long n = (long long)rows * size;
  KILN_GRID_STRIDE(i, n) {
    const long long r = i / size;
    const long long c = i - r * size;
    out[i] = x[r * cols + start + c];
  }
}

extern "C" __global__ void kiln_gather_rows(float* out, const float* x, const int* idx, int S, int cols) {
  const int s = blockIdx.x;
  if (s >= S) return;
  const float* src = x + (long long)idx[s] * cols;
  float* dst = out + (long long)s * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = src[j];
}
