// Sampling on the device, with the semantics of runtime/engine/sampler.ts (the reference).
//
// kiln_argmax_rows: greedy only. out[s] = argmax_j logits[s, j], the first index on ties and NaN
// never chosen; a row with no number above -inf gives 0. Launch: grid (S), block (256).
//
// kiln_sample_rows: the full sampler, one block per row. The row's logit adjustments (min_tokens,
// logit_bias, penalties) are applied in place from a sparse list of distinct tokens, then greedy
// argmax, or: e_i = exp((l_i − max) / T) in double; min_p keeps e ≥ minP; top_k keeps e at least
// the k-th largest (ties included); top_p keeps, in order of descending e (ties by ascending id),
// each token whose predecessors hold less than topP of the mass; the draw takes the token at
// cumulative weight u · total, in ascending ids without top_p, else in the top_p order. Nothing
// is sorted: thresholds are found by a search on the bits of e (non-negative doubles order as
// their bit patterns), 4 bits per pass over the row with block reductions, then a tie group is
// cut by id, also by a search (15 split points per pass).
// Launch: grid (S), block (KILN_SAMPLE_THREADS).
//
// params (i32 words; a double takes two words, low word first), built by runtime/device_sampling.ts:
//   header of row s at s·KILN_SAMPLE_HEADER: [0] first entry's word, [1] entries, [2] flags
//   (1 greedy, 2 repetition penalty, 4 frequency/presence penalties, 8 token mask), [3] top_k
//   (0: off), [4] temperature, [6] min_p, [8] top_p, [10] repetition, [12] frequency,
//   [14] presence, [16] u, [18] the token mask's first word (with flag 8), [19] unused
//   token mask (a structured-output grammar's allowed tokens): ceil(V/32) words, bit t%32 of word
//   t/32 set = token t allowed; it applies before every other adjustment, as on the host
//   entry: [0] token, [1] count in the output, [2] flags (1 masked by min_tokens, 2 in the
//   prompt, 4 has a bias), [3] bias
#include "common.cuh"

#define KILN_SAMPLE_THREADS 256
#define KILN_SAMPLE_HEADER 20
#define KILN_SAMPLE_ENTRY 5

// Combining (value, index) candidates: the larger value wins, equal values go to the smaller
// index. Over a warp (every lane gets the result), then over the block (every thread gets it).
__device__ __forceinline__ void kiln_argmax_warp(float& best, int& bestAt) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(KILN_FULL_MASK, best, o);
    const int oi = __shfl_xor_sync(KILN_FULL_MASK, bestAt, o);
    if (ov > best || (ov == best && oi < bestAt)) {
      best = ov;
      bestAt = oi;
    }
  }
}

__device__ void kiln_argmax_block(float& best, int& bestAt) {
  kiln_argmax_warp(best, bestAt);
  __shared__ float warpBest[32];
  __shared__ int warpAt[32];
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    warpBest[warp] = best;
    warpAt[warp] = bestAt;
  }
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  for (int w = 0; w < warps; w++) {
    if (warpBest[w] > best || (warpBest[w] == best && warpAt[w] < bestAt)) {
      best = warpBest[w];
      bestAt = warpAt[w];
    }
  }
  __syncthreads();
}

// The lowest index of the row's largest value (NaN never), or V when nothing is above -inf;
// every thread of the block gets it.
__device__ int kiln_row_argmax(const float* row, int V) {
  float best = -kiln_inf();
  int bestAt = V;  // "none yet": larger than every index
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    if (row[j] > best) {  // strictly greater: a thread keeps its first maximum
      best = row[j];
      bestAt = j;
    }
  }
  kiln_argmax_block(best, bestAt);
  return bestAt;
}

extern "C" __global__ void kiln_argmax_rows(int* out, const float* logits, int S, int V) {
  const int s = blockIdx.x;
  if (s >= S) return;
  const int at = kiln_row_argmax(logits + (long long)s * V, V);
  if (threadIdx.x == 0) out[s] = at < V ? at : 0;
}

// Greedy over many blocks a row, for decode steps with few rows and a large vocabulary (one block
// a row leaves all but S SMs idle while it reads V floats). Two launches, the same result as
// kiln_argmax_rows:
//   kiln_argmax_partial, grid (B, S), block (256): block b of row s scans the b-th of B chunks of
//     the row (chunk edges on 16-byte boundaries of the buffer, so the body is read as float4) and
//     writes its best (value, index) to partVal/partAt[s·B + b]; index V when it saw nothing above
//     -inf.
//   kiln_argmax_final, grid (S), block (32): combines a row's B partials; out[s] = 0 when none.
// Order everywhere: the larger value wins, equal values go to the smaller index, NaN and -inf never.
__device__ __forceinline__ void kiln_argmax_take(float v, int j, float& best, int& bestAt) {
  if (v > -kiln_inf() && (v > best || (v == best && j < bestAt))) {
    best = v;
    bestAt = j;
  }
}

