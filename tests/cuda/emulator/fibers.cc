// Fibers for the GPU emulator: each thread of a block gets a small stack; a hand-written x86-64
// context switch (callee-saved registers + stack pointer) moves between a fiber and the
// scheduler, which resumes live fibers round-robin until all have finished.
#include "fibers.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" void kiln_emu_switch(void** saveSp, void* loadSp);

asm(R"(
  .text
  .p2align 4
  .globl kiln_emu_switch
  .hidden kiln_emu_switch
  .type kiln_emu_switch,@function
kiln_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kiln_emu_switch, .-kiln_emu_switch
)");

namespace kiln_emu {

Dim3 g_threadIdx, g_blockIdx, g_blockDim, g_gridDim;
void* g_dynamicShared = nullptr;

namespace {

constexpr size_t kStackBytes = 128 * 1024;
constexpr int kMaxThreads = 1024;

struct Barrier {
  int expected = 0;
  int count = 0;
  unsigned int generation = 0;
};

struct Fiber {
  void* sp = nullptr;
  bool done = false;
  Dim3 idx{0, 0, 0};
  int linear = 0;
};

std::vector<Fiber> fibers;
std::vector<char*> stacks;
void* schedulerSp = nullptr;
int current = 0;
Barrier blockBarrier;
std::vector<Barrier> warpBarriers;
std::vector<uint64_t> lanes;  // each thread's shuffle deposit
unsigned long long progress = 0;
const std::function<void()>* body = nullptr;

void yieldToScheduler() { kiln_emu_switch(&fibers[current].sp, schedulerSp); }

void arrive(Barrier& b) {
  const unsigned int gen = b.generation;
  ++progress;
  if (++b.count == b.expected) {
    b.count = 0;
    ++b.generation;
    return;
  }
  while (b.generation == gen) yieldToScheduler();
}

void leave(Barrier& b) {
  --b.expected;
  if (b.expected > 0 && b.count == b.expected) {
    b.count = 0;
    ++b.generation;
  }
}

[[noreturn]] void trampoline() {
  Fiber& f = fibers[current];
  (*body)();
  f.done = true;
  ++progress;
  leave(blockBarrier);
  leave(warpBarriers[f.linear / 32]);
  kiln_emu_switch(&f.sp, schedulerSp);
  std::abort();  // a finished fiber is never resumed
}

void prepare(Fiber& f, char* stack) {
  // Stack top, 16-byte aligned: [top-8] padding, [top-16] the trampoline as the return address
  // of the first switch, below it six zeroed callee-saved registers.
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + kStackBytes) & ~uintptr_t{15};
  auto* slots = reinterpret_cast<uintptr_t*>(top);
  slots[-1] = 0;
  slots[-2] = reinterpret_cast<uintptr_t>(&trampoline);
  for (int i = 3; i <= 8; ++i) slots[-i] = 0;
  f.sp = reinterpret_cast<void*>(top - 8 * 8);
}

bool runBlock(int n, std::string& error) {
  while (static_cast<int>(stacks.size()) < n) stacks.push_back(static_cast<char*>(std::malloc(kStackBytes)));
  fibers.assign(n, Fiber{});
  const Dim3 b = g_blockDim;
  for (int i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    f.linear = i;
    f.idx = Dim3{static_cast<unsigned>(i) % b.x, (static_cast<unsigned>(i) / b.x) % b.y,
                 static_cast<unsigned>(i) / (b.x * b.y)};
    prepare(f, stacks[i]);
  }
  blockBarrier = Barrier{n, 0, 0};
  const int warps = (n + 31) / 32;
  warpBarriers.assign(warps, Barrier{});
  for (int w = 0; w < warps; ++w) warpBarriers[w].expected = n - 32 * w < 32 ? n - 32 * w : 32;
  lanes.assign(n, 0);
  for (;;) {
    bool allDone = true;
    const unsigned long long before = progress;
    for (int i = 0; i < n; ++i) {
      if (fibers[i].done) continue;
      allDone = false;
      current = i;
      g_threadIdx = fibers[i].idx;
      kiln_emu_switch(&schedulerSp, fibers[i].sp);
    }
    if (allDone) return true;
    if (progress == before) {
      error = "deadlock: threads of block (" + std::to_string(g_blockIdx.x) + ", " + std::to_string(g_blockIdx.y) +
              ", " + std::to_string(g_blockIdx.z) + ") wait at a barrier no live thread will reach";
      return false;
    }
  }
}

}  // namespace

void syncthreads() { arrive(blockBarrier); }

void syncwarp() { arrive(warpBarriers[fibers[current].linear / 32]); }

void exchange(const void* value, void* result, int size, int arg, bool xorMode) {
  const int me = fibers[current].linear;
  const int warpBase = me & ~31;
  uint64_t deposit = 0;
  std::memcpy(&deposit, value, size);
  lanes[me] = deposit;
  Barrier& wb = warpBarriers[me / 32];
  arrive(wb);
  const int src = warpBase + ((xorMode ? ((me & 31) ^ arg) : arg) & 31);
  const uint64_t got = src < static_cast<int>(lanes.size()) ? lanes[src] : deposit;
  arrive(wb);  // nobody overwrites a deposit before every lane has read
  std::memcpy(result, &got, size);
}

bool runGrid(const Dim3& grid, const Dim3& block, const std::function<void()>& fn, std::string& error) {
  const long long n = static_cast<long long>(block.x) * block.y * block.z;
  if (n < 1 || n > kMaxThreads) {
    error = "block of " + std::to_string(n) + " threads";
    return false;
  }
  body = &fn;
  g_gridDim = grid;
  g_blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_blockIdx = Dim3{x, y, z};
        if (!runBlock(static_cast<int>(n), error)) return false;
      }
  return true;
}

}  // namespace kiln_emu
