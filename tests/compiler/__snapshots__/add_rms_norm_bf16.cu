/*
 * add_rms_norm_bf16: add + rms_norm, one block per row of [T]
 *   rows  number of rows this step
 *   x0    in  f32  [T, 64]  activation
 *   x1    in  f32  [T, 64]  activation
 *   y0    out f32  [T, 64]  add result
 *   w0    in  f32  [64]  weight
 *   y1    out f32  [T, 64]  rms_norm result
 * launch: grid (T, 1, 1), block (32, 1, 1), dynamic shared memory 260 bytes
 */
extern "C" __global__ void __launch_bounds__(32) add_rms_norm_bf16(const long long rows, const float* __restrict__ x0, const float* __restrict__ x1, float* __restrict__ y0, const float* __restrict__ w0, float* __restrict__ y1) {
  const long long r = blockIdx.x;
  if (r >= rows) return;
  extern __shared__ float kiln_smem[];
  float* const loc0 = kiln_smem + 0; /* [64] */
  float* const inv0 = kiln_smem + 64; /* [1] */
  {
    float acc = 0.0f;
    for (long long c0 = (long long)threadIdx.x * 4; c0 < 64; c0 += (long long)blockDim.x * 4) {
      float ld0[4];
      kiln_load4(ld0, x0 + (r * 64 + c0));
      float ld1[4];
      kiln_load4(ld1, x1 + (r * 64 + c0));
      float st0[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const long long c = c0 + u;
        const float t0 = ld0[u] + ld1[u];
        loc0[c] = t0;
        st0[u] = t0;
        const float v = t0;
        acc += v * v;
      }
      kiln_store4(y0 + (r * 64 + c0), st0);
    }
    acc = kiln_block_sum(acc);
    if (threadIdx.x == 0) inv0[0] = 1.0f / sqrtf(acc / 64.0f + 0.00001f);
  }
  __syncthreads();
  for (long long c0 = (long long)threadIdx.x * 4; c0 < 64; c0 += (long long)blockDim.x * 4) {
    float ld0[4];
    kiln_load4(ld0, w0 + c0);
    float st0[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const long long c = c0 + u;
      const float t1 = loc0[c] * inv0[0] * ld0[u];
      st0[u] = t1;
    }
    kiln_store4(y1 + (r * 64 + c0), st0);
  }
}
