// Paged attention over a packed step: prefill, chunked prefill over a cached prefix and decode
// are one kernel. Query row t (sequence tokenSeq[t], position tokenPos[t]) of head h attends the
// keys j of its sequence in [max(0, pos − window + 1), pos]; key j lives at slot
// blockTables[seq · maxBlocksPerSeq + j / blockSize] · blockSize + j % blockSize of the caches
// [numSlots, numKvHeads, headDim]. score = (q · k) · scale, then softcap · tanh(score / softcap)
// in the _softcap variants. `window` ≥ every position means no sliding window (the host passes
// 2^30). The caches hold f32 (kiln_paged_attention*), bf16 (*_bf16), f16 (*_f16) or e4m3 (*_fp8)
// bit patterns; scores, the softmax and the value sums are f32 either way. An e4m3 cache holds
// value / scale: the _fp8 entry points take the layer's kScale and vScale (per tensor) and compute
// score = (q · k) · (scale · kScale) and out = (Σ p v) · vScale / Σ p, the other formats 1.
//
// GQA: the G = numHeads / numKvHeads query heads of a KV head read the same keys, so a block
// takes up to KILN_ATTN_GROUP of them and reads each key and value row once for all of them.
// blockIdx.y = kvHead · groupBlocks + g, groupBlocks = ceil(G / KILN_ATTN_GROUP).
//
// Long contexts are split along the keys: blockIdx.z = split of numSplits, each taking an equal
// run of the query's keys. With numSplits = 1 the block writes out [T, numHeads · headDim]
// directly; otherwise it writes each head's partial (running max m, sum l, unnormalised
// acc[headDim]) to partial [T, numHeads, numSplits, headDim + 2] and kiln_attention_combine
// merges the splits.
//
// Inside a block, 4 warps take tiles of 32 keys in turn with an online softmax per head: lane =
// key for the scores; for the value sums, when a row is 1, 2, 4, 8, 16 or 32 16-byte chunks (8-byte for e4m3),
// each lane takes one chunk of every (32 / chunks)-th key with vector loads (else lane = head
// dimension). The warps then merge through shared memory. headDim ≤ 256.
// Launch: grid (T, numKvHeads · groupBlocks, numSplits), block (128): T in x, whose limit is 2^31 − 1
// (gridDim.y stops at 65,535, less than a long prefill step).
#include "common.cuh"

#define KILN_ATTN_WARPS 4
#define KILN_ATTN_GROUP 4
#define KILN_ATTN_MAX_D 256
#define KILN_ATTN_MAX_D_PER_LANE (KILN_ATTN_MAX_D / 32)

struct alignas(16) kiln_f4 {
  float x, y, z, w;
};
struct alignas(16) kiln_u4 {
  unsigned int x, y, z, w;
};
struct alignas(8) kiln_u2 {
  unsigned int x, y;
};

// An e4m3 cache element (kiln_e4m3_format) as its bit pattern
template <class F>
struct kiln_byte_bits {
  unsigned char bits;
};

// A 16-bit cache element of format F (kiln_bf16_format or kiln_f16_format) as its bit pattern;
// a type per format, so the overloads below tell the formats apart at compile time
template <class F>
struct kiln_half_bits {
  unsigned short bits;
};

__device__ __forceinline__ float kiln_kv_load(const float* p, int i) { return p[i]; }
template <class F>
__device__ __forceinline__ float kiln_kv_load(const kiln_half_bits<F>* p, int i) { return F::widen(p[i].bits); }
template <class F>
__device__ __forceinline__ float kiln_kv_load(const kiln_byte_bits<F>* p, int i) { return F::widen(p[i].bits); }

// Four (f32) or eight (16-bit) consecutive cache elements at element i, widened; vector loads
__device__ __forceinline__ void kiln_kv_chunk(const float* p, int i, float* o) {
  const kiln_f4 u = *reinterpret_cast<const kiln_f4*>(p + i);
  o[0] = u.x;
  o[1] = u.y;
  o[2] = u.z;
  o[3] = u.w;
}
template <class F>
__device__ __forceinline__ void kiln_kv_chunk(const kiln_half_bits<F>* p, int i, float* o) {
  const kiln_u4 u = *reinterpret_cast<const kiln_u4*>(p + i);
  const unsigned int w[4] = {u.x, u.y, u.z, u.w};
  for (int k = 0; k < 4; ++k) {
    o[2 * k] = F::widen((unsigned short)(w[k] & 0xffffu));  // the lower address holds the first element
    o[2 * k + 1] = F::widen((unsigned short)(w[k] >> 16));
  }
}
// Eight consecutive e4m3 elements at element i (an 8-byte load, so a lane's chunk still fills
// at most KILN_ATTN_MAX_D_PER_LANE accumulators), widened
template <class F>
__device__ __forceinline__ void kiln_kv_chunk(const kiln_byte_bits<F>* p, int i, float* o) {
  const kiln_u2 u = *reinterpret_cast<const kiln_u2*>(p + i);
  for (int k = 0; k < 4; ++k) {
    o[k] = F::widen((unsigned char)(u.x >> (8 * k)));  // the lowest address holds the first element
    o[4 + k] = F::widen((unsigned char)(u.y >> (8 * k)));
  }
}
template <typename KV>
struct kiln_kv_width {
  static constexpr int value = 16 / sizeof(KV);  // elements per 16-byte load
};
template <class F>
struct kiln_kv_width<kiln_byte_bits<F> > {
  static constexpr int value = 8;  // elements per 8-byte load
};

