// Matrix–vector products for decode-sized linears: out[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]) for
// 1 <= M <= 8 rows, f32 accumulation. With so few rows the product is bound by reading W once, so
// every output column is a dot product streamed by one or more warps and nothing is staged.
//
// kiln_gemv_bf16: W [N, K] bf16 bit patterns. Each x element is rounded to bf16 (ties to even,
//   as kiln_f32_to_bf16 does) before it multiplies, so the result is the bf16 GEMM's:
//   out[m, n] = Σ_k bf16(x[m, k]) · W[n, k], the products exact in f32.
// kiln_gemv_f16: the same with W [N, K] f16 bit patterns and x rounded to f16 (ties to even, as
//   kiln_f32_to_f16 does): the f16 GEMM's result.
// kiln_gemv_f32: W [N, K] f32; out[m, n] = Σ_k x[m, k] · W[n, k].
//   Both: x [M, K] f32, out [M, N] f32; bias [N] added when hasBias != 0 (pass any device pointer
//   otherwise). A warp computes C = 8 / R columns for all M rows, R = M rounded up to a power of
//   two (M = 1: 8 columns, M = 2: 4, M = 3..4: 2, M = 5..8: 1), so its 8 accumulators reduce
//   together with 9 shuffles. W rows are read with 16-byte loads (8 bf16 or f16 / 4 f32) when K is a
//   multiple of that and W and x start 16-byte aligned (then every row does), else one element
//   per lane. The M rows of x are re-read from L1/L2, each x element used for the warp's C
//   columns. With split > 1, consecutive warps share the columns, their K chunks interleaved, and
//   their sums are added through shared memory in a fixed order.
//   Launch: grid (ceil(N / (C · 8 / split))), block (256): 8 warps, split ∈ {1, 2, 4, 8}; warp w
//   of block b takes columns [(b · 8 / split + w / split) · C, + C), part w % split of their
//   16-byte chunks (or elements). Needs 1 <= M <= 8.
#include "common.cuh"

#define KILN_GEMV_MAX_ROWS 8
#define KILN_GEMV_WARPS 8

// `#pragma unroll n` for the device compilers only (a host compiler would warn about it)
#if defined(__CUDACC__)
#define KILN_GEMV_UNROLL _Pragma("unroll 2")
#else
#define KILN_GEMV_UNROLL
#endif

// 16 bytes, loaded as one vector access
struct alignas(16) kiln_gemv_u32x4 {
  unsigned int v[4];
};
struct alignas(16) kiln_gemv_f32x4 {
  float v[4];
};

// 16-bit weights of format F (bf16 or f16): 8 per 16-byte chunk; x rounded to F and widened back
template <class F>
struct kiln_gemv_half_weights {
  typedef unsigned short elem;
  static constexpr int VEC = 8;
  __device__ static __forceinline__ float widen(unsigned short bits) { return F::widen(bits); }
  __device__ static __forceinline__ float input(float v) { return F::widen(F::round(v)); }
  // element 2i is the low half of word i (little-endian), 2i + 1 the high half
  __device__ static __forceinline__ void load(const unsigned short* __restrict__ p, float (&w)[VEC]) {
    const kiln_gemv_u32x4 q = *reinterpret_cast<const kiln_gemv_u32x4*>(p);
    for (int i = 0; i < 4; i++) {
      w[2 * i] = F::widen((unsigned short)(q.v[i] & 0xffffu));
      w[2 * i + 1] = F::widen((unsigned short)(q.v[i] >> 16));
    }
  }
};

// f32 weights: 4 per 16-byte chunk; x as it is
struct kiln_gemv_f32_weights {
  typedef float elem;
  static constexpr int VEC = 4;
  __device__ static __forceinline__ float widen(float v) { return v; }
  __device__ static __forceinline__ float input(float v) { return v; }
  __device__ static __forceinline__ void load(const float* __restrict__ p, float (&w)[VEC]) {
    const kiln_gemv_f32x4 q = *reinterpret_cast<const kiln_gemv_f32x4*>(p);
    for (int i = 0; i < 4; i++) w[i] = q.v[i];
  }
};

