// Fused experts (IR `moe`) in three launches of fixed shape for a given T, so a CUDA graph can
// capture them; no atomics, so results do not depend on scheduling. Activations, the router and
// every product and sum are f32; the expert weights w13 and w2 are f32 (kiln_moe_act,
// kiln_moe_down) or bf16 / f16 bit patterns (the _bf16 / _f16 entry points), widened exactly to f32
// as they are read, so a 16-bit expert reads half the bytes and computes what the f32 kernel
// computes on the widened weights.
//
// kiln_moe_route: logits = x · routerᵀ, softmax over the E experts, the top-k (ties to the lower
//   index), renormalized to sum 1 when renorm != 0.
//   x [T, H], router [E, H] → experts [T, K] (i32), weights [T, K].
//   Launch: grid (T), block (128); needs E <= 256 and K <= 32.
// kiln_moe_act: per (token, k) pair, the chosen expert's h = act(gate) · up, act = silu.
//   x [T, H], w13 [E, 2I, H] (gate rows then up rows) → h [T, K, I].
//   Launch: grid (T · K), block (128): one warp per row of h.
// kiln_moe_down: out[t] = Σ_k weights[t, k] · w2[experts[t, k]] · h[t, k], summed in k order.
//   h [T, K, I], w2 [E, H, I] → out [T, H].
//   Launch: grid (T), block (128): one warp per output column.
#include "common.cuh"

#define KILN_MOE_MAX_EXPERTS 256
#define KILN_MOE_MAX_TOPK 32

// How expert weights are stored: f32, or a 16-bit format F widened as it is read.
struct kiln_moe_f32_weights {
  typedef float T;
  __device__ static __forceinline__ float at(const float* w, long long i) { return w[i]; }
};
template <class F>
struct kiln_moe_half_weights {
  typedef unsigned short T;
  __device__ static __forceinline__ float at(const unsigned short* w, long long i) { return F::widen(w[i]); }
};

// dot(a, b) over n elements by the 32 lanes of a warp; every lane gets the sum
__device__ __forceinline__ float kiln_moe_warp_dot(const float* a, const float* b, int n, int lane) {
  float s = 0.0f;
  for (int i = lane; i < n; i += KILN_WARP) s += a[i] * b[i];
  return kiln_warp_sum(s);
}

// dot(x, w) with w stored as W says; the same order of products and sums as kiln_moe_warp_dot
template <class W>
__device__ __forceinline__ float kiln_moe_warp_dot_w(const float* x, const typename W::T* w, int n, int lane) {
  float s = 0.0f;
  for (int i = lane; i < n; i += KILN_WARP) s += x[i] * W::at(w, i);
  return kiln_warp_sum(s);
}

