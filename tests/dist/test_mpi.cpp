// The MPI backend, run by ctest as `mpirun -np 2 test_dist "[mpi]"` (the
// cases are hidden from the plain single-process run). Each rank also
// trains the single-process reference itself (1 process at batch 2B in 2
// micro-batches), so both ranks can compare their parameters with it bit
// for bit. "[mpi-dies]" is its own ctest entry: rank 1 is killed during
// training and the run must end (not hang), naming rank 1.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "core/safetensors.h"
#include "dist_test_util.h"

using namespace dimix;
using namespace dimix::dist_test;
using Catch::Matchers::Contains;

namespace {

std::shared_ptr<dist::Communicator> world_of_two(double timeout) {
  auto w = dist::mpi_world();
  REQUIRE(w->world_size() == 2);
  w->set_timeout(timeout);
  return w;
}

// A directory name both ranks agree on (rank 0's pid), not yet created.
fs::path shared_dir(dist::Communicator& world, const std::string& name) {
  Tensor id = from_vector<int64_t>({static_cast<int64_t>(::getpid())}, {1});
  world.broadcast(id, 0);
  const fs::path d = fs::temp_directory_path() / ("dimix_dist_mpi_" + name + "_" + std::to_string(id.item<int64_t>()));
  if (world.rank() == 0) fs::remove_all(d);
  world.barrier();
  return d;
}

struct Run {
  app::TrainTask task;
  app::TrainResult result;
};

Run train_ranks(std::shared_ptr<dist::Communicator> world, const fs::path& dir, bool zero1, int64_t stop_after = 0,
                bool resume = false) {
  Run run;
  run.task = make_task(world->rank(), world->world_size(), 1);
  app::TrainConfig c = make_config(dir.string(), world, 1, zero1);
  c.stop_after = stop_after;
  c.resume = resume;
  run.result = app::train(c, run.task);
  return run;
}

Run train_alone(const fs::path& dir, bool resume = false) {
  Run run;
  run.task = make_task(0, 1, 2);
  app::TrainConfig c = make_config(dir.string(), nullptr, 2);
  c.resume = resume;
  run.result = app::train(c, run.task);
  return run;
}

}  // namespace

TEST_CASE("mpi: collectives move and sum the right values, a silent peer is named", "[.][mpi]") {
  auto world = world_of_two(60);
  const int r = world->rank();
  CHECK(world->backend() == "mpi");
  CHECK(world->local_size() == 2);
  CHECK(world->local_rank() == r);

  // 300001 elements: uneven internal chunks; each element's sum is exact.
  const int64_t n = 300001;
  std::vector<float> mine(n);
  for (int64_t i = 0; i < n; ++i) mine[i] = static_cast<float>((i % 1000) * (r + 1));
  Tensor t = from_vector<float>(mine, {n});
  world->all_reduce(t);
  const auto sum = t.to_vector<float>();
  bool all_right = true;
  for (int64_t i = 0; i < n; ++i) all_right = all_right && sum[i] == static_cast<float>((i % 1000) * 3);
  CHECK(all_right);

  Tensor ints = from_vector<int64_t>({int64_t(1) << (40 + r), int64_t(r)}, {2});
  world->all_reduce(ints);
  CHECK(ints.to_vector<int64_t>() == std::vector<int64_t>{(int64_t(1) << 40) + (int64_t(1) << 41), 1});

  Tensor in = from_vector<double>({10.0 * r, 10.0 * r + 1, 10.0 * r + 2, 10.0 * r + 3}, {4});
  Tensor out = zeros({2}, DType::f64);
  world->reduce_scatter(in, out);
  CHECK(out.to_vector<double>() == (r == 0 ? std::vector<double>{10, 12} : std::vector<double>{14, 16}));
  Tensor all = zeros({4}, DType::f64);
  world->all_gather(from_vector<double>({double(r), 100.0 + r}, {2}), all);
  CHECK(all.to_vector<double>() == std::vector<double>{0, 100, 1, 101});
  Tensor b = full({3}, double(r + 7), DType::f64);
  world->broadcast(b, 1);
  CHECK(b.to_vector<double>() == std::vector<double>(3, 8.0));
  std::vector<double> v{double(r), 0.25};
  dist::all_reduce_values(*world, v);
  CHECK(v == std::vector<double>{1.0, 0.5});

  // Rank 1 never joins this communicator's all_reduce: rank 0 fails after
  // its 1 s deadline, naming rank 1, and the communicator stays broken.
  auto second = dist::mpi_world();
  second->set_timeout(1);
  if (r == 0) {
    Tensor x = ones({4});
    CHECK_THROWS_WITH(second->all_reduce(x), Contains("timed out after 1 s") && Contains("waiting for rank 1"));
    CHECK_THROWS_WITH(second->barrier(), Contains("broken"));
  }
  world->barrier();  // the world communicator is unaffected
}

