// The fork-join pool of thread_pool.h.
//
// One job at a time. The job's chunk count and next unclaimed chunk share one atomic ticket
// [count:24 | next:24], and a chunk is claimed by a CAS of the ticket from the value read to
// next + 1. The CAS succeeds only while the ticket still holds that value, that is while that
// chunk of the job now published is unclaimed, so a helper that read an older job's ticket either
// fails or claims a real chunk of the current job. The job's function and bounds are written
// before the ticket is published (release) and read only after a successful claim (acquire); the
// caller does not return, and so does not overwrite them, until every claimed chunk has finished.
//
// Helpers spin on the ticket for kSpin after their last chunk (kernel calls of one forward pass
// follow each other within microseconds), then sleep on a condition variable.
#include "thread_pool.h"

#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kiln {
namespace {

constexpr auto kSpin = std::chrono::microseconds(200);
constexpr uint64_t kFieldMask = (uint64_t{1} << 24) - 1;
constexpr size_t kMaxChunks = kFieldMask;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int configuredThreads() {
  for (const char* name : {"KILN_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n > 0) return std::min(n, 256);
    }
  }
#ifdef __linux__
  cpu_set_t set;  // the CPUs this process may use (taskset, cgroups), not all the machine has
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads; ++i) helpers_.emplace_back([this] { helperLoop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(sleepMutex_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (auto& t : helpers_) t.join();
  }

  int threads() const { return threads_; }

  void run(size_t n, size_t grain, ChunkFn fn, void* ctx) {
    const size_t maxChunks = std::min(kMaxChunks, static_cast<size_t>(threads_) * 4);
    const size_t chunk = std::max(grain, (n + maxChunks - 1) / maxChunks);
    std::unique_lock<std::mutex> busy(jobMutex_, std::try_to_lock);
    if (threads_ == 1 || n <= chunk || !busy.owns_lock()) return fn(ctx, 0, n);

    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    chunk_ = chunk;
    const uint64_t count = (n + chunk - 1) / chunk;
    pending_.store(count, std::memory_order_relaxed);
    ticket_.store(count << 24, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleepMutex_);
      wake_.notify_all();
    }
    while (runOneChunk()) {
    }
    // Only chunks a helper has claimed remain; wait for them.
    for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins < 4096) cpuRelax();
      else std::this_thread::yield();
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  bool claimable() const {
    const uint64_t t = ticket_.load(std::memory_order_seq_cst);
    return (t & kFieldMask) < ((t >> 24) & kFieldMask);
  }

  // Claims and runs one chunk of the current job; false when there is none left.
  bool runOneChunk() {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t next = t & kFieldMask, count = (t >> 24) & kFieldMask;
      if (next >= count) return false;
      if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        const size_t begin = static_cast<size_t>(next) * chunk_;
        try {
          fn_(ctx_, begin, std::min(n_, begin + chunk_));
        } catch (...) {  // e.g. bad_alloc growing scratch: hand the first one to the caller
          std::lock_guard<std::mutex> lock(errorMutex_);
          if (!error_) error_ = std::current_exception();
        }
        pending_.fetch_sub(1, std::memory_order_release);
        return true;
      }
    }
  }

  void helperLoop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      if (runOneChunk()) continue;
      const auto until = std::chrono::steady_clock::now() + kSpin;
      bool found = false;
      while (!found && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 64 && !found; ++i) {
          cpuRelax();
          found = claimable();
        }
      }
      if (found) continue;
      std::unique_lock<std::mutex> lock(sleepMutex_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [this] { return stop_.load() || claimable(); });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  const int threads_;
  std::vector<std::thread> helpers_;
  std::mutex jobMutex_;  // one job at a time; a second caller runs inline
  // The current job, valid for any chunk claimed under its ticket.
  ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  size_t n_ = 0, chunk_ = 1;
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint64_t> pending_{0};
  std::mutex errorMutex_;
  std::exception_ptr error_;
  std::mutex sleepMutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

Pool& pool() {
  static Pool p(configuredThreads());
  return p;
}

}  // namespace

void parallelForRaw(size_t n, size_t grain, ChunkFn fn, void* ctx) {
  if (n == 0) return;
  pool().run(n, std::max<size_t>(grain, 1), fn, ctx);
}

int numThreads() { return pool().threads(); }

}  // namespace kiln