extern "C" __global__ void kiln_argmax_partial(float* partVal, int* partAt, const float* logits, int S, int V, int B) {
  const int b = blockIdx.x;
  const int s = blockIdx.y;
  if (s >= S || b >= B) return;
  // absolute element offsets in the [S, V] buffer; chunk edges at multiples of 4 past the row's
  // first aligned element, clamped to the row
  const long long rowStart = (long long)s * V;
  const long long rowEnd = rowStart + V;
  const long long chunk = (((long long)V + B - 1) / B + 3) / 4 * 4;  // ⌈V / B⌉ rounded up to a float4
  const long long first = (rowStart + 3) / 4 * 4;
  const long long lo = b == 0 ? rowStart : (first + b * chunk < rowEnd ? first + b * chunk : rowEnd);
  const long long hiRaw = first + (b + 1) * chunk;
  const long long hi = b == B - 1 ? rowEnd : (hiRaw < rowEnd ? hiRaw : rowEnd);
  float best = -kiln_inf();
  int bestAt = V;
  // whole float4s inside [lo, hi); the ragged ends one by one
  const long long qa = (lo + 3) / 4;
  const long long qb = hi / 4;
  if (qa < qb) {
    const float4* v4 = reinterpret_cast<const float4*>(logits);
    const long long stride = blockDim.x;
    long long q = qa + threadIdx.x;
    // four loads in flight a thread before any compare: the loop is bound by latency otherwise
    for (; q + 3 * stride < qb; q += 4 * stride) {
      float4 x[4];
#pragma unroll
      for (int u = 0; u < 4; u++) x[u] = __ldg(v4 + q + u * stride);
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int j = (int)(4 * (q + u * stride) - rowStart);
        kiln_argmax_take(x[u].x, j, best, bestAt);
        kiln_argmax_take(x[u].y, j + 1, best, bestAt);
        kiln_argmax_take(x[u].z, j + 2, best, bestAt);
        kiln_argmax_take(x[u].w, j + 3, best, bestAt);
      }
    }
    for (; q < qb; q += stride) {
      const float4 x = __ldg(v4 + q);
      const int j = (int)(4 * q - rowStart);
      kiln_argmax_take(x.x, j, best, bestAt);
      kiln_argmax_take(x.y, j + 1, best, bestAt);
      kiln_argmax_take(x.z, j + 2, best, bestAt);
      kiln_argmax_take(x.w, j + 3, best, bestAt);
    }
    const long long head = 4 * qa - lo;  // < 4
    const long long tail = hi - 4 * qb;  // < 4
    if ((long long)threadIdx.x < head) kiln_argmax_take(logits[lo + threadIdx.x], (int)(lo + threadIdx.x - rowStart), best, bestAt);
    if ((long long)threadIdx.x < tail) kiln_argmax_take(logits[4 * qb + threadIdx.x], (int)(4 * qb + threadIdx.x - rowStart), best, bestAt);
  } else {
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) kiln_argmax_take(logits[i], (int)(i - rowStart), best, bestAt);
  }
  kiln_argmax_block(best, bestAt);
  if (threadIdx.x == 0) {
    partVal[(long long)s * B + b] = best;
    partAt[(long long)s * B + b] = bestAt;
  }
}

extern "C" __global__ void kiln_argmax_final(int* out, const float* partVal, const int* partAt, int S, int V, int B) {
  const int s = blockIdx.x;
  if (s >= S) return;
  float best = -kiln_inf();
  int bestAt = V;
  for (int b = threadIdx.x; b < B; b += blockDim.x) {
    const float v = partVal[(long long)s * B + b];
    const int j = partAt[(long long)s * B + b];
    if (j < V && (v > best || (v == best && j < bestAt))) {
      best = v;
      bestAt = j;
    }
  }
  kiln_argmax_warp(best, bestAt);
  if (threadIdx.x == 0) out[s] = bestAt < V ? bestAt : 0;
}

__device__ __forceinline__ double kiln_f64_at(const int* w) { return __hiloint2double(w[1], w[0]); }

__device__ __forceinline__ double kiln_f64_bits(unsigned long long b) { return __longlong_as_double((long long)b); }

