// The fork/join thread pool behind parallel_for (see parallel.h for why it
// exists and how it waits).
//
// One job at a time per pool: the caller writes the job (function, context),
// publishes its number and task count in one 64-bit word, bumps the 32-bit
// `generation_` that idle workers wait on, runs task 0 itself and waits until
// `pending_` (the workers' tasks still running) is 0. Worker w runs task w
// when w < tasks. A worker that skipped a job may see a later one directly:
// it always reads the newest published word, and the caller never rewrites
// the job while a participating worker can still read it (it waits for all
// of them first). Each side that may sleep announces it (sleepers_,
// main_waiting_) before re-checking the word it sleeps on, and each waker
// reads that announcement after changing the word, both sequentially
// consistent, so a wake-up is never lost and no futex call is made when
// nobody sleeps.
#include "core/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace dimix {
namespace {

thread_local bool t_in_region = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int affinity_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);  // "4" or the first of a list "4,2"
    if (n >= 1) return n;
  }
  return affinity_cores();
}

std::atomic<int> g_threads{0};  // 0 until first asked

// ---- when to spin -------------------------------------------------------------------

// Spinning pays only when no other thread wants our cores: with one busy
// process on a 2-core machine, spinning workers made a step 3-6x slower. The
// kernel's count of runnable threads (/proc/loadavg, 4th field) is read at
// most every 5 ms by whichever pool starts a job; the reader and our own
// awake workers are subtracted from it. Kernel threads and daemons are
// runnable now and then on an idle machine, so a check counts as busy only
// when three back-to-back readings see another thread, and the pools spin
// while at most one of the last four checks was busy.
std::atomic<int> g_awake_workers{0};
std::atomic<int64_t> g_next_check_ns{0};
std::atomic<unsigned> g_busy_history{0};  // bit i: reading i ago saw others
std::atomic<bool> g_spin_ok{false};

int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* env = std::getenv("DIMIX_SPIN_US");
    const long us = env ? std::strtol(env, nullptr, 10) : 100;
    return static_cast<int64_t>(std::max(0L, us)) * 1000;
  }();
  return ns;
}

int runnable_threads() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double l1, l5, l15;
  int running = -1, total = 0;
  if (std::fscanf(f, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total) != 5) running = -1;
  std::fclose(f);
  return running;
}

void refresh_spin_gate(int pool_threads) {
  if (spin_ns() == 0) return;
  const int64_t now = now_ns();
  int64_t next = g_next_check_ns.load(std::memory_order_relaxed);
  if (now < next || !g_next_check_ns.compare_exchange_strong(next, now + 5'000'000)) return;
  static const int cores = affinity_cores();
  // Busy only when three readings in a row see another thread: a thread
  // that wants the cores stays runnable, one that wakes briefly does not.
  bool busy = true;
  int running = -1;
  for (int reading = 0; reading < 3 && busy; ++reading) {
    running = runnable_threads();
    const int others = running - 1 - g_awake_workers.load(std::memory_order_relaxed);
    busy = running < 0 || others + pool_threads > cores;
  }
  const unsigned history = ((g_busy_history.load(std::memory_order_relaxed) << 1) | (busy ? 1u : 0u)) & 0xfu;
  g_busy_history.store(history, std::memory_order_relaxed);
  g_spin_ok.store(running >= 0 && std::popcount(history) <= 1, std::memory_order_relaxed);
}

bool may_spin() { return spin_ns() > 0 && g_spin_ok.load(std::memory_order_relaxed); }

// Spins until pred() or the spin budget is spent; true when pred() held.
template <class Pred>
bool spin_until(Pred pred) {
  if (!may_spin()) return pred();
  const int64_t deadline = now_ns() + spin_ns();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      cpu_relax();
    }
    if (now_ns() > deadline) return pred();
  }
}

