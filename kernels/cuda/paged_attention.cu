// Paged attention over a packed step: prefill, chunked prefill over a cached prefix and decode
// are one kernel. Query row t (sequence tokenSeq[t], position tokenPos[t]) of head h attends the
// keys j of its sequence in [max(0, pos − window + 1), pos]; key j lives at slot
// blockTables[seq · maxBlocksPerSeq + j / blockSize] · blockSize + j % blockSize of the caches
// [numSlots, numKvHeads, headDim]. GQA: head h reads kv head h / (numHeads / numKvHeads).
// score = (q · k) · scale, then softcap · tanh(score / softcap) in the _softcap variant.
// `window` ≥ every position means no sliding window (the host passes 2^30).
//
// Long contexts are split along the keys: blockIdx.z = split of numSplits, each taking an equal
// run of the query's keys. With numSplits = 1 the block writes out [T, numHeads · headDim]
// directly; otherwise it writes its partial (running max m, sum l, unnormalised acc[headDim]) to
// partial [T, numHeads, numSplits, headDim + 2] and kiln_attention_combine merges the splits.
//
// Inside a block, 4 warps take tiles of 32 keys in turn (lane = key for the scores, lane = head
// dimension for the value sum) with an online softmax each; the warps then merge through shared
// memory. headDim ≤ 256.
// Launch: grid (numHeads, T, numSplits), block (128).
#include "common.cuh"

#define KILN_ATTN_WARPS 4
#define KILN_ATTN_MAX_D 256
#define KILN_ATTN_MAX_D_PER_LANE (KILN_ATTN_MAX_D / 32)

struct alignas(16) kiln_f4 {
  float x, y, z, w;
};

__device__ __forceinline__ float kiln_dot(const float* a, const float* b, int n) {
  float s = 0.0f;
  if ((n & 3) == 0) {
    const kiln_f4* a4 = reinterpret_cast<const kiln_f4*>(a);
    const kiln_f4* b4 = reinterpret_cast<const kiln_f4*>(b);
    for (int i = 0; i < (n >> 2); ++i) {
      const kiln_f4 u = a4[i];
      const kiln_f4 v = b4[i];
      s += u.x * v.x;
      s += u.y * v.y;
      s += u.z * v.z;
      s += u.w * v.w;
    }
  } else {
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
  }
  return s;
}

template <bool SOFTCAP>
__device__ __forceinline__ void kiln_attend(float* out, float* partial, const float* q, const float* kCache,
                                            const float* vCache, const int* tokenSeq, const int* tokenPos,
                                            const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                            int numKvHeads, int headDim, float scale, int window, float softcap,
                                            int numSplits) {
  const int h = blockIdx.x;
  const int t = blockIdx.y;
  const int split = blockIdx.z;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int D = headDim;
  const int nd = (D + 31) >> 5;  // head dimensions per lane
  const int kvh = h / (numHeads / numKvHeads);
  const int seq = tokenSeq[t];
  const int pos = tokenPos[t];
  const int lo = pos + 1 > window ? pos + 1 - window : 0;
  const int chunk = (pos - lo + 1 + numSplits - 1) / numSplits;
  const int first = lo + split * chunk;
  const int last = first + chunk - 1 < pos ? first + chunk - 1 : pos;  // inclusive; empty if first > last
  const int* table = blockTables + (long long)seq * maxBlocksPerSeq;
  const long long kvRow = (long long)numKvHeads * D;
  const float inf = kiln_inf();

  alignas(16) __shared__ float qs[KILN_ATTN_MAX_D];
  __shared__ float probs[KILN_ATTN_WARPS][32];
  __shared__ long long keyAt[KILN_ATTN_WARPS][32];  // element offset of each tile key's row in the caches
  __shared__ float warpMax[KILN_ATTN_WARPS];
  __shared__ float warpSum[KILN_ATTN_WARPS];
  __shared__ float warpAcc[KILN_ATTN_WARPS][KILN_ATTN_MAX_D];

  const float* qRow = q + ((long long)t * numHeads + h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = qRow[d];
  __syncthreads();

  float m = -inf;  // running max of this warp's scores
  float l = 0.0f;  // running sum of exp(score - m)
  float acc[KILN_ATTN_MAX_D_PER_LANE];
  for (int i = 0; i < KILN_ATTN_MAX_D_PER_LANE; ++i) acc[i] = 0.0f;

  // base is warp-uniform, so whole warps enter and leave the loop together
  for (int base = first + warp * 32; base <= last; base += KILN_ATTN_WARPS * 32) {
    const int j = base + lane;
    const bool valid = j <= last;
    float score = -inf;
    long long at = 0;
    if (valid) {
      const int slot = table[j / blockSize] * blockSize + j % blockSize;
      at = (long long)slot * kvRow + (long long)kvh * D;
      score = kiln_dot(qs, kCache + at, D) * scale;
      if (SOFTCAP) score = softcap * tanhf(score / softcap);
    }
    const float mNew = fmaxf(m, kiln_warp_max(score));  // finite: lane 0's key is valid
    const float alpha = expf(m - mNew);                  // 0 on the first tile (m = -inf)
    const float p = valid ? expf(score - mNew) : 0.0f;
    l = l * alpha + kiln_warp_sum(p);
    for (int i = 0; i < nd; ++i) acc[i] *= alpha;
    probs[warp][lane] = p;
    keyAt[warp][lane] = at;
    __syncwarp();
    const int count = last - base + 1 < 32 ? last - base + 1 : 32;
    for (int jj = 0; jj < count; ++jj) {
      const float pj = probs[warp][jj];
      const float* vRow = vCache + keyAt[warp][jj];
      for (int i = 0; i < nd; ++i) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] += pj * vRow[d];
      }
    }
    __syncwarp();
    m = mNew;
  }

  if (lane == 0) {
    warpMax[warp] = m;
    warpSum[warp] = l;
  }
  for (int i = 0; i < nd; ++i) {
    const int d = lane + 32 * i;
    if (d < D) warpAcc[warp][d] = acc[i];
  }
  __syncthreads();

  float M = -inf;
  for (int w = 0; w < KILN_ATTN_WARPS; ++w) M = fmaxf(M, warpMax[w]);
  float weight[KILN_ATTN_WARPS];
  float L = 0.0f;
  for (int w = 0; w < KILN_ATTN_WARPS; ++w) {
    weight[w] = warpSum[w] > 0.0f ? expf(warpMax[w] - M) : 0.0f;  // warps without keys weigh 0
    L += warpSum[w] * weight[w];
  }
  if (numSplits == 1) {
    float* o = out + ((long long)t * numHeads + h) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float s = 0.0f;
      for (int w = 0; w < KILN_ATTN_WARPS; ++w) s += warpAcc[w][d] * weight[w];
      o[d] = s / L;  // L ≥ 1: every query sees at least its own key
    }
  } else {
    float* part = partial + (((long long)t * numHeads + h) * numSplits + split) * (D + 2);
    if (threadIdx.x == 0) {
      part[0] = M;  // -inf for an empty split
      part[1] = L;  // 0 for an empty split
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float s = 0.0f;
      for (int w = 0; w < KILN_ATTN_WARPS; ++w) s += warpAcc[w][d] * weight[w];
      part[2 + d] = s;
    }
  }
}

