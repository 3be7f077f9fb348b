// The packed GEMM path for many rows (prefill); see gemm_packed.cc. Called by gemm.cc only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln {

void gemmPacked(float* out, const float* x, const float* w, const float* bias, size_t M, size_t N, size_t K,
                bool parallel);
void gemmPacked(float* out, const float* x, const uint16_t* w, const float* bias, size_t M, size_t N,
                size_t K, bool parallel);

}  // namespace kiln
