// KV cache write: token t's k and v rows [numKvHeads * headDim] go to slot slotMapping[t] of the
// caches [numSlots, numKvHeads, headDim], where slot = block * blockSize + offset in the block.
#include <cstring>

#include "kernels.h"

namespace kiln {

void writeKv(float* kCache, float* vCache, const float* k, const float* v, const int32_t* slotMapping,
             size_t tokens, size_t rowWidth) {
  const size_t bytes = rowWidth * sizeof(float);
  for (size_t t = 0; t < tokens; ++t) {
    const size_t slot = static_cast<size_t>(slotMapping[t]);
    std::memcpy(kCache + slot * rowWidth, k + t * rowWidth, bytes);
    std::memcpy(vCache + slot * rowWidth, v + t * rowWidth, bytes);
  }
}

}  // namespace kiln
