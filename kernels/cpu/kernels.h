// The CPU kernels, free of Node-API: raw pointers in, results written in place. Callers (addon.cc)
// have already validated every length and index, so these never bounds-check.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln {

// out[M,N] = x[M,K] . w[N,K]^T (+ bias[N]); w in PyTorch Linear layout [out_features, in_features].
void gemmF32(float* out, const float* x, const float* w, const float* bias, size_t M, size_t N, size_t K);
// Same with w as bf16 bit patterns, widened to f32 in registers; accumulation in f32.
void gemmBf16(float* out, const float* x, const uint16_t* w, const float* bias, size_t M, size_t N,
              size_t K);

// Each `group`-wide slice of each row of x [rows, cols] scaled by 1/rms * (w + weightOffset).
// out may equal x.
void rmsNorm(float* out, const float* x, const float* w, size_t rows, size_t cols, size_t group, float eps,
             float weightOffset);

struct RopeShape {
  size_t tokens, numHeads, headDim, rotaryDim;
  bool neox;  // rotate_half pairs (i, i + rotaryDim/2); otherwise interleaved (2i, 2i+1)
};
// In place on x [T, numHeads * headDim]; invFreq [rotaryDim / 2].
void rope(float* x, const int32_t* positions, const float* invFreq, const RopeShape& s);

// k, v [T, numKvHeads * headDim] rows copied to caches [numSlots, numKvHeads, headDim].
void writeKv(float* kCache, float* vCache, const float* k, const float* v, const int32_t* slotMapping,
             size_t tokens, size_t rowWidth);

struct AttentionShape {
  size_t numSeqs, tokens;
  size_t maxBlocksPerSeq, blockSize;
  size_t numHeads, numKvHeads, headDim;
  float scale;
  size_t slidingWindow;  // 0: no window
  float softcap;         // 0: no soft-capping
};
// out, q [T, numHeads * headDim]; caches [numSlots, numKvHeads, headDim]; queryStartLoc [S + 1];
// seqLens [S]; blockTables [S, maxBlocksPerSeq].
void pagedAttention(float* out, const float* q, const float* kCache, const float* vCache,
                    const int32_t* queryStartLoc, const int32_t* seqLens, const int32_t* blockTables,
                    const AttentionShape& s);

}  // namespace kiln
