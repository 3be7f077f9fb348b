// Support for timing a step kernel by kernel (runtime/cuda/step_profile.ts).
//
// kiln_spin: keeps the stream busy for about `nanoseconds` of device time, so that the launches
//   queued behind it are all waiting when it ends and then run back to back, without the gaps
//   the host's launch rate would leave between them. Reads the global nanosecond timer through
//   PTX; a host build (the emulator, which runs work as it is queued) returns at once.
//   Launch: grid (1), block (1).
#include "common.cuh"

extern "C" __global__ void kiln_spin(long long nanoseconds) {
#if defined(__CUDA_ARCH__)
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while ((long long)(now - start) < nanoseconds);
#else
  (void)nanoseconds;
#endif
}