// scores[g] = q_g · key for the block's ng query heads (qs [ng][D] in shared memory)
template <typename KV>
__device__ __forceinline__ void kiln_group_dots(float* scores, const float* qs, const KV* key, int D, int ng) {
  constexpr int W = kiln_kv_width<KV>::value;
#pragma unroll
  for (int g = 0; g < KILN_ATTN_GROUP; ++g) scores[g] = 0.0f;
  if (D % W == 0) {
    for (int i = 0; i < D; i += W) {
      float k[W];
      kiln_kv_chunk(key, i, k);
#pragma unroll
      for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
        if (g < ng) {
          const float* q = qs + g * D + i;
#pragma unroll
          for (int e = 0; e < W; ++e) scores[g] += q[e] * k[e];
        }
      }
    }
  } else {
    for (int i = 0; i < D; ++i) {
      const float k = kiln_kv_load(key, i);
#pragma unroll
      for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
        if (g < ng) scores[g] += qs[g * D + i] * k;
      }
    }
  }
}

template <bool SOFTCAP, typename KV>
__device__ __forceinline__ void kiln_attend(float* out, float* partial, const float* q, const KV* kCache, const KV* vCache,
                                            const int* tokenSeq, const int* tokenPos, const int* blockTables,
                                            int maxBlocksPerSeq, int blockSize, int numHeads, int numKvHeads, int headDim,
                                            float scale, int window, float softcap, int numSplits, float kScale,
                                            float vScale) {
  const int G = numHeads / numKvHeads;
  const int groupBlocks = (G + KILN_ATTN_GROUP - 1) / KILN_ATTN_GROUP;
  const int kvh = blockIdx.y / groupBlocks;
  const int h0 = kvh * G + (blockIdx.y % groupBlocks) * KILN_ATTN_GROUP;  // first query head of the block
  const int ng = G - (h0 - kvh * G) < KILN_ATTN_GROUP ? G - (h0 - kvh * G) : KILN_ATTN_GROUP;
  const int t = blockIdx.x;
  const int split = blockIdx.z;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int D = headDim;
  const int nd = (D + 31) >> 5;  // head dimensions per lane
  const int seq = tokenSeq[t];
  const int pos = tokenPos[t];
  const int lo = pos + 1 > window ? pos + 1 - window : 0;
  const int chunk = (pos - lo + 1 + numSplits - 1) / numSplits;
  const int first = lo + split * chunk;
  const int last = first + chunk - 1 < pos ? first + chunk - 1 : pos;  // inclusive; empty if first > last
  const int* table = blockTables + (long long)seq * maxBlocksPerSeq;
  const long long kvRow = (long long)numKvHeads * D;
  const float inf = kiln_inf();
  const float qkScale = scale * kScale;  // exactly `scale` for the formats without a scale (kScale 1)
  // values in 16-byte chunks (8-byte for e4m3) when rows split evenly: rowChunks lanes per key, 32 / rowChunks keys
  // at a time, acc[g][e] holding element e of chunk c; else lane = dimension, acc[g][i] holding
  // dimension lane + 32 i
  constexpr int W = kiln_kv_width<KV>::value;
  const int rowChunks = D / W;
  const bool vectorV = D % W == 0 && rowChunks <= 32 && 32 % rowChunks == 0;
  const int keysAtOnce = vectorV ? 32 / rowChunks : 1;
  const int sub = vectorV ? lane / rowChunks : 0;
  const int c = vectorV ? lane % rowChunks : 0;

  alignas(16) __shared__ float qs[KILN_ATTN_GROUP * KILN_ATTN_MAX_D];
  __shared__ float probs[KILN_ATTN_WARPS][KILN_ATTN_GROUP][32];
  __shared__ long long keyAt[KILN_ATTN_WARPS][32];  // element offset of each tile key's row in the caches
  __shared__ float warpMax[KILN_ATTN_WARPS][KILN_ATTN_GROUP];
  __shared__ float warpSum[KILN_ATTN_WARPS][KILN_ATTN_GROUP];
  __shared__ float warpAcc[KILN_ATTN_WARPS][KILN_ATTN_GROUP][KILN_ATTN_MAX_D];

  // the group's query rows are adjacent: heads h0 … h0 + ng − 1 of token t
  const float* qRows = q + ((long long)t * numHeads + h0) * D;
  for (int i = threadIdx.x; i < ng * D; i += blockDim.x) qs[i] = qRows[i];
  __syncthreads();

  float m[KILN_ATTN_GROUP];  // running max of this warp's scores, per head
  float l[KILN_ATTN_GROUP];  // running sum of exp(score - m)
  float acc[KILN_ATTN_GROUP][KILN_ATTN_MAX_D_PER_LANE];
#pragma unroll
  for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
    m[g] = -inf;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < KILN_ATTN_MAX_D_PER_LANE; ++i) acc[g][i] = 0.0f;
  }

  // base is warp-uniform, so whole warps enter and leave the loop together
  for (int base = first + warp * 32; base <= last; base += KILN_ATTN_WARPS * 32) {
    const int j = base + lane;
    const bool valid = j <= last;
    float score[KILN_ATTN_GROUP];
    long long at = 0;
    if (valid) {
      const int slot = table[j / blockSize] * blockSize + j % blockSize;
      at = (long long)slot * kvRow + (long long)kvh * D;
      kiln_group_dots(score, qs, kCache + at, D, ng);
#pragma unroll
      for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
        score[g] *= qkScale;
        if (SOFTCAP) score[g] = softcap * tanhf(score[g] / softcap);
      }
    } else {
#pragma unroll
      for (int g = 0; g < KILN_ATTN_GROUP; ++g) score[g] = -inf;
    }
