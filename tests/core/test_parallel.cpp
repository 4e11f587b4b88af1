// core/parallel: the thread pool behind parallel_for, and gemm's cut of big
// products over it (ops/linalg.cpp).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "ops/linalg.h"

using namespace dimix;

namespace {
// Restores the thread count a test changed.
struct ThreadCount {
  int saved = get_num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("parallel_for covers the range once, one contiguous chunk per thread", "[parallel]") {
  ThreadCount tc(3);
  for (int64_t n : {1, 2, 3, 7, 100, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    std::vector<std::pair<int64_t, int64_t>> chunks(3, {-1, -1});
    std::atomic<int> calls{0};
    parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
      const int c = calls.fetch_add(1);
      chunks[c] = {b, e};
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) CHECK(hits[i].load() == 1);
    // ceil(n / 3) items a chunk, the last one shorter: 1001 -> 334, 334, 333.
    CHECK(calls.load() == std::min<int64_t>(n, 3));
    if (n == 1001) {
      std::sort(chunks.begin(), chunks.end());
      CHECK(chunks[0] == std::make_pair<int64_t, int64_t>(0, 334));
      CHECK(chunks[1] == std::make_pair<int64_t, int64_t>(334, 668));
      CHECK(chunks[2] == std::make_pair<int64_t, int64_t>(668, 1001));
    }
  }
}

TEST_CASE("parallel_for runs small ranges and nested calls serially", "[parallel]") {
  ThreadCount tc(2);
  int calls = 0;
  parallel_for(0, 10, 10, [&](int64_t b, int64_t e) {
    ++calls;
    CHECK(b == 0);
    CHECK(e == 10);
    CHECK_FALSE(in_parallel_region());
  });
  CHECK(calls == 1);

  std::atomic<int> inner_calls{0};
  parallel_for(0, 2, 1, [&](int64_t, int64_t) {
    CHECK(in_parallel_region());
    parallel_for(0, 100, 1, [&](int64_t b, int64_t e) {
      inner_calls.fetch_add(1);
      CHECK(b == 0);
      CHECK(e == 100);
    });
  });
  CHECK(inner_calls.load() == 2);
  CHECK_FALSE(in_parallel_region());
}

TEST_CASE("an exception in any chunk reaches the caller, and the pool goes on working", "[parallel]") {
  ThreadCount tc(2);
  for (int64_t bad : {0, 1}) {
    CHECK_THROWS_WITH(parallel_for(0, 2, 1,
                                   [&](int64_t b, int64_t) {
                                     if (b == bad) DIMIX_CHECK(false, "chunk ", b, " failed");
                                   }),
                      Catch::Contains("chunk " + std::to_string(bad) + " failed"));
  }
  std::atomic<int64_t> sum{0};
  parallel_for(0, 1000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  CHECK(sum.load() == 999 * 1000 / 2);
}

TEST_CASE("threads of one process run parallel_for at once, each on its own pool", "[parallel]") {
  ThreadCount tc(2);
  constexpr int kCallers = 4, kRounds = 300;
  std::vector<int64_t> sums(kCallers, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        std::atomic<int64_t> s{0};
        parallel_for(0, 64, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) s.fetch_add(i + c);
        });
        sums[c] += s.load();
      }
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < kCallers; ++c) CHECK(sums[c] == kRounds * (63 * 64 / 2 + 64 * c));
}

TEST_CASE("set_num_threads changes the chunk count and rejects 0", "[parallel]") {
  ThreadCount tc(1);
  std::atomic<int> calls{0};
  parallel_for(0, 100, 1, [&](int64_t, int64_t) { calls.fetch_add(1); });
  CHECK(calls.load() == 1);
  set_num_threads(4);
  calls = 0;
  parallel_for(0, 100, 1, [&](int64_t, int64_t) { calls.fetch_add(1); });
  CHECK(calls.load() == 4);
  CHECK_THROWS_WITH(set_num_threads(0), Catch::Contains("expected at least 1 thread, got 0"));
}

TEST_CASE("gemm cut over threads equals one thread's gemm", "[parallel][gemm]") {
  // Big enough to be cut (>= 2^20 multiply-adds), with ragged slice ends, in
  // both orientations (rows when M >= N, columns otherwise) and transposes.
  struct Case {
    int64_t M, N, K;
    bool ta, tb;
  };
  for (const Case& c : {Case{333, 97, 71, false, false}, Case{97, 333, 71, true, false},
                        Case{150, 401, 64, false, true}, Case{401, 150, 64, true, true}}) {
    Generator g(5);
    const Tensor a = randn(c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, DType::f32, &g);
    const Tensor b = randn(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, DType::f32, &g);
    Tensor c1 = full({c.M, c.N}, 0.5), c2 = full({c.M, c.N}, 0.5);
    const int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
    {
      ThreadCount one(1);
      gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.5f, a.data<float>(), lda, b.data<float>(), ldb, 2.f,
                  c1.data<float>(), c.N);
    }
    {
      ThreadCount three(3);
      gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.5f, a.data<float>(), lda, b.data<float>(), ldb, 2.f,
                  c2.data<float>(), c.N);
    }
    const float* p1 = c1.data<float>();
    const float* p2 = c2.data<float>();
    double worst = 0;
    for (int64_t i = 0; i < c.M * c.N; ++i) worst = std::max(worst, std::abs(double(p1[i]) - p2[i]));
    INFO("M " << c.M << " N " << c.N << " K " << c.K << " ta " << c.ta << " tb " << c.tb);
    CHECK(worst < 1e-4);
    // Spot-check one entry against a double-precision dot product.
    const int64_t i = c.M - 1, j = c.N / 2;
    double ref = 0;
    for (int64_t k = 0; k < c.K; ++k) {
      const double av = c.ta ? a.data<float>()[k * c.M + i] : a.data<float>()[i * c.K + k];
      const double bv = c.tb ? b.data<float>()[j * c.K + k] : b.data<float>()[k * c.N + j];
      ref += av * bv;
    }
    CHECK(p2[i * c.N + j] == Approx(1.5 * ref + 1.0).margin(1e-4));
  }
}

TEST_CASE("a forked child builds its own pool instead of waiting on its parent's workers", "[parallel]") {
  ThreadCount tc(2);
  std::atomic<int64_t> parent_sum{0};
  parallel_for(0, 100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) parent_sum.fetch_add(i);
  });
  REQUIRE(parent_sum.load() == 4950);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::atomic<int64_t> sum{0};
    parallel_for(0, 100, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
    });
    _exit(sum.load() == 4950 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