extern "C" __global__ void kiln_moe_route(int* experts, float* weights, const float* x, const float* router, int T,
                                          int H, int E, int K, int renorm) {
  __shared__ float prob[KILN_MOE_MAX_EXPERTS];
  const int t = blockIdx.x;
  if (t >= T) return;
  const int lane = threadIdx.x % KILN_WARP;
  const int warp = threadIdx.x / KILN_WARP;
  const int warps = blockDim.x / KILN_WARP;
  const float* xt = x + (long long)t * H;
  for (int e = warp; e < E; e += warps) {
    const float logit = kiln_moe_warp_dot(xt, router + (long long)e * H, H, lane);
    if (lane == 0) prob[e] = logit;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  float max = -kiln_inf();
  for (int e = 0; e < E; e++) max = fmaxf(max, prob[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; e++) {
    prob[e] = expf(prob[e] - max);
    sum += prob[e];
  }
  for (int e = 0; e < E; e++) prob[e] /= sum;
  // selection by repeated maxima; a chosen expert's probability becomes -1 (probabilities are >= 0)
  float picked[KILN_MOE_MAX_TOPK];
  float total = 0.0f;
  for (int k = 0; k < K; k++) {
    int best = 0;
    for (int e = 1; e < E; e++)
      if (prob[e] > prob[best]) best = e;
    picked[k] = prob[best];
    total += prob[best];
    experts[t * K + k] = best;
    prob[best] = -1.0f;
  }
  for (int k = 0; k < K; k++) weights[t * K + k] = renorm ? picked[k] / total : picked[k];
}

template <class W>
__device__ __forceinline__ void kiln_moe_act_impl(float* h, const float* x, const typename W::T* w13, const int* experts, int T,
                                                  int H, int I, int K) {
  const int pair = blockIdx.x;  // t · K + k
  if (pair >= T * K) return;
  const int lane = threadIdx.x % KILN_WARP;
  const int warp = threadIdx.x / KILN_WARP;
  const int warps = blockDim.x / KILN_WARP;
  const float* xt = x + (long long)(pair / K) * H;
  const typename W::T* w = w13 + (long long)experts[pair] * 2 * I * H;
  for (int r = warp; r < I; r += warps) {
    const float gate = kiln_moe_warp_dot_w<W>(xt, w + (long long)r * H, H, lane);
    const float up = kiln_moe_warp_dot_w<W>(xt, w + (long long)(I + r) * H, H, lane);
    if (lane == 0) h[(long long)pair * I + r] = gate / (1.0f + expf(-gate)) * up;
  }
}

template <class W>
__device__ __forceinline__ void kiln_moe_down_impl(float* out, const float* h, const typename W::T* w2, const int* experts,
                                                   const float* weights, int T, int H, int I, int K) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const int lane = threadIdx.x % KILN_WARP;
  const int warp = threadIdx.x / KILN_WARP;
  const int warps = blockDim.x / KILN_WARP;
  for (int j = warp; j < H; j += warps) {
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
      const int pair = t * K + k;
      const typename W::T* w = w2 + ((long long)experts[pair] * H + j) * I;
      acc += weights[pair] * kiln_moe_warp_dot_w<W>(h + (long long)pair * I, w, I, lane);
    }
    if (lane == 0) out[(long long)t * H + j] = acc;
  }
}

extern "C" __global__ void kiln_moe_act(float* h, const float* x, const float* w13, const int* experts, int T, int H, int I, int K) {
  kiln_moe_act_impl<kiln_moe_f32_weights>(h, x, w13, experts, T, H, I, K);
}
extern "C" __global__ void kiln_moe_act_bf16(float* h, const float* x, const unsigned short* w13, const int* experts, int T, int H,
                                             int I, int K) {
  kiln_moe_act_impl<kiln_moe_half_weights<kiln_bf16_format> >(h, x, w13, experts, T, H, I, K);
}
extern "C" __global__ void kiln_moe_act_f16(float* h, const float* x, const unsigned short* w13, const int* experts, int T, int H,
                                            int I, int K) {
  kiln_moe_act_impl<kiln_moe_half_weights<kiln_f16_format> >(h, x, w13, experts, T, H, I, K);
}

extern "C" __global__ void kiln_moe_down(float* out, const float* h, const float* w2, const int* experts, const float* weights,
                                         int T, int H, int I, int K) {
  kiln_moe_down_impl<kiln_moe_f32_weights>(out, h, w2, experts, weights, T, H, I, K);
}
extern "C" __global__ void kiln_moe_down_bf16(float* out, const float* h, const unsigned short* w2, const int* experts,
                                              const float* weights, int T, int H, int I, int K) {
  kiln_moe_down_impl<kiln_moe_half_weights<kiln_bf16_format> >(out, h, w2, experts, weights, T, H, I, K);
}
extern "C" __global__ void kiln_moe_down_f16(float* out, const float* h, const unsigned short* w2, const int* experts,
                                             const float* weights, int T, int H, int I, int K) {
  kiln_moe_down_impl<kiln_moe_half_weights<kiln_f16_format> >(out, h, w2, experts, weights, T, H, I, K);
}
