// The state-space scans of Mamba-1 (selective scan) and Mamba-2 (SSD), continuing from each
// sequence's SSM state, which they update in place: the plain recurrence, token by token, in f32.
// softplus is PyTorch's (threshold 20: x itself above it); A = −exp(A_log) is taken here.
//
// kiln_selective_scan: for sequence s (rows [qsl[s], qsl[s+1])) with state h = states[slots[s]]
//   [I, N], per channel i and token t in order, Δ = softplus(delta[t, i]), A = −exp(aLog[i, n]):
//     h[i, n] ← exp(Δ · A) · h[i, n] + Δ · B[t, n] · u[t, i]
//     out[t, i] = (Σ_n h[i, n] · C[t, n] + Dskip[i] · u[t, i]) · silu(z[t, i])
//   u, delta, z, out [T, I]; aLog [I, N]; B, C [T, N]; Dskip [I]; states [slots, I, N].
//   Launch: grid (S, ceil(I / 128)), block (128): one thread per (sequence, channel) keeps its N
//   states; each token's B and C rows are staged in shared memory. Needs N <= 256.
//
// kiln_ssd_scan: H heads of P channels, B and C in G groups (head h reads group g = h / (H / G)).
//   For sequence s with state h = states[slots[s]] [H, P, N], per head h, channel p and token t
//   in order, Δ = clamp(softplus(dt[t, h] + dtBias[h]), dtMin, dtMax), A = −exp(aLog[h]):
//     h[h, p, n] ← exp(Δ · A) · h[h, p, n] + Δ · x[t, h, p] · B[t, g, n]
//     out[t, h, p] = Σ_n h[h, p, n] · C[t, g, n] + Dskip[h] · x[t, h, p]
//   x, out [T, H · P]; dt [T, H]; dtBias, aLog, Dskip [H]; B, C [T, G · N]; states [slots, H, P, N].
//   No upper limit: pass dtMax = 3.4e38f.
//   Launch: grid (S, H, ceil(P / KILN_SSD_WARPS)), block (32 · KILN_SSD_WARPS): one warp per
//   (sequence, head, channel), each lane keeping N / 32 of its states in registers and reading
//   its part of the token's B and C rows; Σ_n is a warp sum. Needs N <= 256.
#include "common.cuh"

#define KILN_MAMBA_SCAN_MAX_N 256
#define KILN_SSD_WARPS 4
#define KILN_SSD_STATE_PER_LANE (KILN_MAMBA_SCAN_MAX_N / 32)

// PyTorch's softplus (beta 1, threshold 20)
__device__ __forceinline__ float kiln_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// The selective scan with states h[0, NMAX): NMAX = 16 (Mamba-1's usual state size) keeps them in
// registers, unrolled; the general NMAX = 256 in local memory.
template <int NMAX>
__device__ __forceinline__ void kiln_selective_scan_n(float* out, const float* u, const float* delta, const float* aLog,
                                                      const float* B, const float* C, const float* Dskip, const float* z,
                                                      float* states, const int* query_start_loc, const int* slots, int S,
                                                      int I, int N) {
  __shared__ float b[KILN_MAMBA_SCAN_MAX_N];
  __shared__ float c[KILN_MAMBA_SCAN_MAX_N];
  const int s = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (s >= S) return;
  const bool mine = i < I;  // every thread stages B and C, so none returns early
  float* state = states + ((long long)slots[s] * I + i) * N;
  float h[NMAX];  // h[i, ·]
  float a[NMAX];  // A[i, ·] = −exp(A_log[i, ·])
  // unrolled (registers) for the small size only; the general one stays a loop over local memory
  constexpr int UNROLL = NMAX <= 16 ? NMAX : 1;
#pragma unroll UNROLL
  for (int n = 0; n < NMAX; n++) {
    h[n] = mine && n < N ? state[n] : 0.0f;
    a[n] = mine && n < N ? -expf(aLog[(long long)i * N + n]) : 0.0f;
  }
  const float d = mine ? Dskip[i] : 0.0f;
  for (int t = query_start_loc[s]; t < query_start_loc[s + 1]; t++) {
    __syncthreads();  // the previous token's B and C are read by every thread
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
      b[n] = B[(long long)t * N + n];
      c[n] = C[(long long)t * N + n];
    }
    __syncthreads();
    if (mine) {
      const long long at = (long long)t * I + i;
      const float dt = kiln_softplus(delta[at]);
      const float ui = u[at];
      const float dtu = dt * ui;
      float y = 0.0f;
#pragma unroll UNROLL
      for (int n = 0; n < NMAX; n++) {
        if (n < N) {
          h[n] = expf(dt * a[n]) * h[n] + dtu * b[n];
          y += h[n] * c[n];
        }
      }
      const float gate = z[at];
      out[at] = (y + d * ui) * (gate / (1.0f + expf(-gate)));
    }
  }
  if (mine) {
#pragma unroll UNROLL
    for (int n = 0; n < NMAX; n++) {
      if (n < N) state[n] = h[n];
    }
  }
}

