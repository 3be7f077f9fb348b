/*
 * silu_mul_bf16: silu + mul, one block per row of [T]
 *   rows  number of rows this step
 *   x0    in  f32  [T, 256]  activation
 *   y0    out f32  [T, 128]  mul result
 * launch: grid (T, 1, 1), block (32, 1, 1), dynamic shared memory 0 bytes
 */
extern "C" __global__ void __launch_bounds__(32) silu_mul_bf16(const long long rows, const float* __restrict__ x0, float* __restrict__ y0) {
  const long long r = blockIdx.x;
  if (r >= rows) return;
  for (long long c0 = (long long)threadIdx.x * 4; c0 < 128; c0 += (long long)blockDim.x * 4) {
    float ld0[4];
    kiln_load4(ld0, x0 + (r * 256 + c0));
    float ld1[4];
    kiln_load4(ld1, x0 + (r * 256 + c0 + 128));
    float st0[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float t0 = kiln_silu(ld0[u]);
      const float t1 = t0 * ld1[u];
      st0[u] = t1;
    }
    kiln_store4(y0 + (r * 128 + c0), st0);
  }
}
