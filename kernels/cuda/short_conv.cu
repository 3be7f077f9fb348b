// The causal depthwise convolution of gated short-conv layers (LFM2), continuing from each
// sequence's conv state (its last L − 1 inputs), which it updates in place. f32.
//
// kiln_short_conv: for sequence s (rows [qsl[s], qsl[s+1]) of the step) with state
//   states[slots[s]] [L − 1, D]:
//     in = [state; x rows of s];  out[t, c] = bias[c] + Σ_j w[c, j] · in[t + j, c]
//     state ← the last L − 1 rows of in
//   x, out [T, D]; w [D, L] (PyTorch's Conv1d [D, 1, L]); bias [D], read only when hasBias != 0
//   (pass any device pointer otherwise); states [slots, L − 1, D].
//   Launch: grid (S, ceil(D / 128)), block (128): one thread per (sequence, channel), tokens in
//   order. Needs L <= 16.
#include "common.cuh"

#define KILN_SHORT_CONV_MAX_L 16

extern "C" __global__ void kiln_short_conv(float* out, const float* x, const float* w, const float* bias, int hasBias,
                                           float* states, const int* query_start_loc, const int* slots, int S, int D,
                                           int L) {
  const int s = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (s >= S || c >= D) return;
  const int keep = L - 1;
  float* state = states + (long long)slots[s] * keep * D;
  float window[KILN_SHORT_CONV_MAX_L];  // the last L − 1 inputs of channel c, oldest first
  for (int i = 0; i < keep; i++) window[i] = state[(long long)i * D + c];
  float taps[KILN_SHORT_CONV_MAX_L];
  for (int j = 0; j < L; j++) taps[j] = w[(long long)c * L + j];
  const float b = hasBias ? bias[c] : 0.0f;
  for (int t = query_start_loc[s]; t < query_start_loc[s + 1]; t++) {
    window[keep] = x[(long long)t * D + c];
    float acc = b;
    for (int j = 0; j < L; j++) acc += taps[j] * window[j];
    out[(long long)t * D + c] = acc;
    for (int i = 0; i < keep; i++) window[i] = window[i + 1];
  }
  for (int i = 0; i < keep; i++) state[(long long)i * D + c] = window[i];
}