extern "C" __global__ void kiln_paged_attention(float* out, float* partial, const float* q, const float* kCache,
                                                const float* vCache, const int* tokenSeq, const int* tokenPos,
                                                const int* blockTables, int maxBlocksPerSeq, int blockSize,
                                                int numHeads, int numKvHeads, int headDim, float scale, int window,
                                                float softcap, int numSplits) {
  kiln_attend<false>(out, partial, q, kCache, vCache, tokenSeq, tokenPos, blockTables, maxBlocksPerSeq, blockSize,
                     numHeads, numKvHeads, headDim, scale, window, softcap, numSplits);
}

extern "C" __global__ void kiln_paged_attention_softcap(float* out, float* partial, const float* q, const float* kCache,
                                                        const float* vCache, const int* tokenSeq, const int* tokenPos,
                                                        const int* blockTables, int maxBlocksPerSeq, int blockSize,
                                                        int numHeads, int numKvHeads, int headDim, float scale,
                                                        int window, float softcap, int numSplits) {
  kiln_attend<true>(out, partial, q, kCache, vCache, tokenSeq, tokenPos, blockTables, maxBlocksPerSeq, blockSize,
                    numHeads, numKvHeads, headDim, scale, window, softcap, numSplits);
}

// Merges the splits of kiln_paged_attention: out = Σ_s acc_s e^(m_s − M) / Σ_s l_s e^(m_s − M),
// M = max_s m_s, skipping empty splits (l_s = 0).
// partial [T, numHeads, numSplits, headDim + 2]; out [T, numHeads · headDim].
// Launch: grid (numHeads, T), block (128).
extern "C" __global__ void kiln_attention_combine(float* out, const float* partial, int T, int numHeads, int headDim,
                                                  int numSplits) {
  const int h = blockIdx.x;
  const int t = blockIdx.y;
  if (t >= T) return;
  const int stride = headDim + 2;
  const float* part = partial + ((long long)t * numHeads + h) * numSplits * stride;
  float M = -kiln_inf();
  for (int s = 0; s < numSplits; ++s) M = fmaxf(M, part[s * stride]);
  float L = 0.0f;
  for (int s = 0; s < numSplits; ++s) {
    const float l = part[s * stride + 1];
    if (l > 0.0f) L += l * expf(part[s * stride] - M);
  }
  float* o = out + ((long long)t * numHeads + h) * headDim;
  for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < numSplits; ++s) {
      if (part[s * stride + 1] > 0.0f) acc += part[s * stride + 2 + d] * expf(part[s * stride] - M);
    }
    o[d] = acc / L;
  }
}
