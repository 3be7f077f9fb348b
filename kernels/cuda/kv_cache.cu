// KV-cache write through the slot mapping: rows of the step's k, v [T, rowWidth]
// (rowWidth = numKvHeads · headDim) go to caches [numSlots, rowWidth] at slot slotMapping[t]
// (= block · blockSize + offset). Slots were checked on the host to lie in [0, numSlots).
// Launch: grid (T), block (128).
#include "common.cuh"

extern "C" __global__ void kiln_write_kv(float* kCache, float* vCache, const float* k, const float* v,
                                         const int* slotMapping, int T, int rowWidth) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const long long dst = (long long)slotMapping[t] * rowWidth;
  const long long src = (long long)t * rowWidth;
  for (int j = threadIdx.x; j < rowWidth; j += blockDim.x) {
    kCache[dst + j] = k[src + j];
    vCache[dst + j] = v[src + j];
  }
}

// The same write into bf16 caches (bit patterns), each element rounded to nearest even.
extern "C" __global__ void kiln_write_kv_bf16(unsigned short* kCache, unsigned short* vCache, const float* k,
                                              const float* v, const int* slotMapping, int T, int rowWidth) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const long long dst = (long long)slotMapping[t] * rowWidth;
  const long long src = (long long)t * rowWidth;
  for (int j = threadIdx.x; j < rowWidth; j += blockDim.x) {
    kCache[dst + j] = kiln_round_bf16(k[src + j]);
    vCache[dst + j] = kiln_round_bf16(v[src + j]);
  }
}