// M rows rounded up to a power of two, and the columns a warp takes so that columns × rows = 8
template <int M>
struct kiln_gemv_shape {
  static constexpr int ROWS = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
  static constexpr int COLS = 8 / ROWS;
};

// Sums each of v[0..8) over the 32 lanes with 9 shuffles instead of 8 × 5: in each of the first
// three steps a lane keeps the half of its values its lane bit selects, sends the other half to
// its partner and adds what the partner sent; the last two steps are the plain butterfly. Lane l
// returns the total of v[((l >> 4) & 1) · 4 + ((l >> 3) & 1) · 2 + ((l >> 2) & 1)].
__device__ __forceinline__ float kiln_gemv_reduce8(const float (&v)[8], int lane) {
  const bool hi16 = (lane & 16) != 0;
  float a[4];
  for (int i = 0; i < 4; i++) {
    const float send = hi16 ? v[i] : v[i + 4];
    a[i] = (hi16 ? v[i + 4] : v[i]) + __shfl_xor_sync(KILN_FULL_MASK, send, 16);
  }
  const bool hi8 = (lane & 8) != 0;
  float b[2];
  for (int i = 0; i < 2; i++) {
    const float send = hi8 ? a[i] : a[i + 2];
    b[i] = (hi8 ? a[i + 2] : a[i]) + __shfl_xor_sync(KILN_FULL_MASK, send, 8);
  }
  const bool hi4 = (lane & 4) != 0;
  float c = (hi4 ? b[1] : b[0]) + __shfl_xor_sync(KILN_FULL_MASK, hi4 ? b[0] : b[1], 4);
  c += __shfl_xor_sync(KILN_FULL_MASK, c, 2);
  c += __shfl_xor_sync(KILN_FULL_MASK, c, 1);
  return c;
}

// acc[c · ROWS + m] accumulates out[m, n0 + c]; a warp's columns past N read row N − 1 (so the
// loop has no branch) and are not written.
template <class T, int M>
__device__ __forceinline__ void kiln_gemv_rows(float* __restrict__ out, const float* __restrict__ x,
                                               const typename T::elem* __restrict__ w, const float* __restrict__ bias,
                                               int hasBias, int N, int K, int split) {
  typedef kiln_gemv_shape<M> S;
  __shared__ float partial[KILN_GEMV_WARPS][8];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int groups = KILN_GEMV_WARPS / split;  // column groups per block
  const int n0 = (blockIdx.x * groups + warp / split) * S::COLS;
  const int part = warp % split;
  const typename T::elem* wr[S::COLS];
  for (int c = 0; c < S::COLS; c++) wr[c] = w + (long long)(n0 + c < N ? n0 + c : N - 1) * K;
  float acc[8];
  for (int i = 0; i < 8; i++) acc[i] = 0.0f;
  const bool vector = K % T::VEC == 0 && reinterpret_cast<unsigned long long>(w) % 16 == 0 &&
                      reinterpret_cast<unsigned long long>(x) % 16 == 0;
  if (vector) {
    const int chunks = K / T::VEC;
    KILN_GEMV_UNROLL
    for (int k = part * KILN_WARP + lane; k < chunks; k += KILN_WARP * split) {
      float wv[S::COLS][T::VEC];
      for (int c = 0; c < S::COLS; c++) T::load(wr[c] + (long long)k * T::VEC, wv[c]);
      for (int m = 0; m < M; m++) {
        const float* xr = x + (long long)m * K + (long long)k * T::VEC;
        for (int q = 0; q < T::VEC / 4; q++) {
          const kiln_gemv_f32x4 xv = *reinterpret_cast<const kiln_gemv_f32x4*>(xr + 4 * q);
          for (int j = 0; j < 4; j++) {
            const float xi = T::input(xv.v[j]);
            for (int c = 0; c < S::COLS; c++) acc[c * S::ROWS + m] += xi * wv[c][4 * q + j];
          }
        }
      }
    }
  } else {
    for (int k = part * KILN_WARP + lane; k < K; k += KILN_WARP * split) {
      float wk[S::COLS];
      for (int c = 0; c < S::COLS; c++) wk[c] = T::widen(wr[c][k]);
      for (int m = 0; m < M; m++) {
        const float xi = T::input(x[(long long)m * K + k]);
        for (int c = 0; c < S::COLS; c++) acc[c * S::ROWS + m] += xi * wk[c];
      }
    }
  }
  const float total = kiln_gemv_reduce8(acc, lane);
  const int idx = ((lane >> 4) & 1) * 4 + ((lane >> 3) & 1) * 2 + ((lane >> 2) & 1);
  if (split == 1) {  // the same for the whole block: no barrier is skipped by some threads only
    const int n = n0 + idx / S::ROWS;
    const int m = idx % S::ROWS;
    if ((lane & 3) == 0 && m < M && n < N) out[(long long)m * N + n] = total + (hasBias ? bias[n] : 0.0f);
    return;
  }
  if ((lane & 3) == 0) partial[warp][idx] = total;
  __syncthreads();
  const int t = threadIdx.x;
  if (t < groups * 8) {
    const int g = t >> 3;
    const int i = t & 7;
    const int n = (blockIdx.x * groups + g) * S::COLS + i / S::ROWS;
    const int m = i % S::ROWS;
    if (m < M && n < N) {
      float sum = 0.0f;
      for (int p = 0; p < split; p++) sum += partial[g * split + p][i];
      out[(long long)m * N + n] = sum + (hasBias ? bias[n] : 0.0f);
    }
  }
}

