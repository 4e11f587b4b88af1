// CPU parallelism: dimix's own fork/join thread pool, used by our kernels and,
// through gemm<T> (ops/linalg.cpp), by BLAS, which itself runs one thread per
// call, so that one pool, never two, shares the cores.
//
// parallel_for(begin, end, grain, fn) calls fn(b, e) on disjoint contiguous
// chunks that cover [begin, end), at most one per thread, chunk t on thread t
// (so a kernel's chunking, and with it any per-chunk partial sum, depends only
// on the thread count). It runs serially when the range is at most `grain`
// items or when already inside a parallel region (no nesting).
//
// Why not OpenMP: a training step of a butterfly network forks ~300 times,
// and each fork/join costs its wake-up latency. libgomp either spins, which
// on a busy 2-core machine makes the step 3-6x slower, or sleeps in the
// kernel, which on a quiet one costs ~30% of a batch-32 step (a futex wake-up
// on a VM takes tens of microseconds). The pool spins for a short while
// (DIMIX_SPIN_US, default 100 us) only while the machine has idle cores
// (checked every few milliseconds from /proc/loadavg's runnable count), and
// sleeps otherwise. Each thread that calls parallel_for gets its own pool,
// as each gets its own OpenMP team, so threads of one process (data-loader
// workers, the in-process communicator's ranks) may run kernels at once.
#pragma once
#include <algorithm>
#include <cstdint>

namespace dimix {

// Threads per parallel region: set_num_threads, else OMP_NUM_THREADS, else
// the cores this process may run on (its affinity mask).
int get_num_threads();
void set_num_threads(int n);
// True inside a parallel_for body (on any of its threads).
bool in_parallel_region();

namespace detail {
// Runs call(ctx, t) for t in [0, tasks) on the calling thread's pool, task 0
// on the caller, and returns when all are done; rethrows the first exception
// a task threw. tasks <= get_num_threads().
void run_parallel(int64_t tasks, void (*call)(void*, int64_t), void* ctx);
}  // namespace detail

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  const int nt = get_num_threads();
  if (n > grain && nt > 1 && !in_parallel_region()) {
    const int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / std::max<int64_t>(grain, 1));
    const int64_t per = (n + chunks - 1) / chunks;
    auto task = [&](int64_t t) {
      const int64_t b = begin + t * per;
      const int64_t e = std::min(end, b + per);
      if (b < e) fn(b, e);
    };
    detail::run_parallel(
        chunks, [](void* ctx, int64_t t) { (*static_cast<decltype(task)*>(ctx))(t); }, &task);
    return;
  }
  fn(begin, end);
}

}  // namespace dimix
