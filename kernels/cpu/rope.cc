// Rotary position embedding, in place on x [T, numHeads * headDim]. For token t and pair i,
// angle = (float)positions[t] * invFreq[i], the product rounded to f32 as HF's
// `inv_freq @ position_ids` in float32 does, so long positions give the same angles; cos and sin
// are then taken in double and rounded. Only the first rotaryDim elements of each head rotate.
//   neox (HF rotate_half): pairs (i, i + rotaryDim/2)
//   GPT-J (interleaved):   pairs (2i, 2i + 1)
// Both: (a, b) -> (a cos - b sin, b cos + a sin).
#include <cmath>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

namespace kiln {
namespace {

constexpr size_t kParallelElems = size_t{1} << 15;

}  // namespace

void rope(float* x, const int32_t* positions, const float* invFreq, const RopeShape& s) {
  const size_t half = s.rotaryDim / 2;
  const size_t rowWidth = s.numHeads * s.headDim;
  auto tokens = [&](size_t t0, size_t t1) {
    thread_local std::vector<float> cosv, sinv;  // [rotaryDim / 2], this token's angles
    cosv.resize(half);
    sinv.resize(half);
    for (size_t t = t0; t < t1; ++t) {
      const float pos = static_cast<float>(positions[t]);
      for (size_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos * invFreq[i]);
        cosv[i] = static_cast<float>(std::cos(angle));
        sinv[i] = static_cast<float>(std::sin(angle));
      }
      const size_t stride = s.neox ? 1 : 2;  // distance between consecutive pairs' first elements
      const size_t partner = s.neox ? half : 1;
      for (size_t h = 0; h < s.numHeads; ++h) {
        float* head = x + t * rowWidth + h * s.headDim;
        for (size_t i = 0; i < half; ++i) {
          float* a = head + i * stride;
          float* b = a + partner;
          const float av = *a, bv = *b;
          *a = av * cosv[i] - bv * sinv[i];
          *b = bv * cosv[i] + av * sinv[i];
        }
      }
    }
  };
  if (s.tokens * rowWidth >= kParallelElems) {
    parallelFor(s.tokens, 1, tokens);
  } else {
    tokens(0, s.tokens);
  }
}

}  // namespace kiln
