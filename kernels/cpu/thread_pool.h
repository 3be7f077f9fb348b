// A small fork-join pool in which the calling thread does the work too and never waits for a
// helper that has not started. Why not OpenMP: an OpenMP team ends in a barrier that waits for
// every thread, so when another process holds a core (a compiler, a test worker) and a team thread
// is descheduled, each parallel kernel stalls for a scheduler time slice. Measured here with
// libgomp and one busy process on the 2 cores: a 12 us GEMV took 12 ms. With this pool the caller
// claims chunks from a shared counter like the helpers do, so it only ever waits for chunks a
// helper is already running; under load a kernel degrades to about single-thread speed instead.
#pragma once

#include <cstddef>
#include <type_traits>

namespace kiln {

using ChunkFn = void (*)(void* ctx, size_t begin, size_t end);

// Splits [0, n) into chunks of at least `grain` items (a few per thread) and runs fn on each,
// on the caller and the pool's helpers; returns once all are done. Runs inline when n <= grain,
// when there is one thread, or when the pool is already busy (a nested or concurrent call).
void parallelForRaw(size_t n, size_t grain, ChunkFn fn, void* ctx);

// body(begin, end) for chunks of [0, n); see parallelForRaw.
template <typename F>
void parallelFor(size_t n, size_t grain, F&& body) {
  using Body = std::remove_reference_t<F>;
  parallelForRaw(
      n, grain, [](void* c, size_t b, size_t e) { (*static_cast<Body*>(c))(b, e); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Threads used, caller included: KILN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this
// process may run on.
int numThreads();

}  // namespace kiln
