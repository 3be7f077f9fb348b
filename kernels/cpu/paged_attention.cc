// Paged attention over a packed step: prefill, chunked prefill over a cached prefix and decode
// are one case. Sequence s owns query rows queryStartLoc[s] .. queryStartLoc[s+1]-1; its qLen new
// queries are its last positions, so query i sits at p = seqLens[s] - qLen + i and attends keys
// j in [max(0, p - window + 1), p]. Key j lives at slot blockTables[s][j / blockSize] * blockSize
// + j % blockSize of the caches [numSlots, numKvHeads, headDim].
//
// Work item: one query token x one kv head x a run of the query heads sharing it (GQA), so a key
// row loaded once serves the whole group. Keys are visited in chunks of kChunk with an online
// softmax (running max m, running sum l, accumulator rescaled when m grows), so any context
// length runs in O(kChunk + headDim) scratch per head.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace kiln {
namespace {

constexpr size_t kChunk = 64;
constexpr size_t kParallelMacs = size_t{1} << 15;

struct Scratch {
  std::vector<float> scores;  // [groupRun, kChunk]
  std::vector<float> acc;     // [groupRun, headDim]
  std::vector<float> runMax, runSum;  // [groupRun]
};

struct Item {
  size_t token, kvHead, head0, heads;  // query heads head0 .. head0 + heads - 1
};

void attendItem(float* out, const float* q, const float* kCache, const float* vCache,
                const int32_t* table, size_t pos, const AttentionShape& s, const Item& it, Scratch& sc) {
  const size_t D = s.headDim, rowWidth = s.numHeads * D, cacheRow = s.numKvHeads * D;
  const size_t lo = s.slidingWindow > 0 && pos + 1 > s.slidingWindow ? pos + 1 - s.slidingWindow : 0;
  const float negInf = -std::numeric_limits<float>::infinity();
  std::fill(sc.acc.begin(), sc.acc.begin() + it.heads * D, 0.0f);
  std::fill(sc.runMax.begin(), sc.runMax.begin() + it.heads, negInf);
  std::fill(sc.runSum.begin(), sc.runSum.begin() + it.heads, 0.0f);
  const float* qRow = q + it.token * rowWidth + it.head0 * D;

  for (size_t j0 = lo; j0 <= pos; j0 += kChunk) {
    const size_t n = std::min(kChunk, pos + 1 - j0);
    // scores[g][jj] = softcap(q_g . k_{j0+jj} * scale)
    for (size_t jj = 0; jj < n; ++jj) {
      const size_t j = j0 + jj;
      const size_t slot = static_cast<size_t>(table[j / s.blockSize]) * s.blockSize + j % s.blockSize;
      const float* k = kCache + slot * cacheRow + it.kvHead * D;
      for (size_t g = 0; g < it.heads; ++g) {
        float score = dot(qRow + g * D, k, D) * s.scale;
        if (s.softcap > 0.0f) score = s.softcap * std::tanh(score / s.softcap);
        sc.scores[g * kChunk + jj] = score;
      }
    }
    // Online softmax update: rescale what we have by e^(m_old - m_new), then add e^(score - m_new).
    for (size_t g = 0; g < it.heads; ++g) {
      float* p = sc.scores.data() + g * kChunk;
      float chunkMax = negInf;
      for (size_t jj = 0; jj < n; ++jj) chunkMax = std::max(chunkMax, p[jj]);
      const float oldMax = sc.runMax[g];
      const float newMax = std::max(oldMax, chunkMax);
      if (newMax > oldMax && oldMax != negInf) {
        const float alpha = std::exp(oldMax - newMax);
        sc.runSum[g] *= alpha;
        scale(sc.acc.data() + g * D, alpha, D);
      }
      sc.runMax[g] = newMax;
      size_t jj = 0;
      f32x8 sum8{};
      for (; jj + kLanes <= n; jj += kLanes) {
        const f32x8 e = exp8(load8(p + jj) - newMax);
        store8(p + jj, e);
        sum8 += e;
      }
      float sum = hsum(sum8);
      for (; jj < n; ++jj) sum += (p[jj] = std::exp(p[jj] - newMax));
      sc.runSum[g] += sum;
    }
    // acc[g] += sum_jj p[g][jj] * v_{j0+jj}
    for (size_t jj = 0; jj < n; ++jj) {
      const size_t j = j0 + jj;
      const size_t slot = static_cast<size_t>(table[j / s.blockSize]) * s.blockSize + j % s.blockSize;
      const float* v = vCache + slot * cacheRow + it.kvHead * D;
      for (size_t g = 0; g < it.heads; ++g) axpy(sc.acc.data() + g * D, sc.scores[g * kChunk + jj], v, D);
    }
  }

  float* outRow = out + it.token * rowWidth + it.head0 * D;
  for (size_t g = 0; g < it.heads; ++g) {
    // pos >= lo always, so every query sees at least its own key and runSum >= 1.
    const float inv = 1.0f / sc.runSum[g];
    const float* a = sc.acc.data() + g * D;
    for (size_t d = 0; d < D; ++d) outRow[g * D + d] = a[d] * inv;
  }
}

}  // namespace

void pagedAttention(float* out, const float* q, const float* kCache, const float* vCache,
                    const int32_t* queryStartLoc, const int32_t* seqLens, const int32_t* blockTables,
                    const AttentionShape& s) {
  const size_t group = s.numHeads / s.numKvHeads;
  // tokenSeq[t]: the sequence owning query row t; tokenPos[t]: its position in that sequence.
  std::vector<size_t> tokenSeq(s.tokens), tokenPos(s.tokens);
  size_t macs = 0;
  for (size_t seq = 0; seq < s.numSeqs; ++seq) {
    const size_t start = static_cast<size_t>(queryStartLoc[seq]);
    const size_t end = static_cast<size_t>(queryStartLoc[seq + 1]);
    const size_t first = static_cast<size_t>(seqLens[seq]) - (end - start);
    for (size_t t = start; t < end; ++t) {
      tokenSeq[t] = seq;
      tokenPos[t] = first + (t - start);
      const size_t keys = s.slidingWindow > 0 ? std::min(tokenPos[t] + 1, s.slidingWindow) : tokenPos[t] + 1;
      macs += 2 * keys * s.numHeads * s.headDim;
    }
  }
  const bool parallel = macs >= kParallelMacs;
  // Few (token, kv head) pairs (decode of one sequence, MQA) would leave threads idle: then split
  // each GQA group into single heads instead.
  const size_t threads = parallel ? static_cast<size_t>(omp_get_max_threads()) : 1;
  const size_t run = s.tokens * s.numKvHeads >= 2 * threads ? group : 1;
  std::vector<Item> items;
  items.reserve(s.tokens * s.numKvHeads * (group / run));
  for (size_t t = 0; t < s.tokens; ++t)
    for (size_t kvh = 0; kvh < s.numKvHeads; ++kvh)
      for (size_t g0 = 0; g0 < group; g0 += run) items.push_back({t, kvh, kvh * group + g0, run});

#pragma omp parallel if (parallel)
  {
    Scratch sc;
    sc.scores.resize(run * kChunk);
    sc.acc.resize(run * s.headDim);
    sc.runMax.resize(run);
    sc.runSum.resize(run);
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      const int32_t* table = blockTables + tokenSeq[it.token] * s.maxBlocksPerSeq;
      attendItem(out, q, kCache, vCache, table, tokenPos[it.token], s, it, sc);
    }
  }
}

}  // namespace kiln