// Block sum; every thread gets the same value (a fixed order, so the result is deterministic).
// blockDim.x is a multiple of 32.
__device__ double kiln_block_sum_f64(double v) {
  __shared__ double part[32];
  v = kiln_warp_sum_f64(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += part[w];
  __syncthreads();
  return s;
}

__device__ double kiln_block_max_f64(double v) {
  __shared__ double part[32];
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(KILN_FULL_MASK, v, o));
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  double m = part[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); w++) m = fmax(m, part[w]);
  __syncthreads();
  return m;
}

// What a row keeps after min_p, top_k and top_p.
struct KilnSampleCut {
  double mx;    // the row's largest logit
  double T;     // temperature
  double minP;  // e ≥ minP
  double topK;  // e ≥ this (0: no top_k)
  bool nucleus; // top_p cut at (tau, idCut): e > tau, or e == tau and id ≤ idCut
  double tau;
  int idCut;
};

__device__ __forceinline__ double kiln_sample_e(float l, const KilnSampleCut& c) { return exp(((double)l - c.mx) / c.T); }

__device__ __forceinline__ bool kiln_sample_kept(int i, double e, const KilnSampleCut& c) {
  if (!(e > 0.0) || e < c.minP || e < c.topK) return false;
  return !c.nucleus || e > c.tau || (e == c.tau && i <= c.idCut);
}

// Σ over the row of f(id, e); every thread gets it.
template <class F>
__device__ double kiln_row_sum(const float* row, int V, const KilnSampleCut& c, F f) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) acc += f(i, kiln_sample_e(row[i], c));
  return kiln_block_sum_f64(acc);
}

// Searches test up to KILN_SAMPLE_FAN candidates per pass over the row, so a 62-bit threshold
// takes 16 passes (4 bits each) and an id among V takes log16(V) passes.
#define KILN_SAMPLE_FAN 15

// Block sums of acc[d] for d < count (block-uniform) into out.
__device__ __forceinline__ void kiln_block_sums(const double (&acc)[KILN_SAMPLE_FAN], int count, double* out) {
#pragma unroll
  for (int d = 0; d < KILN_SAMPLE_FAN; d++) {
    if (d < count) out[d] = kiln_block_sum_f64(acc[d]);
  }
}

// The largest pattern b of a double in [0, 1] for which accept(Σ_i term(i, e, v = b)) holds, with
// term(i, e, v) = weight(i, e) when e ≥ v (e > v when `strict`) and 0 otherwise, weight being 0
// for the tokens cut (the test is true at 0 and monotone: true below some point, false above).
// 4 bits a pass: the 15 patterns that extend the bits found so far are tested at once, each
// element's e computed once. Each sum adds the same nonzero terms in the same order as a pass
// for that pattern alone would, so it is the same double.
template <class W, class A>
__device__ unsigned long long kiln_largest_bits(const float* row, int V, const KilnSampleCut& c, bool strict, W weight, A accept) {
  unsigned long long b = 0;
  int top = 61;  // 1.0 is 0x3FF0000000000000: bits 62 and 63 stay clear
  while (top >= 0) {
    const int nb = top + 1 >= 4 ? 4 : top + 1;
    const int shift = top + 1 - nb;
    const int count = (1 << nb) - 1;
    double acc[KILN_SAMPLE_FAN];
#pragma unroll
    for (int d = 0; d < KILN_SAMPLE_FAN; d++) acc[d] = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const double e = kiln_sample_e(row[i], c);
      const double w = weight(i, e);
      if (w == 0.0) continue;
      bool in = true;  // candidates grow with d: once e is below one it is below the rest
#pragma unroll
      for (int d = 0; d < KILN_SAMPLE_FAN; d++) {
        const double v = kiln_f64_bits(b | ((unsigned long long)(d + 1) << shift));
        in = in && d < count && (strict ? e > v : e >= v);
        if (in) acc[d] += w;
      }
    }
    double sums[KILN_SAMPLE_FAN];
    kiln_block_sums(acc, count, sums);
    int best = 0;
    for (int d = 0; d < count; d++) {
      if (accept(sums[d])) best = d + 1;  // monotone: the accepted ones come first
    }
    b |= (unsigned long long)best << shift;
    top = shift - 1;
  }
  return b;
}