// ---- the pool -----------------------------------------------------------------------

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    g_awake_workers.fetch_add(threads - 1, std::memory_order_relaxed);  // awake until they first sleep
    workers_.reserve(threads - 1);
    for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
  }

  ~Pool() {
    stop_.store(true, std::memory_order_relaxed);
    publish(0);
    for (auto& t : workers_) t.join();
  }

  int threads() const { return threads_; }

  void run(int64_t tasks, void (*call)(void*, int64_t), void* ctx) {
    refresh_spin_gate(threads_);
    call_ = call;
    ctx_ = ctx;
    error_ = nullptr;
    pending_.store(static_cast<int>(tasks - 1), std::memory_order_relaxed);
    publish(tasks);

    t_in_region = true;
    try {
      call(ctx, 0);
    } catch (...) {
      record_error();
    }
    t_in_region = false;

    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      for (;;) {
        main_waiting_.store(true, std::memory_order_seq_cst);
        const int p = pending_.load(std::memory_order_seq_cst);
        if (p == 0) break;
        pending_.wait(p, std::memory_order_acquire);
      }
      main_waiting_.store(false, std::memory_order_relaxed);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Makes job number generation_ + 1 with `tasks` tasks visible and wakes
  // sleeping workers.
  void publish(int64_t tasks) {
    const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    job_.store((uint64_t(gen) << 32) | uint64_t(tasks), std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  }

  void record_error() {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!error_) error_ = std::current_exception();
  }

  void worker_loop(int w) {
    t_in_region = true;
    uint32_t seen = 0;  // the constructor's value: a job may be out before this thread starts
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        g_awake_workers.fetch_sub(1, std::memory_order_relaxed);
        for (;;) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          if (generation_.load(std::memory_order_seq_cst) == seen) generation_.wait(seen, std::memory_order_acquire);
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
          if (generation_.load(std::memory_order_acquire) != seen) break;
        }
        g_awake_workers.fetch_add(1, std::memory_order_relaxed);
      }
      const uint64_t job = job_.load(std::memory_order_acquire);
      seen = static_cast<uint32_t>(job >> 32);
      if (stop_.load(std::memory_order_relaxed)) break;
      if (w < static_cast<int64_t>(job & 0xffffffffu)) {
        try {
          call_(ctx_, w);
        } catch (...) {
          record_error();
        }
        if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && main_waiting_.load(std::memory_order_seq_cst))
          pending_.notify_one();
      }
    }
    g_awake_workers.fetch_sub(1, std::memory_order_relaxed);
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint32_t> generation_{0};  // what idle workers wait on
  std::atomic<uint64_t> job_{0};         // (job number << 32) | task count
  std::atomic<int> sleepers_{0};
  std::atomic<int> pending_{0};          // workers' tasks of the current job not yet done
  std::atomic<bool> main_waiting_{false};
  std::atomic<bool> stop_{false};
  void (*call_)(void*, int64_t) = nullptr;
  void* ctx_ = nullptr;
  std::mutex error_mu_;
  std::exception_ptr error_;
};

// The calling thread's pool, (re)built at the current thread count.
thread_local std::unique_ptr<Pool> t_pool;

// A forked child has only the thread that forked: its pool's workers are
// gone, so the child forgets the pool (leaking it; destroying it would join
// threads that do not exist) and builds a new one when it needs one.
void forget_pool_in_child() { (void)t_pool.release(); }

Pool& pool_for_this_thread(int threads) {
  static const bool at_fork = (pthread_atfork(nullptr, nullptr, forget_pool_in_child), true);
  (void)at_fork;
  if (!t_pool || t_pool->threads() != threads) {
    t_pool.reset();
    t_pool = std::make_unique<Pool>(threads);
  }
  return *t_pool;
}

}  // namespace

int get_num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    int expected = 0;
    g_threads.compare_exchange_strong(expected, default_threads());
    n = g_threads.load(std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  DIMIX_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  g_threads.store(n, std::memory_order_relaxed);
}

bool in_parallel_region() { return t_in_region; }

namespace detail {
void run_parallel(int64_t tasks, void (*call)(void*, int64_t), void* ctx) {
  const int threads = get_num_threads();
  DIMIX_CHECK(tasks >= 1 && tasks <= threads, "parallel_for: expected 1 to ", threads, " tasks, got ", tasks);
  pool_for_this_thread(threads).run(tasks, call, ctx);
}
}  // namespace detail

}  // namespace dimix
