// Embedding gather.
//
// kiln_embedding_f32 / _bf16 / _f16: out[t, :] = table[ids[t], :]
//   out [T, H] f32; table [V, H] f32, or bf16 / f16 bit patterns (widened exactly); ids [T] i32,
//   already checked to lie in [0, V) on the host. Launch: grid (T), block (256); threads stride
//   over H.
#include "common.cuh"

extern "C" __global__ void kiln_embedding_f32(float* out, const float* table, const int* ids, int T, int H) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const float* row = table + (long long)ids[t] * H;
  float* dst = out + (long long)t * H;
  for (int j = threadIdx.x; j < H; j += blockDim.x) dst[j] = row[j];
}

extern "C" __global__ void kiln_embedding_bf16(float* out, const unsigned short* table, const int* ids, int T, int H) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const unsigned short* row = table + (long long)ids[t] * H;
  float* dst = out + (long long)t * H;
  for (int j = threadIdx.x; j < H; j += blockDim.x) dst[j] = kiln_widen_bf16(row[j]);
}

extern "C" __global__ void kiln_embedding_f16(float* out, const unsigned short* table, const int* ids, int T, int H) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const unsigned short* row = table + (long long)ids[t] * H;
  float* dst = out + (long long)t * H;
  for (int j = threadIdx.x; j < H; j += blockDim.x) dst[j] = kiln_widen_f16(row[j]);
}