// The smallest id x in [0, V) for which accept(Σ_{i ≤ x} weight(i, e)) holds (monotone in x),
// V − 1 when none: 15 split points of the interval left are tested a pass.
template <class W, class A>
__device__ int kiln_first_id(const float* row, int V, const KilnSampleCut& c, W weight, A accept) {
  int lo = 0;
  int hi = V - 1;  // the answer lies in [lo, hi]
  while (lo < hi) {
    // split d at lo + span · (d + 1) / 16: nondecreasing in d, all in [lo, hi)
    const long long span = hi - lo;
    const int base = lo;
    double acc[KILN_SAMPLE_FAN];
#pragma unroll
    for (int d = 0; d < KILN_SAMPLE_FAN; d++) acc[d] = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const double w = weight(i, kiln_sample_e(row[i], c));
      if (w == 0.0) continue;
#pragma unroll
      for (int d = 0; d < KILN_SAMPLE_FAN; d++) {
        if (i <= base + (int)(span * (d + 1) / (KILN_SAMPLE_FAN + 1))) acc[d] += w;
      }
    }
    double sums[KILN_SAMPLE_FAN];
    kiln_block_sums(acc, KILN_SAMPLE_FAN, sums);
    int first = KILN_SAMPLE_FAN;
    for (int d = KILN_SAMPLE_FAN - 1; d >= 0; d--) {
      if (accept(sums[d])) first = d;
    }
    if (first < KILN_SAMPLE_FAN) hi = base + (int)(span * (first + 1) / (KILN_SAMPLE_FAN + 1));
    if (first > 0) lo = base + (int)(span * first / (KILN_SAMPLE_FAN + 1)) + 1;
  }
  return lo;
}

// The n-th smallest id (n ≥ 1) among the ids where member(id, e) holds: the smallest x with
// n members at or below it; V - 1 when there are fewer.
template <class M>
__device__ int kiln_nth_id(const float* row, int V, const KilnSampleCut& c, M member, int n) {
  return kiln_first_id(row, V, c, [&](int i, double e) { return member(i, e) ? 1.0 : 0.0; }, [&](double k) { return k >= (double)n; });
}

// The token drawn from a row (its adjustments applied), as sampler.ts's drawFromLogits.
__device__ int kiln_sample_draw(const float* row, int V, const int* h) {
  float m = -kiln_inf();
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    if (row[i] > m) m = row[i];  // NaN never
  }
  KilnSampleCut c;
  c.mx = kiln_block_max_f64((double)m);
  if (c.mx == (double)-kiln_inf()) return 0;  // nothing above -inf: argmax gives 0
  c.T = kiln_f64_at(h + 4);
  c.minP = kiln_f64_at(h + 6);
  c.topK = 0.0;
  c.nucleus = false;
  c.tau = 0.0;
  c.idCut = V;
  const int topK = h[3];
  if (topK >= 1) {
    const double n = kiln_row_sum(row, V, c, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? 1.0 : 0.0; });
    if ((double)topK < n) {
      // the k-th largest e: the largest v with at least k kept tokens at or above it
      const unsigned long long b = kiln_largest_bits(
          row, V, c, false, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? 1.0 : 0.0; }, [&](double n) { return n >= (double)topK; });
      c.topK = kiln_f64_bits(b);
    }
  }
  const double topP = kiln_f64_at(h + 8);
  if (topP < 1.0) {
    const double mass = kiln_row_sum(row, V, c, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? e : 0.0; });
    const double need = __dmul_rn(topP, mass);
    // above(v): the mass of the kept tokens with e > v, which precede every token of weight v.
    // The last kept weight tau is the smallest v with above(v) < need: one pattern past the
    // largest with above(v) ≥ need (when above(0) < need, every token is kept).
    if (mass >= need) {
      const unsigned long long b = kiln_largest_bits(
          row, V, c, true, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? e : 0.0; }, [&](double above) { return above >= need; });
      const double tau = kiln_f64_bits(b + 1);
      const double before = kiln_row_sum(row, V, c, [&](int i, double e) { return e > tau && kiln_sample_kept(i, e, c) ? e : 0.0; });
      const double ties = kiln_row_sum(row, V, c, [&](int i, double e) { return e == tau && kiln_sample_kept(i, e, c) ? 1.0 : 0.0; });
      // the tie group in ascending ids: each member is kept while the mass before it is < need
      int keep = 0;
      double acc = before;
      while ((double)keep < ties && acc < need) {
        acc += tau;
        keep++;
      }
      if (keep < 1) keep = 1;
      if ((double)keep < ties) {
        c.idCut = kiln_nth_id(row, V, c, [&](int i, double e) { return e == tau && kiln_sample_kept(i, e, c); }, keep);
      }
      c.nucleus = true;
      c.tau = tau;
    }
  }
  const double total = kiln_row_sum(row, V, c, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? e : 0.0; });
  const double target = __dmul_rn(kiln_f64_at(h + 16), total);
  if (!c.nucleus) {
    // ascending ids: the first whose inclusive prefix exceeds the target, else the last kept
    if (!(total > target)) {
      double last = -1.0;
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        if (kiln_sample_kept(i, kiln_sample_e(row[i], c), c)) last = (double)i;
      }
      last = kiln_block_max_f64(last);
      return last < 0.0 ? 0 : (int)last;
    }
    return kiln_first_id(
        row, V, c, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? e : 0.0; }, [&](double upTo) { return upTo > target; });
  }
  // descending e, ties by ascending id
  double w;
  double before = 0.0;
  double ties = 0.0;
  if (total > target) {
    // the drawn weight: the largest v whose kept tokens at or above it hold more than the target
    w = kiln_f64_bits(kiln_largest_bits(
        row, V, c, false, [&](int i, double e) { return kiln_sample_kept(i, e, c) ? e : 0.0; }, [&](double atOrAbove) { return atOrAbove > target; }));
    before = kiln_row_sum(row, V, c, [&](int i, double e) { return e > w && kiln_sample_kept(i, e, c) ? e : 0.0; });
    ties = kiln_row_sum(row, V, c, [&](int i, double e) { return e == w && kiln_sample_kept(i, e, c) ? 1.0 : 0.0; });
    int m = 0;
    double acc = before;
    for (; (double)(m + 1) < ties; m++) {
      acc += w;
      if (target < acc) break;
    }
    return kiln_nth_id(row, V, c, [&](int i, double e) { return e == w && kiln_sample_kept(i, e, c); }, m + 1);
  }
  // past the end: the last token in this order, the largest id of the smallest kept weight
  double least = 0.0;
  {
    double lo = 2.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const double e = kiln_sample_e(row[i], c);
      if (kiln_sample_kept(i, e, c) && e < lo) lo = e;
    }
    least = -kiln_block_max_f64(-lo);
  }
  double last = -1.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const double e = kiln_sample_e(row[i], c);
    if (e == least && kiln_sample_kept(i, e, c)) last = (double)i;
  }
  last = kiln_block_max_f64(last);
  return last < 0.0 ? 0 : (int)last;
}

