// GEMM for many rows of x (prefill): out[M,N] = x[M,K] . w[N,K]^T (+ bias).
//
// w is repacked, one K block at a time, into panels of 16 output columns laid out [kLen][16]
// (bf16 widened to f32 on the way, so both weight types share one micro-kernel). The micro-kernel
// then computes a 6 x 16 block of out: per k it loads the panel's two 8-wide vectors once and
// broadcasts one x element per row, 12 FMAs for 2 loads + 6 broadcasts, with 12 accumulators in
// registers and no horizontal sums; its result rows are contiguous in out.
//
// Blocking, per thread and per macro tile of up to kMcMax rows x kNcMax columns:
//   for each K block of kKc:     pack w[n0:n1, k0:k0+kKc] (<= 256 KiB, L2)
//     for each 16-column panel:  the panel (16 KiB) stays in L1
//       for each 6 rows of x:    x rows [mc, kKc] (<= 120 KiB) are re-read from L2
//         micro-kernel over the K block, adding into out (the first K block adds the bias)
#include <algorithm>
#include <vector>

#include "gemm_packed.h"
#include "simd.h"
#include "thread_pool.h"

namespace kiln {
namespace {

constexpr size_t kMr = 6, kNr = 16;
constexpr size_t kKc = 256, kMcMax = 120, kNcMax = 256;

inline size_t ceilDiv(size_t a, size_t b) { return (a + b - 1) / b; }

// Transposes an 8 x 8 block: r[i] holds row i; afterwards r[k] holds column k.
inline void transpose8(f32x8 r[8]) {
  f32x8 t[8], u[8];
  for (size_t i = 0; i < 8; i += 2) {  // interleave row pairs
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (size_t i = 0; i < 8; i += 4) {  // then pairs of pairs: columns within 128-bit lanes
    u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (size_t i = 0; i < 4; ++i) {  // and swap 128-bit halves between rows 0-3 and 4-7
    r[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// dst [ceil(rows / 16)][kLen][16] from w rows [rows][ldw] (columns k0.. of the caller's block);
// columns past `rows` are zero so the last panel needs no special case in the micro-kernel. Full
// panels move 8 x 8 blocks through registers; the ragged edges go element by element.
template <typename W>
void pack(float* dst, const W* w, size_t ldw, size_t rows, size_t kLen) {
  for (size_t p = 0; p * kNr < rows; ++p) {
    float* d = dst + p * kLen * kNr;
    const W* src = w + p * kNr * ldw;
    const size_t valid = std::min(kNr, rows - p * kNr);
    size_t k = 0;
    if (valid == kNr) {
      for (; k + kLanes <= kLen; k += kLanes) {
        for (size_t h = 0; h < kNr; h += kLanes) {
          f32x8 r[8];
          for (size_t i = 0; i < 8; ++i) r[i] = load8(src + (h + i) * ldw + k);
          transpose8(r);
          for (size_t i = 0; i < 8; ++i) store8(d + (k + i) * kNr + h, r[i]);
        }
      }
    }
    for (size_t c = 0; c < kNr; ++c) {
      for (size_t kk = k; kk < kLen; ++kk) d[kk * kNr + c] = c < valid ? toF32(src[c * ldw + kk]) : 0.0f;
    }
  }
}

// out[0:MR, 0:nValid] (+)= x[0:MR, 0:kLen] . panel, x rows ldx apart, out rows ldo apart.
template <size_t MR>
inline void microKernel(float* out, size_t ldo, const float* x, size_t ldx, const float* panel, size_t kLen,
                        size_t nValid, const float* bias, bool first) {
  f32x8 acc[MR][2] = {};
  for (size_t k = 0; k < kLen; ++k) {
    const f32x8 w0 = load8(panel + k * kNr), w1 = load8(panel + k * kNr + kLanes);
#pragma GCC unroll 6
    for (size_t i = 0; i < MR; ++i) {
      const f32x8 xb = splat(x[i * ldx + k]);
      acc[i][0] += xb * w0;
      acc[i][1] += xb * w1;
    }
  }
  for (size_t i = 0; i < MR; ++i) {
    float* o = out + i * ldo;
    if (nValid == kNr) {
      const f32x8 b0 = bias ? load8(bias) : f32x8{}, b1 = bias ? load8(bias + kLanes) : f32x8{};
      store8(o, first ? acc[i][0] + b0 : load8(o) + acc[i][0]);
      store8(o + kLanes, first ? acc[i][1] + b1 : load8(o + kLanes) + acc[i][1]);
    } else {
      for (size_t j = 0; j < nValid; ++j) {
        const float v = j < kLanes ? acc[i][0][j] : acc[i][1][j - kLanes];
        o[j] = first ? v + (bias ? bias[j] : 0.0f) : o[j] + v;
      }
    }
  }
}

inline void microAny(size_t mr, float* out, size_t ldo, const float* x, size_t ldx, const float* panel,
                     size_t kLen, size_t nValid, const float* bias, bool first) {
  switch (mr) {
    case 6: return microKernel<6>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
    case 5: return microKernel<5>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
    case 4: return microKernel<4>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
    case 3: return microKernel<3>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
    case 2: return microKernel<2>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
    default: return microKernel<1>(out, ldo, x, ldx, panel, kLen, nValid, bias, first);
  }
}

template <typename W>
void gemmPackedImpl(float* out, const float* x, const W* w, const float* bias, size_t M, size_t N, size_t K,
                    bool parallel) {
  // Macro tiles no bigger than the cache budget, sized evenly (M = 128 gives 2 x 64, not
  // 120 + 8), and with a tile count that splits evenly over the threads where that is cheap.
  const size_t threads = parallel ? static_cast<size_t>(numThreads()) : 1;
  size_t mTiles = ceilDiv(M, kMcMax);
  const size_t nTiles = ceilDiv(N, kNcMax);
  while ((mTiles * nTiles) % threads != 0 && mTiles * nTiles < 4 * threads && mTiles < ceilDiv(M, kMr)) {
    ++mTiles;
  }
  const size_t mc = ceilDiv(ceilDiv(M, mTiles), kMr) * kMr;
  const size_t nc = ceilDiv(ceilDiv(N, nTiles), kNr) * kNr;
  mTiles = ceilDiv(M, mc);

  auto tiles = [&](size_t t0, size_t t1) {
    // Per-thread packing buffer [nc / 16][kKc][16], kept across calls (the pool's threads live as
    // long as the process): allocating 256 KiB per call would fault in fresh pages every time.
    thread_local std::vector<float> packed;
    if (packed.size() < nc * kKc) packed.resize(nc * kKc);
    for (size_t t = t0; t < t1; ++t) {
      const size_t nt = t / mTiles, mt = t % mTiles;
      const size_t m0 = mt * mc, m1 = std::min(M, m0 + mc);
      const size_t n0 = nt * nc, n1 = std::min(N, n0 + nc);
      for (size_t k0 = 0; k0 < K; k0 += kKc) {
        const size_t kLen = std::min(kKc, K - k0);
        pack(packed.data(), w + n0 * K + k0, K, n1 - n0, kLen);
        for (size_t n = n0; n < n1; n += kNr) {
          const float* panel = packed.data() + (n - n0) * kLen;
          for (size_t m = m0; m < m1; m += kMr) {
            microAny(std::min(kMr, m1 - m), out + m * N + n, N, x + m * K + k0, K, panel, kLen,
                     std::min(kNr, n1 - n), bias ? bias + n : nullptr, k0 == 0);
          }
        }
      }
    }
  };
  if (parallel) {
    parallelFor(mTiles * nTiles, 1, tiles);
  } else {
    tiles(0, mTiles * nTiles);
  }
}

}  // namespace

void gemmPacked(float* out, const float* x, const float* w, const float* bias, size_t M, size_t N, size_t K,
                bool parallel) {
  gemmPackedImpl(out, x, w, bias, M, N, K, parallel);
}

void gemmPacked(float* out, const float* x, const uint16_t* w, const float* bias, size_t M, size_t N,
                size_t K, bool parallel) {
  gemmPackedImpl(out, x, w, bias, M, N, K, parallel);
}

}  // namespace kiln
