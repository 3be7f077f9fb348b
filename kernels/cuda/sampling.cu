// Greedy sampling on the device: out[s] = argmax_j logits[s, j], the first index on ties and
// NaN never chosen (as runtime/sampler.ts's argmax); a row with no number above -inf gives 0.
// Launch: grid (S), block (256).
#include "common.cuh"

extern "C" __global__ void kiln_argmax_rows(int* out, const float* logits, int S, int V) {
  const int s = blockIdx.x;
  if (s >= S) return;
  const float* row = logits + (long long)s * V;
  float best = -kiln_inf();
  int bestAt = V;  // "none yet": larger than every index
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    if (row[j] > best) {  // strictly greater: a thread keeps its first maximum
      best = row[j];
      bestAt = j;
    }
  }
  // warp: larger value wins, equal values go to the smaller index
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(KILN_FULL_MASK, best, o);
    const int oi = __shfl_xor_sync(KILN_FULL_MASK, bestAt, o);
    if (ov > best || (ov == best && oi < bestAt)) {
      best = ov;
      bestAt = oi;
    }
  }
  __shared__ float warpBest[32];
  __shared__ int warpAt[32];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  if (lane == 0) {
    warpBest[warp] = best;
    warpAt[warp] = bestAt;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    for (int w = 1; w < warps; w++) {
      if (warpBest[w] > best || (warpBest[w] == best && warpAt[w] < bestAt)) {
        best = warpBest[w];
        bestAt = warpAt[w];
      }
    }
    out[s] = bestAt < V ? bestAt : 0;
  }
}
