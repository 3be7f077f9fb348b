// GEMM for Linear layers: out[M,N] = x[M,K] . w[N,K]^T (+ bias). Three regimes:
//   M == 1 (decode): a GEMV, bound by reading w once; 8 independent FMA chains over 4 w rows.
//   M < kPackMinM: dot-product tiles straight from the row-major operands (both are contiguous
//     along K, so each output is a dot product). An MR x NR tile keeps MR*NR 8-wide accumulators;
//     every loaded x vector feeds NR FMAs, every w vector MR. K is blocked so the tile's x rows
//     stay in L1 while w streams through.
//   M >= kPackMinM (prefill): gemm_packed.cc, which repacks w into panels so the micro-kernel
//     broadcasts x and needs no horizontal sums; the repacking is paid back over many rows.
#include <algorithm>

#include "gemm_packed.h"
#include "kernels.h"
#include "simd.h"
#include "thread_pool.h"

namespace kiln {
namespace {

constexpr size_t kMr = 4, kNr = 3;  // 12 accumulators + 3 w vectors + 1 x vector = 16 ymm
constexpr size_t kKc = 256, kNc = 96;
// Measured on Zen 3 (one thread, N x K of 768 x 256 to 2048 x 2048): packing w pays from 8 rows.
constexpr size_t kPackMinM = 8;
// Below this many multiply-adds handing chunks to another thread (a microsecond or two) costs
// more than it saves; the tiny test models (hidden size 64) stay on one thread.
constexpr size_t kParallelMacs = size_t{1} << 17;

template <size_t MR, size_t NR, typename W>
inline void microTile(float* out, size_t ldo, const float* x, size_t ldx, const W* w, size_t ldw,
                      size_t kLen, const float* bias, bool first) {
  f32x8 acc[MR][NR] = {};
  size_t k = 0;
  for (; k + kLanes <= kLen; k += kLanes) {
    f32x8 wv[NR];
#pragma GCC unroll 4
    for (size_t j = 0; j < NR; ++j) wv[j] = load8(w + j * ldw + k);
#pragma GCC unroll 4
    for (size_t i = 0; i < MR; ++i) {
      const f32x8 xv = load8(x + i * ldx + k);
#pragma GCC unroll 4
      for (size_t j = 0; j < NR; ++j) acc[i][j] += xv * wv[j];
    }
  }
  for (size_t i = 0; i < MR; ++i) {
    for (size_t j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (size_t kk = k; kk < kLen; ++kk) s += x[i * ldx + kk] * toF32(w[j * ldw + kk]);
      float* o = out + i * ldo + j;
      *o = first ? s + (bias ? bias[j] : 0.0f) : *o + s;
    }
  }
}

template <size_t MR, typename W>
inline void microRow(size_t nr, float* out, size_t ldo, const float* x, size_t ldx, const W* w, size_t ldw,
                     size_t kLen, const float* bias, bool first) {
  switch (nr) {
    case 3: return microTile<MR, 3>(out, ldo, x, ldx, w, ldw, kLen, bias, first);
    case 2: return microTile<MR, 2>(out, ldo, x, ldx, w, ldw, kLen, bias, first);
    default: return microTile<MR, 1>(out, ldo, x, ldx, w, ldw, kLen, bias, first);
  }
}

template <typename W>
inline void micro(size_t mr, size_t nr, float* out, size_t ldo, const float* x, size_t ldx, const W* w,
                  size_t ldw, size_t kLen, const float* bias, bool first) {
  switch (mr) {
    case 4: return microRow<4>(nr, out, ldo, x, ldx, w, ldw, kLen, bias, first);
    case 3: return microRow<3>(nr, out, ldo, x, ldx, w, ldw, kLen, bias, first);
    case 2: return microRow<2>(nr, out, ldo, x, ldx, w, ldw, kLen, bias, first);
    default: return microRow<1>(nr, out, ldo, x, ldx, w, ldw, kLen, bias, first);
  }
}

// One x row against 4 w rows, two accumulators each: 8 FMA chains cover the FMA latency, and the
// 4 w streams are read exactly once.
template <typename W>
inline void gemvRows4(float* out, const float* x, const W* w, size_t K, const float* bias) {
  f32x8 a0{}, a1{}, a2{}, a3{}, b0{}, b1{}, b2{}, b3{};
  const W *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
  size_t k = 0;
  for (; k + 2 * kLanes <= K; k += 2 * kLanes) {
    const f32x8 xa = load8(x + k), xb = load8(x + k + kLanes);
    a0 += xa * load8(w0 + k), b0 += xb * load8(w0 + k + kLanes);
    a1 += xa * load8(w1 + k), b1 += xb * load8(w1 + k + kLanes);
    a2 += xa * load8(w2 + k), b2 += xb * load8(w2 + k + kLanes);
    a3 += xa * load8(w3 + k), b3 += xb * load8(w3 + k + kLanes);
  }
  float s[4] = {hsum(a0 + b0), hsum(a1 + b1), hsum(a2 + b2), hsum(a3 + b3)};
  for (size_t j = 0; j < 4; ++j) {
    for (size_t kk = k; kk < K; ++kk) s[j] += x[kk] * toF32(w[j * K + kk]);
    out[j] = s[j] + (bias ? bias[j] : 0.0f);
  }
}

template <typename W>
void gemv(float* out, const float* x, const W* w, const float* bias, size_t N, size_t K) {
  const size_t quads = N / 4;
  auto rows = [&](size_t q0, size_t q1) {
    for (size_t q = q0; q < q1; ++q) gemvRows4(out + 4 * q, x, w + 4 * q * K, K, bias ? bias + 4 * q : nullptr);
  };
  if (N * K >= kParallelMacs) {
    parallelFor(quads, std::max<size_t>(1, 8192 / K), rows);  // chunks of >= 32K multiply-adds
  } else {
    rows(0, quads);
  }
  for (size_t n = 4 * quads; n < N; ++n) {
    microTile<1, 1>(out + n, 0, x, K, w + n * K, K, K, bias ? bias + n : nullptr, true);
  }
}

template <typename W>
void gemm(float* out, const float* x, const W* w, const float* bias, size_t M, size_t N, size_t K) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (size_t m = 0; m < M; ++m)
      for (size_t n = 0; n < N; ++n) out[m * N + n] = bias ? bias[n] : 0.0f;
    return;
  }
  if (M == 1) return gemv(out, x, w, bias, N, K);
  const bool parallel = M * N * K >= kParallelMacs;
  if (M >= kPackMinM) return gemmPacked(out, x, w, bias, M, N, K, parallel);
  // Small M: x [M, K] is reused from L1/L2 by every column tile; the column tiles run in parallel.
  const size_t nTiles = (N + kNc - 1) / kNc;
  auto tiles = [&](size_t t0, size_t t1) {
    for (size_t nt = t0; nt < t1; ++nt) {
      const size_t n0 = nt * kNc, n1 = std::min(N, n0 + kNc);
      for (size_t k0 = 0; k0 < K; k0 += kKc) {
        const size_t kLen = std::min(kKc, K - k0);
        for (size_t m = 0; m < M; m += kMr) {
          const size_t mr = std::min(kMr, M - m);
          for (size_t n = n0; n < n1; n += kNr) {
            micro(mr, std::min(kNr, n1 - n), out + m * N + n, N, x + m * K + k0, K, w + n * K + k0, K, kLen,
                  bias ? bias + n : nullptr, k0 == 0);
          }
        }
      }
    }
  };
  if (parallel) {
    parallelFor(nTiles, 1, tiles);
  } else {
    tiles(0, nTiles);
  }
}

}  // namespace

void gemmF32(float* out, const float* x, const float* w, const float* bias, size_t M, size_t N, size_t K) {
  gemm(out, x, w, bias, M, N, K);
}

void gemmBf16(float* out, const float* x, const uint16_t* w, const float* bias, size_t M, size_t N,
              size_t K) {
  gemm(out, x, w, bias, M, N, K);
}

}  // namespace kiln