#pragma unroll
    for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
      if (g >= ng) continue;                                    // ng is block-uniform
      const float mNew = fmaxf(m[g], kiln_warp_max(score[g]));  // finite: lane 0's key is valid
      const float alpha = expf(m[g] - mNew);                    // 0 on the first tile (m = -inf)
      const float p = valid ? expf(score[g] - mNew) : 0.0f;
      l[g] = l[g] * alpha + kiln_warp_sum(p);
#pragma unroll
      for (int i = 0; i < KILN_ATTN_MAX_D_PER_LANE; ++i) acc[g][i] *= alpha;
      probs[warp][g][lane] = p;
      m[g] = mNew;
    }
    keyAt[warp][lane] = at;
    __syncwarp();
    const int count = last - base + 1 < 32 ? last - base + 1 : 32;
    if (vectorV) {
      for (int jj = sub; jj < count; jj += keysAtOnce) {
        float v[W];
        kiln_kv_chunk(vCache + keyAt[warp][jj], c * W, v);
#pragma unroll
        for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
          if (g < ng) {
            const float p = probs[warp][g][jj];
#pragma unroll
            for (int e = 0; e < W; ++e) acc[g][e] += p * v[e];
          }
        }
      }
    } else {
      for (int jj = 0; jj < count; ++jj) {
        const KV* vRow = vCache + keyAt[warp][jj];
#pragma unroll
        for (int i = 0; i < KILN_ATTN_MAX_D_PER_LANE; ++i) {
          const int d = lane + 32 * i;
          if (i < nd && d < D) {
            const float v = kiln_kv_load(vRow, d);
#pragma unroll
            for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
              if (g < ng) acc[g][i] += probs[warp][g][jj] * v;
            }
          }
        }
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int g = 0; g < KILN_ATTN_GROUP; ++g) {
    if (g >= ng) continue;
    if (lane == 0) {
      warpMax[warp][g] = m[g];
      warpSum[warp][g] = l[g];
    }
    if (vectorV) {
      // the lanes holding the same chunk for different keys add up (vectorV is block-uniform)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        for (int o = rowChunks; o < 32; o <<= 1) acc[g][e] += __shfl_xor_sync(KILN_FULL_MASK, acc[g][e], o);
        if (sub == 0) warpAcc[warp][g][c * W + e] = acc[g][e];
      }
    } else {
#pragma unroll
      for (int i = 0; i < KILN_ATTN_MAX_D_PER_LANE; ++i) {
        const int d = lane + 32 * i;
        if (i < nd && d < D) warpAcc[warp][g][d] = acc[g][i];
      }
    }
  }
  __syncthreads();

  for (int g = 0; g < ng; ++g) {
    const int h = h0 + g;
    float M = -inf;
    for (int w = 0; w < KILN_ATTN_WARPS; ++w) M = fmaxf(M, warpMax[w][g]);
    float weight[KILN_ATTN_WARPS];
    float L = 0.0f;
    for (int w = 0; w < KILN_ATTN_WARPS; ++w) {
      weight[w] = warpSum[w][g] > 0.0f ? expf(warpMax[w][g] - M) : 0.0f;  // warps without keys weigh 0
      L += warpSum[w][g] * weight[w];
    }
    if (numSplits == 1) {
      float* o = out + ((long long)t * numHeads + h) * D;
      for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < KILN_ATTN_WARPS; ++w) s += warpAcc[w][g][d] * weight[w];
        o[d] = s * vScale / L;  // L ≥ 1: every query sees at least its own key
      }
    } else {
      float* part = partial + (((long long)t * numHeads + h) * numSplits + split) * (D + 2);
      if (threadIdx.x == 0) {
        part[0] = M;  // -inf for an empty split
        part[1] = L;  // 0 for an empty split
      }
      for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < KILN_ATTN_WARPS; ++w) s += warpAcc[w][g][d] * weight[w];
        part[2 + d] = s * vScale;  // the combine is linear in the sums
      }
    }
  }
}

