// Normalisations, one warp per normalised slice, statistics accumulated in double (as the CPU
// kernels do) so the result is the exactly rounded one up to the final f32 operations.
//
// kiln_rms_norm: x, out [groups, group] (a row of the IR's [rows, cols] is cols/group groups);
//   out = (x · f32(1 / sqrt(mean(x²) + eps))) · (w[j] + weightOffset), w [group].
//   Launch: grid (ceil(groups / 4)), block (128): warp w of block b normalises group 4b + w.
// kiln_layer_norm / kiln_layer_norm_bias: x, out [rows, cols];
//   out = (x - mean) · f32(1 / sqrt(var + eps)) · w[j] (+ b[j]), population variance.
//   Launch: grid (ceil(rows / 4)), block (128), one warp per row.
#include "common.cuh"

extern "C" __global__ void kiln_rms_norm(float* out, const float* x, const float* w, int groups, int group, float eps,
                                         float weightOffset) {
  const int lane = threadIdx.x & 31;
  const int g = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (g >= groups) return;  // whole warps leave together
  const float* xg = x + (long long)g * group;
  float* og = out + (long long)g * group;
  double ss = 0.0;
  for (int j = lane; j < group; j += KILN_WARP) ss += (double)xg[j] * (double)xg[j];
  ss = kiln_warp_sum_f64(ss);
  const float inv = (float)(1.0 / sqrt(ss / (double)group + (double)eps));
  for (int j = lane; j < group; j += KILN_WARP) og[j] = (xg[j] * inv) * (w[j] + weightOffset);
}

template <bool HAS_BIAS>
__device__ __forceinline__ void kiln_layer_norm_row(float* out, const float* x, const float* w, const float* b, int rows,
                                                    int cols, float eps) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const float* xr = x + (long long)r * cols;
  float* o = out + (long long)r * cols;
  double sum = 0.0;
  for (int j = lane; j < cols; j += KILN_WARP) sum += (double)xr[j];
  const double mean = kiln_warp_sum_f64(sum) / (double)cols;
  double var = 0.0;
  for (int j = lane; j < cols; j += KILN_WARP) {
    const double d = (double)xr[j] - mean;
    var += d * d;
  }
  var = kiln_warp_sum_f64(var) / (double)cols;
  const float inv = (float)(1.0 / sqrt(var + (double)eps));
  const float m = (float)mean;
  for (int j = lane; j < cols; j += KILN_WARP) {
    const float y = (xr[j] - m) * inv * w[j];
    o[j] = HAS_BIAS ? y + b[j] : y;
  }
}

extern "C" __global__ void kiln_layer_norm(float* out, const float* x, const float* w, int rows, int cols, float eps) {
  kiln_layer_norm_row<false>(out, x, w, w, rows, cols, eps);
}

extern "C" __global__ void kiln_layer_norm_bias(float* out, const float* x, const float* w, const float* b, int rows,
                                                int cols, float eps) {
  kiln_layer_norm_row<true>(out, x, w, b, rows, cols, eps);
}