extern "C" __global__ void kiln_selective_scan(float* out, const float* u, const float* delta, const float* aLog,
                                               const float* B, const float* C, const float* Dskip, const float* z,
                                               float* states, const int* query_start_loc, const int* slots, int S,
                                               int I, int N) {
  if (N <= 16) {
    kiln_selective_scan_n<16>(out, u, delta, aLog, B, C, Dskip, z, states, query_start_loc, slots, S, I, N);
  } else {
    kiln_selective_scan_n<KILN_MAMBA_SCAN_MAX_N>(out, u, delta, aLog, B, C, Dskip, z, states, query_start_loc, slots, S, I, N);
  }
}

extern "C" __global__ void kiln_ssd_scan(float* out, const float* x, const float* dt, const float* dtBias,
                                         const float* aLog, const float* B, const float* C, const float* Dskip,
                                         float* states, const int* query_start_loc, const int* slots, int S, int H,
                                         int P, int G, int N, float dtMin, float dtMax) {
  const int s = blockIdx.x;
  const int hd = blockIdx.y;
  const int lane = threadIdx.x & 31;
  const int p = blockIdx.z * KILN_SSD_WARPS + (threadIdx.x >> 5);  // warp-uniform
  if (s >= S || hd >= H || p >= P) return;                         // whole warps leave
  const int g = hd / (H / G);
  float* state = states + (((long long)slots[s] * H + hd) * P + p) * N;
  float h[KILN_SSD_STATE_PER_LANE];  // h[hd, p, lane + 32 k]
#pragma unroll
  for (int k = 0; k < KILN_SSD_STATE_PER_LANE; k++) {
    const int n = lane + 32 * k;
    h[k] = n < N ? state[n] : 0.0f;
  }
  const float A = -expf(aLog[hd]);
  const float bias = dtBias[hd];
  const float d = Dskip[hd];
  for (int t = query_start_loc[s]; t < query_start_loc[s + 1]; t++) {
    const float step = fminf(fmaxf(kiln_softplus(dt[(long long)t * H + hd] + bias), dtMin), dtMax);
    const float decay = expf(step * A);
    const long long at = ((long long)t * H + hd) * P + p;
    const float xi = x[at];
    const float dtx = step * xi;
    const long long bc = ((long long)t * G + g) * N;
    float y = 0.0f;
#pragma unroll
    for (int k = 0; k < KILN_SSD_STATE_PER_LANE; k++) {
      const int n = lane + 32 * k;
      if (n < N) {
        h[k] = decay * h[k] + dtx * B[bc + n];
        y += h[k] * C[bc + n];
      }
    }
    y = kiln_warp_sum(y);
    if (lane == 0) out[at] = y + d * xi;
  }
#pragma unroll
  for (int k = 0; k < KILN_SSD_STATE_PER_LANE; k++) {
    const int n = lane + 32 * k;
    if (n < N) state[n] = h[k];
  }
}