TEST_CASE("mpi: 2 processes at batch B equal 1 process at 2B, ZeRO-1 too, a 2-rank checkpoint resumes on 1 and 2",
          "[.][mpi]") {
  auto world = world_of_two(120);
  const int r = world->rank();
  const fs::path two = shared_dir(*world, "two"), zero = shared_dir(*world, "zero1"), res2 = shared_dir(*world, "res2");
  const fs::path ref_dir = temp_dir("mpi_ref_rank" + std::to_string(r));
  const fs::path res1 = temp_dir("mpi_res1_rank" + std::to_string(r));

  const Run ref = train_alone(ref_dir);  // every rank computes the reference itself
  const auto expected = params_of(*ref.task.model);

  const Run dp = train_ranks(world, two, false);
  CHECK(dp.result.steps == 9);
  CHECK(params_of(*dp.task.model) == expected);
  CHECK(dp.result.last_eval.loss == ref.result.last_eval.loss);
  if (r == 0) CHECK(metric_lines((two / "metrics.jsonl").string()) == metric_lines(ref.result.metrics));

  const Run z = train_ranks(world, zero, true);
  CHECK(params_of(*z.task.model) == expected);

  // Stopped after 4 steps by 2 ZeRO-1 ranks; continued by 2 plain ranks and,
  // on each rank separately, by 1 process with 2 micro-batches.
  const Run part = train_ranks(world, res2, true, 4);
  CHECK(part.result.interrupted);
  fs::create_directories(res1);
  fs::copy(res2 / "checkpoint.safetensors", res1 / "checkpoint.safetensors");
  fs::copy(res2 / "metrics.jsonl", res1 / "metrics.jsonl");
  world->barrier();  // both copies taken before the checkpoint is rewritten
  const Run cont2 = train_ranks(world, res2, false, 0, true);
  CHECK(cont2.result.steps == 9);
  CHECK(params_of(*cont2.task.model) == expected);
  const Run cont1 = train_alone(res1, true);
  CHECK(cont1.result.steps == 9);
  CHECK(params_of(*cont1.task.model) == expected);
  if (r == 0) CHECK(metric_lines((res2 / "metrics.jsonl").string()) == metric_lines(ref.result.metrics));
  CHECK(metric_lines((res1 / "metrics.jsonl").string()) == metric_lines(ref.result.metrics));

  world->barrier();
  if (r == 0)
    for (const auto& d : {two, zero, res2}) fs::remove_all(d);
  fs::remove_all(ref_dir);
  fs::remove_all(res1);
}

TEST_CASE("mpi: a rank killed mid-training ends the run, naming it", "[.][mpi-dies]") {
  auto world = world_of_two(20);
  const int r = world->rank();
  // One fixed directory (the killed run cannot clean up; the next one does).
  const fs::path d = fs::temp_directory_path() / "dimix_dist_mpi_dies";
  if (r == 0) fs::remove_all(d);
  world->barrier();
  app::TrainTask t = make_task(r, 2, 1, r == 1 ? 40 : -1, /*kill=*/true);
  app::TrainConfig c = make_config(d.string(), world, 1);
  // mpirun ends rank 0 when rank 1 is killed ("process rank 1 ... exited on
  // signal 9"); were it to survive, its collectives would time out naming rank 1.
  app::train(c, t);
  FAIL("rank " << r << " finished a run whose other rank was killed");
}
