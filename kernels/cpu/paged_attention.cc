// Paged attention over a packed step: prefill, chunked prefill over a cached prefix and decode
// are one case. Sequence s owns query rows queryStartLoc[s] .. queryStartLoc[s+1]-1; its qLen new
// queries are its last positions, so query i sits at p = seqLens[s] - qLen + i and attends keys
// j in [max(0, p - window + 1), p]. Key j lives at slot blockTables[s][j / blockSize] * blockSize
// + j % blockSize of the caches [numSlots, numKvHeads, headDim].
//
// Work item: up to kQueryBlock consecutive query tokens of one sequence x one kv head x a run of
// the query heads sharing it (GQA). Each key chunk is loaded once per item and serves all its
// (token, head) rows, which is what makes prefill compute bound rather than cache bound. Keys go
// in chunks with an online softmax per row (running max m, running sum l, accumulator rescaled
// when m grows), so any context length runs in O(chunk + headDim) scratch per row. Within a
// chunk, scores come 8 keys at a time (one vector reduction for 8 dot products) and the weighted
// sum of values keeps its accumulators in registers across the chunk's keys.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "thread_pool.h"

namespace kiln {
namespace {

constexpr size_t kMaxChunk = 64;
constexpr size_t kQueryBlock = 8;
constexpr size_t kLineFloats = 64 / sizeof(float);
constexpr size_t kParallelMacs = size_t{1} << 15;

struct Scratch {
  std::vector<float> scores;          // [rows, kMaxChunk]: scores, then softmax weights
  std::vector<float> acc;             // [rows, headDim]: running weighted sum of values
  std::vector<float> runMax, runSum;  // [rows]
};

// Query rows t0 .. t0 + count - 1 of sequence seq, at positions pos0 .. pos0 + count - 1.
struct QueryBlock {
  size_t seq, t0, count, pos0;
};

// [q . k[0], ..., q . k[7]]
inline f32x8 dot8(const float* q, const float* const* k, size_t D) {
  f32x8 a[8] = {};
  size_t d = 0;
  for (; d + kLanes <= D; d += kLanes) {
    const f32x8 qv = load8(q + d);
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; ++i) a[i] += qv * load8(k[i] + d);
  }
  f32x8 r = hsum8(a);
  for (; d < D; ++d)
    for (size_t i = 0; i < 8; ++i) r[i] += q[d] * k[i][d];
  return r;
}

// acc[0 : 8W] += sum_j p[j] * v[j][d0 : d0 + 8W], with the 8W accumulators in registers.
template <size_t W>
inline void weightedSumBlock(float* acc, const float* p, const float* const* v, size_t n, size_t d0) {
  f32x8 a[W];
  for (size_t w = 0; w < W; ++w) a[w] = load8(acc + w * kLanes);
  for (size_t j = 0; j < n; ++j) {
    const f32x8 pj = splat(p[j]);
#pragma GCC unroll 8
    for (size_t w = 0; w < W; ++w) a[w] += pj * load8(v[j] + d0 + w * kLanes);
  }
  for (size_t w = 0; w < W; ++w) store8(acc + w * kLanes, a[w]);
}

// acc[0:D] += sum_j p[j] * v[j][0:D]
inline void weightedSum(float* acc, const float* p, const float* const* v, size_t n, size_t D) {
  size_t d = 0;
  for (; d + 8 * kLanes <= D; d += 8 * kLanes) weightedSumBlock<8>(acc + d, p, v, n, d);
  if (d + 4 * kLanes <= D) weightedSumBlock<4>(acc + d, p, v, n, d), d += 4 * kLanes;
  if (d + 2 * kLanes <= D) weightedSumBlock<2>(acc + d, p, v, n, d), d += 2 * kLanes;
  if (d + kLanes <= D) weightedSumBlock<1>(acc + d, p, v, n, d), d += kLanes;
  for (; d < D; ++d) {
    float s = acc[d];
    for (size_t j = 0; j < n; ++j) s += p[j] * v[j][d];
    acc[d] = s;
  }
}

inline void prefetchRow(const float* row, size_t D) {
  for (size_t d = 0; d < D; d += kLineFloats) __builtin_prefetch(row + d);
}

// Folds keys [a, b) of the chunk into row r's online softmax: rescales the row's state to the new
// maximum, turns its scores into weights and adds the weighted values.
void foldChunk(Scratch& sc, size_t r, size_t a, size_t b, const float* const* vRows, size_t D) {
  const float negInf = -std::numeric_limits<float>::infinity();
  float* p = sc.scores.data() + r * kMaxChunk + a;
  const size_t n = b - a;
  float chunkMax = negInf;
  for (size_t j = 0; j < n; ++j) chunkMax = std::max(chunkMax, p[j]);
  const float oldMax = sc.runMax[r];
  const float newMax = std::max(oldMax, chunkMax);
  if (newMax > oldMax && oldMax != negInf) {
    const float alpha = std::exp(oldMax - newMax);
    sc.runSum[r] *= alpha;
    scale(sc.acc.data() + r * D, alpha, D);
  }
  sc.runMax[r] = newMax;
  size_t j = 0;
  f32x8 sum8{};
  for (; j + kLanes <= n; j += kLanes) {
    const f32x8 e = exp8(load8(p + j) - newMax);
    store8(p + j, e);
    sum8 += e;
  }
  float sum = hsum(sum8);
  for (; j < n; ++j) sum += (p[j] = std::exp(p[j] - newMax));
  sc.runSum[r] += sum;
  weightedSum(sc.acc.data() + r * D, p, vRows + a, n, D);
}

// Rows r = token * heads + g of one item; keys [lo(pos0), pos0 + count - 1] in chunks.
void attendItem(float* out, const float* q, const float* kCache, const float* vCache, const int32_t* table,
                const QueryBlock& qb, size_t kvHead, size_t head0, size_t heads, const AttentionShape& s,
                Scratch& sc) {
  const size_t D = s.headDim, rowWidth = s.numHeads * D, cacheRow = s.numKvHeads * D;
  const size_t rows = qb.count * heads;
  auto firstKey = [&](size_t pos) {
    return s.slidingWindow > 0 && pos + 1 > s.slidingWindow ? pos + 1 - s.slidingWindow : 0;
  };
  auto qRow = [&](size_t r) { return q + (qb.t0 + r / heads) * rowWidth + (head0 + r % heads) * D; };
  auto finishScore = [&](float score) {
    score *= s.scale;
    return s.softcap > 0.0f ? s.softcap * std::tanh(score / s.softcap) : score;
  };
  std::fill(sc.acc.begin(), sc.acc.begin() + rows * D, 0.0f);
  std::fill(sc.runMax.begin(), sc.runMax.begin() + rows, -std::numeric_limits<float>::infinity());
  std::fill(sc.runSum.begin(), sc.runSum.begin() + rows, 0.0f);
  // Chunks of keys whose K rows fit in half of L1 (16 KiB), a multiple of 8 keys.
  const size_t chunk = std::clamp<size_t>((4096 / D) / 8 * 8, 8, kMaxChunk);
  const size_t lastPos = qb.pos0 + qb.count - 1;

  // This chunk's key and value rows, found by walking the block table (no division per key).
  const float* kRows[kMaxChunk];
  const float* vRows[kMaxChunk];
  for (size_t j0 = firstKey(qb.pos0); j0 <= lastPos; j0 += chunk) {
    const size_t n = std::min(chunk, lastPos + 1 - j0);
    size_t block = j0 / s.blockSize, offset = j0 % s.blockSize;
    for (size_t jj = 0; jj < n; ++jj) {
      const size_t slot = static_cast<size_t>(table[block]) * s.blockSize + offset;
      kRows[jj] = kCache + slot * cacheRow + kvHead * D;
      vRows[jj] = vCache + slot * cacheRow + kvHead * D;
      if (++offset == s.blockSize) offset = 0, ++block;
    }
    // Row r sees keys [a, b) of this chunk (causal limit and sliding window).
    auto range = [&](size_t r, size_t& a, size_t& b) {
      const size_t pos = qb.pos0 + r / heads, lo = firstKey(pos);
      a = lo > j0 ? std::min(n, lo - j0) : 0;
      b = pos >= j0 ? std::min(n, pos + 1 - j0) : 0;  // an earlier row of the block may end before j0
    };
    // scores[r][jj] = softcap(q_r . k_jj * scale). Consecutive keys sit a whole cache row apart
    // (often on a new page), which hardware prefetchers do not follow: fetch the next 8 keys, and
    // these keys' values for the weighted sums below.
    for (size_t jj = 0; jj < n; jj += 8) {
      const size_t m = std::min<size_t>(8, n - jj);
      for (size_t i = 0; i < 8; ++i) {
        if (jj + 8 + i < n) prefetchRow(kRows[jj + 8 + i], D);
        if (i < m) prefetchRow(vRows[jj + i], D);
      }
      for (size_t r = 0; r < rows; ++r) {
        size_t a, b;
        range(r, a, b);
        if (b <= jj || a >= jj + m) continue;  // no key of this group is visible to row r
        float* out8 = sc.scores.data() + r * kMaxChunk + jj;
        if (m == 8) {
          const f32x8 v = dot8(qRow(r), kRows + jj, D);
          for (size_t i = 0; i < 8; ++i) out8[i] = finishScore(v[i]);
        } else {
          for (size_t i = 0; i < m; ++i) out8[i] = finishScore(dot(qRow(r), kRows[jj + i], D));
        }
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      size_t a, b;
      range(r, a, b);
      if (a < b) foldChunk(sc, r, a, b, vRows, D);
    }
  }

  for (size_t r = 0; r < rows; ++r) {
    // Every query sees at least its own key, so runSum >= 1.
    const float inv = 1.0f / sc.runSum[r];
    const float* acc = sc.acc.data() + r * D;
    float* o = out + (qb.t0 + r / heads) * rowWidth + (head0 + r % heads) * D;
    for (size_t d = 0; d < D; ++d) o[d] = acc[d] * inv;
  }
}

}  // namespace

void pagedAttention(float* out, const float* q, const float* kCache, const float* vCache,
                    const int32_t* queryStartLoc, const int32_t* seqLens, const int32_t* blockTables,
                    const AttentionShape& s) {
  const size_t group = s.numHeads / s.numKvHeads;
  std::vector<QueryBlock> blocks;
  size_t macs = 0;
  for (size_t seq = 0; seq < s.numSeqs; ++seq) {
    const size_t start = static_cast<size_t>(queryStartLoc[seq]);
    const size_t end = static_cast<size_t>(queryStartLoc[seq + 1]);
    const size_t firstPos = static_cast<size_t>(seqLens[seq]) - (end - start);
    for (size_t t = start; t < end; t += kQueryBlock) {
      blocks.push_back({seq, t, std::min(kQueryBlock, end - t), firstPos + (t - start)});
    }
    for (size_t pos = firstPos; pos < firstPos + (end - start); ++pos) {
      const size_t keys = s.slidingWindow > 0 ? std::min(pos + 1, s.slidingWindow) : pos + 1;
      macs += 2 * keys * s.numHeads * s.headDim;
    }
  }
  const bool parallel = macs >= kParallelMacs;
  // Few (block, kv head) pairs (decode of one sequence, MQA) would leave threads idle: then split
  // each GQA group into single heads instead.
  const size_t threads = parallel ? static_cast<size_t>(numThreads()) : 1;
  const size_t run = blocks.size() * s.numKvHeads >= 2 * threads ? group : 1;
  // Items ordered (block, kv head, run of heads): neighbouring items read the same cache rows
  // (other heads' parts of them), which keeps their pages in the TLB.
  const size_t runsPerKvHead = group / run, itemsPerBlock = s.numKvHeads * runsPerKvHead;
  const size_t numItems = blocks.size() * itemsPerBlock;

  auto attend = [&](size_t i0, size_t i1) {
    thread_local Scratch sc;
    const size_t rows = kQueryBlock * run;
    sc.scores.resize(rows * kMaxChunk);
    sc.acc.resize(rows * s.headDim);
    sc.runMax.resize(rows);
    sc.runSum.resize(rows);
    for (size_t i = i0; i < i1; ++i) {
      const QueryBlock& qb = blocks[i / itemsPerBlock];
      const size_t headRun = i % itemsPerBlock;  // kv head * runsPerKvHead + run index
      const size_t kvh = headRun / runsPerKvHead;
      attendItem(out, q, kCache, vCache, blockTables + qb.seq * s.maxBlocksPerSeq, qb, kvh,
                 kvh * group + (headRun % runsPerKvHead) * run, run, s, sc);
    }
  };
  if (parallel) {
    parallelFor(numItems, 1, attend);
  } else {
    attend(0, numItems);
  }
}

}  // namespace kiln
