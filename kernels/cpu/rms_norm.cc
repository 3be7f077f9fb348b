// RMSNorm over groups: a row of x [rows, cols] is cols / group slices of `group` elements, each
// normalised on its own (group == cols: the usual per-row norm; group == headDim: Qwen3's per-head q/k
// norm over [T, heads * headDim]). y = x / sqrt(mean(x^2) + eps) * (w + weightOffset), with
// weightOffset = 1 for Gemma's (1 + w). The mean of squares accumulates in double, so the scale is the
// exact one rounded to f32, within ~1 ulp of PyTorch's f32 reduction.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "thread_pool.h"

namespace kiln {
namespace {

constexpr size_t kParallelElems = size_t{1} << 16;

inline double sumSquares(const float* x, size_t n) {
  // Squares and sums in double: four lanes at a time, widened from f32 before multiplying.
  typedef double f64x4 __attribute__((vector_size(32)));
  typedef float f32x4_u __attribute__((vector_size(16), aligned(4), may_alias));
  f64x4 a{}, b{};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const f64x4 u = __builtin_convertvector(*reinterpret_cast<const f32x4_u*>(x + i), f64x4);
    const f64x4 v = __builtin_convertvector(*reinterpret_cast<const f32x4_u*>(x + i + 4), f64x4);
    a += u * u;
    b += v * v;
  }
  a += b;
  double s = (a[0] + a[1]) + (a[2] + a[3]);
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace

void rmsNorm(float* out, const float* x, const float* w, size_t rows, size_t cols, size_t group, float eps,
             float weightOffset) {
  const size_t groups = rows * (cols / group);
  auto norm = [&](size_t g0, size_t g1) {
    for (size_t g = g0; g < g1; ++g) {
      const float* xg = x + g * group;
      float* og = out + g * group;
      const double mean = sumSquares(xg, group) / static_cast<double>(group);
      // PyTorch: x * rsqrt(mean + eps) in f32, then times the weight.
      const float inv = static_cast<float>(1.0 / std::sqrt(mean + static_cast<double>(eps)));
      for (size_t j = 0; j < group; ++j) og[j] = (xg[j] * inv) * (w[j] + weightOffset);
    }
  };
  if (rows * cols >= kParallelElems) {
    parallelFor(groups, std::max<size_t>(1, 4096 / group), norm);
  } else {
    norm(0, groups);
  }
}

}  // namespace kiln
