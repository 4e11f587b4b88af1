// The Communicator backends that run in one process: single and threads.
// Values are chosen so the summation order shows: in f32, (1e8 + -1e8) + 1
// is 1 but 1e8 + (-1e8 + 1) is 0, so rank-ordered sums are asserted, not
// just sums. Failure paths: a rank that never arrives (timeout naming it),
// a rank whose thread ends (named at once), mismatched collectives.
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <thread>

#include "dist/communicator.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

// Runs body(rank) on one thread per rank; returns each rank's error ("" if none).
std::vector<std::string> run_ranks(std::vector<std::shared_ptr<dist::Communicator>>& comms,
                                   const std::function<void(dist::Communicator&)>& body) {
  std::vector<std::string> errors(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        body(*comms[r]);
      } catch (const Error& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

TEST_CASE("single process: collectives are the identity or a copy, bad arguments are errors", "[dist]") {
  auto c = dist::single_process();
  CHECK(c->rank() == 0);
  CHECK(c->world_size() == 1);
  CHECK(c->backend() == "single");
  Tensor t = from_vector<float>({1, 2, 3}, {3});
  c->all_reduce(t);
  c->broadcast(t, 0);
  c->barrier();
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3});
  Tensor out = zeros({3});
  c->reduce_scatter(t, out);
  CHECK(out.to_vector<float>() == std::vector<float>{1, 2, 3});
  Tensor gathered = zeros({3});
  c->all_gather(t, gathered);
  CHECK(gathered.to_vector<float>() == std::vector<float>{1, 2, 3});

  Tensor wide = zeros({3, 4});
  const Tensor transposed = wide.as_strided({4, 3}, {1, 4}, 0);
  CHECK_THROWS_WITH(c->all_reduce(transposed), Contains("all_reduce") && Contains("contiguous") && Contains("[4, 3]"));
  CHECK_THROWS_WITH(c->reduce_scatter(zeros({4}), zeros({3})), Contains("reduce_scatter") && Contains("3 elements, got 4"));
  CHECK_THROWS_WITH(c->broadcast(t, 1), Contains("root must be in [0, 1)"));
  CHECK_THROWS_WITH(c->set_timeout(0), Contains("timeout must be positive"));
  std::vector<double> v{1.5, 2.5};
  dist::all_reduce_values(*c, v);
  CHECK(v == std::vector<double>{1.5, 2.5});
}

TEST_CASE("threads: all_reduce sums in rank order, in the tensor's dtype", "[dist]") {
  auto comms = dist::thread_group(3);
  const float per_rank[3] = {1e8f, -1e8f, 1.0f};
  std::vector<std::vector<float>> f32(3);
  std::vector<std::vector<int64_t>> i64(3);
  std::vector<std::vector<double>> f64(3);
  const auto errors = run_ranks(comms, [&](dist::Communicator& c) {
    const int r = c.rank();
    // 5 elements over 3 ranks: the internal chunks are uneven (2, 2, 1).
    Tensor t = full({5}, per_rank[r]);
    c.all_reduce(t);
    f32[r] = t.to_vector<float>();
    Tensor n = from_vector<int64_t>({int64_t(r), int64_t(10 * r), int64_t(1) << (40 + r)}, {3});
    c.all_reduce(n);
    i64[r] = n.to_vector<int64_t>();
    std::vector<double> v{double(r), 0.5};
    dist::all_reduce_values(c, v);
    f64[r] = v;
  });
  for (int r = 0; r < 3; ++r) {
    CHECK(errors[r].empty());
    CHECK(f32[r] == std::vector<float>(5, 1.0f));  // (1e8 + -1e8) + 1; any other order gives 0
    CHECK(i64[r] == std::vector<int64_t>{3, 30, (int64_t(1) << 40) + (int64_t(1) << 41) + (int64_t(1) << 42)});
    CHECK(f64[r] == std::vector<double>{3.0, 1.5});
  }
}