// M as a compile-time constant, so the accumulators stay in registers
template <class T>
__device__ __forceinline__ void kiln_gemv(float* __restrict__ out, const float* __restrict__ x,
                                          const typename T::elem* __restrict__ w, const float* __restrict__ bias,
                                          int hasBias, int M, int N, int K, int split) {
  switch (M) {
    case 1: return kiln_gemv_rows<T, 1>(out, x, w, bias, hasBias, N, K, split);
    case 2: return kiln_gemv_rows<T, 2>(out, x, w, bias, hasBias, N, K, split);
    case 3: return kiln_gemv_rows<T, 3>(out, x, w, bias, hasBias, N, K, split);
    case 4: return kiln_gemv_rows<T, 4>(out, x, w, bias, hasBias, N, K, split);
    case 5: return kiln_gemv_rows<T, 5>(out, x, w, bias, hasBias, N, K, split);
    case 6: return kiln_gemv_rows<T, 6>(out, x, w, bias, hasBias, N, K, split);
    case 7: return kiln_gemv_rows<T, 7>(out, x, w, bias, hasBias, N, K, split);
    case 8: return kiln_gemv_rows<T, 8>(out, x, w, bias, hasBias, N, K, split);
    default: return;  // the host never launches more rows
  }
}

extern "C" __global__ void kiln_gemv_bf16(float* __restrict__ out, const float* __restrict__ x,
                                          const unsigned short* __restrict__ w, const float* __restrict__ bias,
                                          int hasBias, int M, int N, int K, int split) {
  kiln_gemv<kiln_gemv_half_weights<kiln_bf16_format> >(out, x, w, bias, hasBias, M, N, K, split);
}

extern "C" __global__ void kiln_gemv_f16(float* __restrict__ out, const float* __restrict__ x,
                                         const unsigned short* __restrict__ w, const float* __restrict__ bias,
                                         int hasBias, int M, int N, int K, int split) {
  kiln_gemv<kiln_gemv_half_weights<kiln_f16_format> >(out, x, w, bias, hasBias, M, N, K, split);
}

extern "C" __global__ void kiln_gemv_f32(float* __restrict__ out, const float* __restrict__ x,
                                         const float* __restrict__ w, const float* __restrict__ bias, int hasBias,
                                         int M, int N, int K, int split) {
  kiln_gemv<kiln_gemv_f32_weights>(out, x, w, bias, hasBias, M, N, K, split);
}
