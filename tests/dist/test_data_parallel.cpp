// Data-parallel training on the threads backend: 2 ranks at batch B give
// the parameters and metrics of 1 process at batch 2B with 2 micro-batches,
// bit for bit; ZeRO-1 gives the bits of plain data parallelism; a checkpoint
// written by 2 ranks resumes on 1 rank and on 2 ranks to the uninterrupted
// result; a rank that fails mid-training makes the other fail naming it.
// (The MPI versions of these runs are in test_mpi.cpp, under mpirun.)
#include <catch2/catch.hpp>

#include <map>
#include <thread>

#include "apps/data_parallel_common.h"
#include "core/safetensors.h"
#include "dist_test_util.h"

using namespace dimix;
using namespace dimix::dist_test;
using Catch::Matchers::Contains;

namespace {

struct RankRun {
  app::TrainTask task;
  app::TrainResult result;
  std::string error;
};

// Trains `world` ranks on threads (models built here, on the caller's thread).
std::vector<RankRun> train_threads(int world, const fs::path& dir, bool zero1, int64_t stop_after = 0,
                                   bool resume = false, int fail_rank = -1) {
  auto comms = dist::thread_group(world);
  std::vector<RankRun> runs(world);
  for (int r = 0; r < world; ++r) runs[r].task = make_task(r, world, 1, r == fail_rank ? 40 : -1);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    app::TrainConfig c = make_config(dir.string(), comms[r], 1, zero1);
    c.stop_after = stop_after;
    c.resume = resume;
    comms[r].reset();  // the config holds the only reference: a rank that ends releases it
    threads.emplace_back([&runs, r, c]() mutable {
      try {
        runs[r].result = app::train(c, runs[r].task);
      } catch (const Error& e) {
        runs[r].error = e.what();
      }
      c.comm.reset();
    });
  }
  for (auto& t : threads) t.join();
  return runs;
}

// One process at the global batch, in 2 micro-batches.
RankRun train_single(const fs::path& dir, int64_t stop_after = 0, bool resume = false, bool zero1 = false) {
  RankRun run;
  run.task = make_task(0, 1, 2);
  app::TrainConfig c = make_config(dir.string(), nullptr, 2, zero1);
  c.stop_after = stop_after;
  c.resume = resume;
  run.result = app::train(c, run.task);
  return run;
}

}  // namespace

TEST_CASE("data parallel: 2 ranks at batch B equal 1 process at 2B in 2 micro-batches, bit for bit", "[dist][dp]") {
  const fs::path one = temp_dir("one"), two = temp_dir("two");
  const RankRun ref = train_single(one);
  REQUIRE(ref.result.steps == 9);
  const auto runs = train_threads(2, two, false);
  REQUIRE(runs[0].error.empty());
  REQUIRE(runs[1].error.empty());
  const auto p = params_of(*ref.task.model);
  CHECK(params_of(*runs[0].task.model) == p);
  CHECK(params_of(*runs[1].task.model) == p);
  // Rank 0 alone wrote the metrics: the same lines, none twice.
  const auto lines = metric_lines(ref.result.metrics);
  REQUIRE(lines.size() == 7);  // train at steps 2, 4, 6, 8, 9; eval at 4, 8
  CHECK(metric_lines((two / "metrics.jsonl").string()) == lines);
  CHECK(runs[0].result.last_eval.loss == ref.result.last_eval.loss);
  CHECK(runs[1].result.last_eval.accuracy == ref.result.last_eval.accuracy);
  CHECK(runs[1].result.last_eval.examples == 30);
  // The checkpoint records how it was written (any world size dividing 16 resumes it).
  const auto ck = load_safetensors((two / "checkpoint.safetensors").string());
  CHECK(ck.metadata.at("extra.global_batch") == "16");
  CHECK(ck.metadata.at("extra.world_size") == "2");
  fs::remove_all(one);
  fs::remove_all(two);
}

