// Rotary position embedding, out of place (out may equal x): out = rope(x) for x, out
// [T, numHeads · headDim]. For token t and pair i < rotaryDim/2 the angle is
// f32(positions[t] · invFreq[i]) — the product rounded to f32 as HF's `inv_freq @ position_ids`
// does — and cos/sin are taken in double, then rounded, as the CPU kernel does.
//   neox (1): pairs (i, i + rotaryDim/2), HF rotate_half;  neox (0): pairs (2i, 2i + 1), GPT-J.
//   (a, b) → (a cos − b sin, b cos + a sin); elements past rotaryDim are copied.
// Launch: grid (T), block (128); the threads of token t stride over its numHeads · rotaryDim/2 pairs.
#include "common.cuh"

extern "C" __global__ void kiln_rope(float* out, const float* x, const int* positions, const float* invFreq, int T,
                                     int numHeads, int headDim, int rotaryDim, int neox) {
  const int t = blockIdx.x;
  if (t >= T) return;
  const int half = rotaryDim / 2;
  const long long row = (long long)t * numHeads * headDim;
  const float pos = (float)positions[t];
  // rotated pairs
  for (int p = threadIdx.x; p < numHeads * half; p += blockDim.x) {
    const int h = p / half;
    const int i = p - h * half;
    const float angle = __fmul_rn(pos, invFreq[i]);
    const float c = (float)cos((double)angle);
    const float s = (float)sin((double)angle);
    const long long ia = row + (long long)h * headDim + (neox ? i : 2 * i);
    const long long ib = ia + (neox ? half : 1);
    const float a = x[ia];
    const float b = x[ib];
    out[ia] = a * c - b * s;
    out[ib] = b * c + a * s;
  }
  // pass-through tail of each head (partial rotary)
  const int tail = headDim - rotaryDim;
  if (tail > 0) {
    for (int p = threadIdx.x; p < numHeads * tail; p += blockDim.x) {
      const int h = p / tail;
      const long long at = row + (long long)h * headDim + rotaryDim + (p - h * tail);
      out[at] = x[at];
    }
  }
}
