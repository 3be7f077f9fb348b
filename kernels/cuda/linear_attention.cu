// Lightning (linear) attention of MiniMax with per-head exponential decay, continuing from each
// sequence's KV state, which it updates in place. f32.
//
// kiln_linear_attention: for sequence s (rows [qsl[s], qsl[s+1])) and head h, with
//   KV = states[slots[s], h] [D, D] (rows by key dim) and decay = decays[h] (= exp(−slope_h)):
//     per token t in order:  KV = decay · KV + k_tᵀ v_t;  out[t, h] = q_t · KV
//   qkv [T, heads · 3D] (per head [q | k | v]); out [T, heads · D]; states [slots, heads, D, D].
//   Launch: grid (S, heads), block (ceil(D / 32) · 32): thread j keeps column j of KV. Needs D <= 256.
#include "common.cuh"

#define KILN_LINEAR_ATTENTION_MAX_D 256

extern "C" __global__ void kiln_linear_attention(float* out, const float* qkv, float* states, const float* decays,
                                                 const int* query_start_loc, const int* slots, int S, int heads, int D) {
  __shared__ float q[KILN_LINEAR_ATTENTION_MAX_D];
  __shared__ float k[KILN_LINEAR_ATTENTION_MAX_D];
  const int s = blockIdx.x;
  const int h = blockIdx.y;
  const int j = threadIdx.x;
  if (s >= S || h >= heads) return;
  const bool mine = j < D;
  float* kv = states + ((long long)slots[s] * heads + h) * D * D;
  float col[KILN_LINEAR_ATTENTION_MAX_D];  // column j of KV
  if (mine)
    for (int i = 0; i < D; i++) col[i] = kv[(long long)i * D + j];
  const float decay = decays[h];
  for (int t = query_start_loc[s]; t < query_start_loc[s + 1]; t++) {
    const float* row = qkv + (long long)t * heads * 3 * D + (long long)h * 3 * D;
    __syncthreads();  // the previous token's q and k are read by every thread
    if (mine) {
      q[j] = row[j];
      k[j] = row[D + j];
    }
    __syncthreads();
    if (mine) {
      const float v = row[2 * D + j];
      float o = 0.0f;
      for (int i = 0; i < D; i++) {
        col[i] = decay * col[i] + k[i] * v;
        o += q[i] * col[i];
      }
      out[(long long)t * heads * D + (long long)h * D + j] = o;
    }
  }
  if (mine)
    for (int i = 0; i < D; i++) kv[(long long)i * D + j] = col[i];
}
