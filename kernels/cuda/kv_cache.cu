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

// The same write into 16-bit caches (bit patterns of format F), each element rounded to nearest even.
template <class F>
__device__ __forceinline__ void kiln_write_kv_half(unsigned short* kCache, unsigned short* vCache, const float* k,
                                                   const float* v, const int* slotMapping, int T, int rowWidth) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const long long dst = (long long)slotMapping[t] * rowWidth;
  const long long src = (long long)t * rowWidth;
  for (int j = threadIdx.x; j < rowWidth; j += blockDim.x) {
    kCache[dst + j] = F::round(k[src + j]);
    vCache[dst + j] = F::round(v[src + j]);
  }
}

extern "C" __global__ void kiln_write_kv_bf16(unsigned short* kCache, unsigned short* vCache, const float* k,
                                              const float* v, const int* slotMapping, int T, int rowWidth) {
  kiln_write_kv_half<kiln_bf16_format>(kCache, vCache, k, v, slotMapping, T, rowWidth);
}

extern "C" __global__ void kiln_write_kv_f16(unsigned short* kCache, unsigned short* vCache, const float* k,
                                             const float* v, const int* slotMapping, int T, int rowWidth) {
  kiln_write_kv_half<kiln_f16_format>(kCache, vCache, k, v, slotMapping, T, rowWidth);
}
