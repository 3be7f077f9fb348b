// The emulator's thread model: a block's threads run as fibers on the calling OS thread,
// switched only at barriers and warp shuffles, so every kernel runs deterministically. Blocks
// run one after another.
#pragma once

#include <functional>
#include <string>

namespace kiln_emu {

struct Dim3 {
  unsigned int x, y, z;
};

// The running thread's built-in variables (valid inside a kernel body).
extern Dim3 g_threadIdx, g_blockIdx, g_blockDim, g_gridDim;
// The launch's dynamic shared memory (a kernel's `extern __shared__` array), shared by its blocks.
extern void* g_dynamicShared;

void syncthreads();
void syncwarp();
// Every lane of the calling warp deposits `value` (size ≤ 8 bytes) and receives lane
// (xorMode ? lane ^ arg : arg)'s deposit in `result`.
void exchange(const void* value, void* result, int size, int arg, bool xorMode);

// Runs body once per thread of the grid; returns false (and fills `error`) on a deadlock, i.e.
// when threads of a block wait at a barrier that no other live thread will reach.
bool runGrid(const Dim3& grid, const Dim3& block, const std::function<void()>& body, std::string& error);

}  // namespace kiln_emu