extern "C" __global__ void kiln_paged_attention(float* out, float* partial, const float* q, const float* kCache,
                                      const float* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  kiln_attend<false, float>(out, partial, q, kCache, vCache, tokenSeq, tokenPos, blockTables, maxBlocksPerSeq, blockSize,
                        numHeads, numKvHeads, headDim, scale, window, softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_softcap(float* out, float* partial, const float* q, const float* kCache,
                                      const float* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  kiln_attend<true, float>(out, partial, q, kCache, vCache, tokenSeq, tokenPos, blockTables, maxBlocksPerSeq, blockSize,
                        numHeads, numKvHeads, headDim, scale, window, softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_bf16(float* out, float* partial, const float* q, const unsigned short* kCache,
                                      const unsigned short* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  typedef kiln_half_bits<kiln_bf16_format> KV;
  kiln_attend<false, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                         tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                         softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_softcap_bf16(float* out, float* partial, const float* q, const unsigned short* kCache,
                                      const unsigned short* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  typedef kiln_half_bits<kiln_bf16_format> KV;
  kiln_attend<true, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                        tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                        softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_f16(float* out, float* partial, const float* q, const unsigned short* kCache,
                                      const unsigned short* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  typedef kiln_half_bits<kiln_f16_format> KV;
  kiln_attend<false, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                         tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                         softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_softcap_f16(float* out, float* partial, const float* q, const unsigned short* kCache,
                                      const unsigned short* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits) {
  typedef kiln_half_bits<kiln_f16_format> KV;
  kiln_attend<true, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                        tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                        softcap, numSplits, 1.0f, 1.0f);
}

extern "C" __global__ void kiln_paged_attention_fp8(float* out, float* partial, const float* q, const unsigned char* kCache,
                                      const unsigned char* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits, float kScale, float vScale) {
  typedef kiln_byte_bits<kiln_e4m3_format> KV;
  kiln_attend<false, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                         tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                         softcap, numSplits, kScale, vScale);
}

extern "C" __global__ void kiln_paged_attention_softcap_fp8(float* out, float* partial, const float* q, const unsigned char* kCache,
                                      const unsigned char* vCache, const int* tokenSeq, const int* tokenPos,
                                      const int* blockTables, int maxBlocksPerSeq, int blockSize, int numHeads,
                                      int numKvHeads, int headDim, float scale, int window, float softcap,
                                      int numSplits, float kScale, float vScale) {
  typedef kiln_byte_bits<kiln_e4m3_format> KV;
  kiln_attend<true, KV>(out, partial, q, reinterpret_cast<const KV*>(kCache), reinterpret_cast<const KV*>(vCache), tokenSeq,
                        tokenPos, blockTables, maxBlocksPerSeq, blockSize, numHeads, numKvHeads, headDim, scale, window,
                        softcap, numSplits, kScale, vScale);
}

// Merges the splits of kiln_paged_attention: out = Σ_s acc_s e^(m_s − M) / Σ_s l_s e^(m_s − M),
// M = max_s m_s, skipping empty splits (l_s = 0).
// partial [T, numHeads, numSplits, headDim + 2]; out [T, numHeads · headDim].
// Launch: grid (T, numHeads), block (128).
extern "C" __global__ void kiln_attention_combine(float* out, const float* partial, int T, int numHeads, int headDim,
                                                  int numSplits) {
  const int t = blockIdx.x;
  const int h = blockIdx.y;
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