TEST_CASE("threads: reduce_scatter, all_gather and broadcast move the right chunks", "[dist]") {
  auto comms = dist::thread_group(2);
  std::vector<std::vector<double>> scattered(2), in_place(2), gathered(2), gathered_in_place(2), bcast(2);
  const auto errors = run_ranks(comms, [&](dist::Communicator& c) {
    const int r = c.rank();
    // Rank r holds [10r, 10r+1, 10r+2, 10r+3]; chunk q is elements 2q, 2q+1.
    auto mine = [&] { return from_vector<double>({10.0 * r, 10.0 * r + 1, 10.0 * r + 2, 10.0 * r + 3}, {4}); };
    Tensor out = zeros({2}, DType::f64);
    c.reduce_scatter(mine(), out);
    scattered[r] = out.to_vector<double>();
    Tensor buf = mine();  // in place: the output is this rank's chunk of the input
    c.reduce_scatter(buf, buf.as_strided({2}, {1}, 2 * r));
    in_place[r] = buf.as_strided({2}, {1}, 2 * r).to_vector<double>();
    Tensor all = zeros({2, 2}, DType::f64);
    c.all_gather(from_vector<double>({double(r), 100.0 + r}, {2}), all);
    gathered[r] = all.to_vector<double>();
    Tensor all2 = full({4}, -1.0, DType::f64);
    copy_(all2.as_strided({2}, {1}, 2 * r), from_vector<double>({5.0 + r, 6.0 + r}, {2}));
    c.all_gather(all2.as_strided({2}, {1}, 2 * r), all2);
    gathered_in_place[r] = all2.to_vector<double>();
    Tensor b = full({3}, double(r + 7), DType::f64);
    c.broadcast(b, 1);
    bcast[r] = b.to_vector<double>();
    c.barrier();
  });
  for (int r = 0; r < 2; ++r) {
    CHECK(errors[r].empty());
    CHECK(bcast[r] == std::vector<double>(3, 8.0));
    CHECK(gathered[r] == std::vector<double>{0, 100, 1, 101});
    CHECK(gathered_in_place[r] == std::vector<double>{5, 6, 6, 7});
  }
  CHECK(scattered[0] == std::vector<double>{0 + 10, 1 + 11});
  CHECK(scattered[1] == std::vector<double>{2 + 12, 3 + 13});
  CHECK(in_place[0] == scattered[0]);
  CHECK(in_place[1] == scattered[1]);
}

TEST_CASE("threads: a rank that never arrives makes the others fail naming it, not hang", "[dist][failure]") {
  auto comms = dist::thread_group(3);
  for (auto& c : comms) c->set_timeout(0.3);
  std::vector<std::string> second(3);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(comms, [&](dist::Communicator& c) {
    if (c.rank() == 1) {  // hangs elsewhere, but its communicator lives on
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      return;
    }
    Tensor t = ones({4});
    try {
      c.all_reduce(t);
    } catch (const Error&) {
      try {
        c.barrier();  // the group is broken now: at once, no second wait
      } catch (const Error& e) {
        second[c.rank()] = e.what();
      }
      throw;
    }
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(errors[1].empty());
  for (int r : {0, 2}) {
    CHECK_THAT(errors[r], Contains("timed out after 0.3 s") && Contains("waiting for rank 1") &&
                              Contains("all_reduce of 4 f32"));
    CHECK_THAT(second[r], Contains("broken"));
  }
  CHECK(seconds < 10);  // bounded (not a timing assertion: a hang would never end)
}

TEST_CASE("threads: a rank whose thread ends is named at once, mismatched collectives are errors", "[dist][failure]") {
  {
    auto comms = dist::thread_group(2);
    comms[0]->set_timeout(60);  // the failure must come from the departure, not the deadline
    std::string error;
    std::thread t0([&, c = comms[0]] {
      try {
        Tensor t = ones({2});
        c->all_reduce(t);
      } catch (const Error& e) {
        error = e.what();
      }
    });
    std::thread t1([c = std::move(comms[1])]() mutable { c.reset(); });  // rank 1's thread ends
    t1.join();
    t0.join();
    CHECK_THAT(error, Contains("rank 1 left the group"));
  }
  {
    auto comms = dist::thread_group(2);
    const auto errors = run_ranks(comms, [&](dist::Communicator& c) {
      Tensor t = ones({c.rank() == 0 ? 4 : 5});
      c.all_reduce(t);
    });
    for (int r = 0; r < 2; ++r) CHECK_THAT(errors[r], Contains("mismatched collectives") && Contains("all_reduce of 5 f32"));
  }
}

TEST_CASE("dist: what this build supports", "[dist]") {
#ifdef DIMIX_WITH_MPI
  CHECK(dist::mpi_built());
#else
  CHECK_FALSE(dist::mpi_built());
  CHECK_THROWS_WITH(dist::mpi_world(), Contains("built without MPI") && Contains("distributed runs need MPI"));
#endif
#ifdef DIMIX_WITH_NCCL
  CHECK(dist::nccl_built());
#else
  CHECK_FALSE(dist::nccl_built());
  CHECK_THROWS_WITH(dist::nccl(dist::single_process(), 0), Contains("built without NCCL"));
#endif
  if (!dist::launched_by_mpi()) CHECK(dist::from_environment()->backend() == "single");
}