TEST_CASE("data parallel: one process at 2B in one pass differs only by rounding", "[dist][dp]") {
  // Not the same bits (one GEMM over 16 rows rounds differently from two
  // over 8 added), but the same training to float precision.
  const fs::path a = temp_dir("k1"), b = temp_dir("k2");
  RankRun k1;
  k1.task = make_task(0, 1, 1);
  k1.result = app::train(make_config(a.string(), nullptr, 1), k1.task);
  const RankRun k2 = train_single(b);
  const auto p1 = params_of(*k1.task.model), p2 = params_of(*k2.task.model);
  REQUIRE(p1.size() == p2.size());
  double max_diff = 0;
  for (size_t i = 0; i < p1.size(); ++i) max_diff = std::max(max_diff, std::abs(double(p1[i]) - double(p2[i])));
  CHECK(max_diff < 1e-4);
  CHECK(max_diff > 0);  // the grouping of the sums is visible: why micro-batches are needed for bit-identity
  CHECK(k1.result.last_eval.examples == 30);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("data parallel: ZeRO-1 gives the parameters of plain data parallelism", "[dist][dp][zero1]") {
  const fs::path plain = temp_dir("plain"), sharded = temp_dir("zero1"), single = temp_dir("zero1_single");
  const auto p = train_threads(2, plain, false);
  const auto z = train_threads(2, sharded, true);
  REQUIRE(p[0].error.empty());
  REQUIRE(z[0].error.empty());
  REQUIRE(z[1].error.empty());
  const auto expected = params_of(*p[0].task.model);
  CHECK(params_of(*z[0].task.model) == expected);
  CHECK(params_of(*z[1].task.model) == expected);
  CHECK(metric_lines((sharded / "metrics.jsonl").string()) == metric_lines((plain / "metrics.jsonl").string()));
  // The checkpoint holds the full (unsharded) optimizer state: every
  // parameter's exp_avg, as a plain run writes it.
  const auto zc = load_safetensors((sharded / "checkpoint.safetensors").string());
  const auto pc = load_safetensors((plain / "checkpoint.safetensors").string());
  std::map<std::string, Tensor> zero1_state(zc.tensors.begin(), zc.tensors.end());
  int64_t states = 0;
  for (const auto& [k, t] : pc.tensors) {
    if (k.rfind("optim.", 0) != 0) continue;
    ++states;
    REQUIRE(zero1_state.count(k) == 1);
    CHECK(zero1_state.at(k).to_vector<float>() == t.to_vector<float>());
  }
  CHECK(states == 2 * static_cast<int64_t>(p[0].task.model->named_parameters().size()));
  // ZeRO-1 in a world of one is plain training.
  const RankRun s = train_single(single, 0, false, true);
  CHECK(params_of(*s.task.model) == expected);
  fs::remove_all(plain);
  fs::remove_all(sharded);
  fs::remove_all(single);
}

TEST_CASE("data parallel: a checkpoint of 2 ranks resumes on 1 rank and on 2 ranks to the same result",
          "[dist][dp][resume]") {
  const fs::path full = temp_dir("full"), two = temp_dir("resume2"), one = temp_dir("resume1");
  const auto reference = train_threads(2, full, false);
  REQUIRE(reference[0].error.empty());
  const auto expected = params_of(*reference[0].task.model);

  // Written by 2 ZeRO-1 ranks after 4 steps (mid-epoch, mid log interval).
  const auto first = train_threads(2, two, true, 4);
  REQUIRE(first[0].error.empty());
  REQUIRE(first[0].result.interrupted);
  CHECK(first[0].result.steps == 4);
  fs::create_directories(one);
  fs::copy(two / "checkpoint.safetensors", one / "checkpoint.safetensors");
  fs::copy(two / "metrics.jsonl", one / "metrics.jsonl");

  // ... continued by 2 plain ranks,
  const auto again = train_threads(2, two, false, 0, true);
  REQUIRE(again[0].error.empty());
  REQUIRE(again[1].error.empty());
  CHECK(again[0].result.steps == 9);
  CHECK(params_of(*again[0].task.model) == expected);
  CHECK(params_of(*again[1].task.model) == expected);
  CHECK(metric_lines((two / "metrics.jsonl").string()) == metric_lines((full / "metrics.jsonl").string()));

  // ... and by 1 process with 2 micro-batches.
  const RankRun alone = train_single(one, 0, true);
  CHECK(alone.result.steps == 9);
  CHECK(params_of(*alone.task.model) == expected);
  CHECK(metric_lines((one / "metrics.jsonl").string()) == metric_lines((full / "metrics.jsonl").string()));

  // A different global batch is refused, naming both.
  app::TrainTask other = make_task(0, 1, 1, -1, false, 8);
  app::TrainConfig oc = make_config(one.string(), nullptr, 1);
  oc.resume = true;
  CHECK_THROWS_WITH(app::train(oc, other), Contains("global batch of 16") && Contains("this run's is 8"));
  fs::remove_all(full);
  fs::remove_all(two);
  fs::remove_all(one);
}

TEST_CASE("data parallel: a rank that fails mid-training makes the other fail naming it", "[dist][dp][failure]") {
  const fs::path d = temp_dir("fail");
  // Rank 1's data breaks at its 41st example (step 6); rank 0's is fine.
  const auto runs = train_threads(2, d, false, 0, false, 1);
  CHECK_THAT(runs[1].error, Contains("FailingDataset"));
  CHECK_THAT(runs[0].error, Contains("rank 1 left the group"));
  fs::remove_all(d);
}

TEST_CASE("data parallel: loaders must be built for the rank, micro-batches must be positive", "[dist][dp]") {
  const fs::path d = temp_dir("bad");
  auto comms = dist::thread_group(2);
  app::TrainTask t = make_task(0, 1, 1);  // a loader of a world of one
  app::TrainConfig c = make_config(d.string(), comms[1], 1);
  CHECK_THROWS_WITH(app::train(c, t), Contains("built for rank 0 of 1") && Contains("rank 1 of 2"));
  app::TrainConfig c1 = make_config(d.string(), nullptr, 0);
  CHECK_THROWS_WITH(app::train(c1, t), Contains("micro-batches must be at least 1"));
  fs::remove_all(d);
}