// A penalised finite logit stays finite, as sampler.ts's holdFinite: a tiny repetition penalty
// would divide it to +inf, and softmax over +inf is NaN. A masked (infinite) logit keeps its value.
__device__ __forceinline__ float kiln_hold_finite(float x, double y) {
  const double fmax = 3.4028234663852886e38;
  if (!(x > -kiln_inf() && x < kiln_inf()) || (y <= fmax && y >= -fmax)) return (float)y;
  return y > 0.0 ? (float)fmax : (float)-fmax;
}

extern "C" __global__ void kiln_sample_rows(int* out, float* logits, const int* params, int S, int V) {
  const int s = blockIdx.x;
  if (s >= S) return;
  float* row = logits + (long long)s * V;
  const int* h = params + (long long)s * KILN_SAMPLE_HEADER;
  const int flags = h[2];
  if (flags & 8) {
    const int* mask = params + h[18];
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      if (!((mask[i >> 5] >> (i & 31)) & 1)) row[i] = -kiln_inf();
    }
    __syncthreads();
  }
  // the adjustments, in sampler.ts's order per token; the entries name distinct tokens
  const int* entries = params + h[0];
  for (int j = threadIdx.x; j < h[1]; j += blockDim.x) {
    const int* en = entries + (long long)j * KILN_SAMPLE_ENTRY;
    const int t = en[0];
    if (t < 0 || t >= V) continue;
    const int count = en[1];
    const int ef = en[2];
    float x = row[t];
    if (ef & 1) x = -kiln_inf();
    if (ef & 4) x = (float)__dadd_rn((double)x, kiln_f64_at(en + 3));
    if ((flags & 2) && ((ef & 2) || count > 0)) {
      const double r = kiln_f64_at(h + 10);
      x = kiln_hold_finite(x, x > 0.0f ? (double)x / r : __dmul_rn((double)x, r));
    }
    if ((flags & 4) && count > 0) {
      x = (float)__dsub_rn((double)x, __dmul_rn(kiln_f64_at(h + 12), (double)count));
      x = (float)__dsub_rn((double)x, kiln_f64_at(h + 14));
    }
    row[t] = x;
  }
  __syncthreads();
  int token;
  if (flags & 1) {
    token = kiln_row_argmax(row, V);
    if (token >= V) token = 0;
  } else {
    token = kiln_sample_draw(row, V, h);
  }
  if (threadIdx.x == 0) out[s] = token;
}
