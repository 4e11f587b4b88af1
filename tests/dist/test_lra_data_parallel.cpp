// train_lra data parallel: the LRA transformer (PAPERS.md 1.6) trained as
// train_lra does (its loader options, AdamW with eps 1e-6, OneCycle, the
// best validation model kept, then scored on the test split) on tiny ListOps
// and retrieval files. 2 ranks at batch B give the parameters, metrics and
// validation / test scores of 1 process at batch 2B with 2 micro-batches,
// bit for bit, on the threads backend (and under mpirun: "[mpi]"); a
// retrieval batch is sliced into shards with its second document; a 2-rank
// ZeRO-1 checkpoint resumes on 1 process to the uninterrupted bits.
//
// The ListOps runs train with every dropout on (p = 0.1): each shard draws
// its masks from its own stream, the thread's default generator for the
// shard (core/rng.h GeneratorScope), so in-process ranks do not share one.
//
// Sizes: global batch G = 8 (4 per rank), 44 training examples (5 batches
// an epoch with drop_last, so 7 steps cross an epoch end), 13 validation and
// 11 test examples (a short last evaluation batch, cut unevenly over ranks).
#include <catch2/catch.hpp>

#include <thread>

#include "apps/data_parallel_common.h"
#include "apps/lra_common.h"
#include "core/safetensors.h"
#include "data/lra_datasets.h"
#include "dist_test_util.h"
#include "models/serialize.h"
#include "tests/data/data_test_util.h"

using namespace dimix;
using namespace dimix::dist_test;

namespace {

constexpr int64_t kLRABatch = 8;

struct LRASets {
  std::shared_ptr<Dataset> train, val, test;
  LRAConfig config;
};

// ListOps rows in the release's layout, "( ( [MAX 3 ) 4 ) ] )" style, with
// their true values.
std::vector<uint8_t> listops_rows(int n, int salt) {
  static const char* ops[] = {"[MAX", "[MIN", "[SM"};
  std::string s = "Source\tTarget\r\n";
  for (int i = 0; i < n; ++i) {
    const int op = (i + salt) % 3, args = 2 + (i * 5 + salt) % 3;
    std::string tree = std::string("( ") + ops[op];
    int value = op == 1 ? 9 : 0;
    for (int a = 0; a < args; ++a) {
      const int v = (i * 7 + a * 3 + salt) % 10;
      value = op == 0 ? std::max(value, v) : op == 1 ? std::min(value, v) : (value + v) % 10;
      tree += " " + std::to_string(v) + " )";
    }
    s += tree + " ] )\t" + std::to_string(value) + "\r\n";
  }
  return std::vector<uint8_t>(s.begin(), s.end());
}

LRASets listops_sets(const fs::path& dir) {
  test::write_bytes((dir / "basic_train.tsv").string(), listops_rows(44, 1));
  test::write_bytes((dir / "basic_val.tsv").string(), listops_rows(13, 4));
  test::write_bytes((dir / "basic_test.tsv").string(), listops_rows(11, 9));
  LRASets s;
  for (const char* split : {"train", "val", "test"}) {
    auto d = load_lra_listops(dir.string(), split, {16, 16});
    (std::string(split) == "train" ? s.train : std::string(split) == "val" ? s.val : s.test) = d;
  }
  s.config.vocab = 32;
  s.config.max_len = 16;
  s.config.classes = 10;
  return s;
}

// AAN pairs: label 1 when the two documents start with the same letter.
std::vector<uint8_t> retrieval_rows(int n, int salt) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    std::string a, b;
    for (int k = 0; k < 3 + (i + salt) % 9; ++k) a += char('a' + (i * 3 + k * 5 + salt) % 7);
    for (int k = 0; k < 2 + (i * 2 + salt) % 11; ++k) b += char('a' + (i * 5 + k * 3 + 2 * salt) % 7);
    s += std::to_string(a[0] == b[0] ? 1 : 0) + "\tid" + std::to_string(i) + "\tid" + std::to_string(i + 1) + "\t" + a +
         "\t" + b + "\n";
  }
  return std::vector<uint8_t>(s.begin(), s.end());
}

LRASets retrieval_sets(const fs::path& dir) {
  test::write_bytes((dir / "new_aan_pairs.train.tsv").string(), retrieval_rows(44, 1));
  test::write_bytes((dir / "new_aan_pairs.eval.tsv").string(), retrieval_rows(13, 4));
  test::write_bytes((dir / "new_aan_pairs.test.tsv").string(), retrieval_rows(11, 9));
  LRASets s;
  s.train = load_lra_retrieval(dir.string(), "train", {12, 12});
  s.val = load_lra_retrieval(dir.string(), "val", {12, 12});
  s.test = load_lra_retrieval(dir.string(), "test", {12, 12});
  s.config.vocab = 257;
  s.config.max_len = 12;
  s.config.classes = 2;
  s.config.dual = true;
  return s;
}

// train_lra's task for `rank` of `world`; the model is built on the caller's
// thread (the initialisation generator is global).
app::TrainTask lra_task(const LRASets& s, int rank, int world, double dropout = 0.0) {
  LRAConfig c = s.config;
  c.dim = 8;
  c.hidden = 16;
  c.heads = 2;
  c.layers = 1;
  c.dropout = dropout;
  c.attn_dropout = dropout;
  init::seed(7);
  app::TrainTask t;
  t.model = std::make_shared<LRATransformer>(c);
  t.train = std::make_shared<DataLoader>(s.train, app::lra_loader_options(kLRABatch, true, 5, 1, rank, world));
  t.eval = std::make_shared<DataLoader>(s.val, app::lra_loader_options(kLRABatch, false, 5, 1, rank, world));
  t.metadata = {{"model", "lra-test"}, {"task", c.dual ? "retrieval" : "listops"}};
  return t;
}

// train_lra's configuration, shortened.
app::TrainConfig lra_train_config(const fs::path& dir, std::shared_ptr<dist::Communicator> comm, int micro_batches,
                                  bool zero1 = false) {
  app::TrainConfig c;
  c.out_dir = dir.string();
  c.steps = 7;
  c.optimizer = "adamw";
  c.lr = 1e-2;
  c.eps = 1e-6;
  c.schedule = "onecycle-linear";
  c.warmup = 2;
  c.clip = 0.5;
  c.seed = 5;
  c.eval_every = 3;
  c.log_every = 2;
  c.progress = false;
  c.item_name = "seq";
  c.save_best = true;
  c.comm = std::move(comm);
  c.micro_batches = micro_batches;
  c.zero1 = zero1;
  return c;
}

struct LRARun {
  app::TrainTask task;
  app::TrainResult result;
  app::EvalResult test;  // the best validation model on the test split, as train_lra scores it
  std::string error;
};

// After training, as train_lra: every rank loads best.safetensors and scores its part of the test split.
void score_test(LRARun& run, const LRASets& s, dist::Communicator* comm, int micro_batches) {
  if (run.result.interrupted) return;
  if (!run.result.best_checkpoint.empty()) load_module(*run.task.model, run.result.best_checkpoint);
  DataLoader test_loader(s.test, app::lra_loader_options(kLRABatch, false, 5, 1, comm ? comm->rank() : 0,
                                                         comm ? comm->world_size() : 1));
  run.test = app::evaluate(*run.task.model, test_loader, Device::cpu(), 0, comm, micro_batches);
}

// One process at the global batch in 2 micro-batches.
LRARun lra_single(const LRASets& s, const fs::path& dir, int64_t stop_after = 0, bool resume = false,
                  double dropout = 0.0) {
  LRARun run;
  run.task = lra_task(s, 0, 1, dropout);
  app::TrainConfig c = lra_train_config(dir, nullptr, 2);
  c.stop_after = stop_after;
  c.resume = resume;
  run.result = app::train(c, run.task);
  score_test(run, s, nullptr, 2);
  return run;
}

// 2 ranks on threads, each at half the global batch.
std::vector<LRARun> lra_threads(const LRASets& s, const fs::path& dir, bool zero1, int64_t stop_after = 0,
                                bool resume = false, double dropout = 0.0) {
  const int world = 2;
  auto comms = dist::thread_group(world);
  std::vector<LRARun> runs(world);
  for (int r = 0; r < world; ++r) runs[r].task = lra_task(s, r, world, dropout);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    app::TrainConfig c = lra_train_config(dir, comms[r], 1, zero1);
    c.stop_after = stop_after;
    c.resume = resume;
    comms[r].reset();  // the config holds the only reference: a rank that ends releases it
    threads.emplace_back([&runs, &s, r, c]() mutable {
      try {
        runs[r].result = app::train(c, runs[r].task);
        score_test(runs[r], s, c.comm.get(), 1);
      } catch (const Error& e) {
        runs[r].error = e.what();
      }
      c.comm.reset();
    });
  }
  for (auto& t : threads) t.join();
  return runs;
}

// The metrics lines without the throughput field (timing differs).
std::vector<std::string> lra_metric_lines(const fs::path& path) {
  std::vector<std::string> out;
  for (std::string line : metric_lines(path.string())) {
    const auto p = line.find(",\"seq_per_s\"");
    out.push_back(p == std::string::npos ? line : line.substr(0, p));
  }
  return out;
}

// The bit-identity of 2 ranks and 1 process with 2 micro-batches on `s`.
void check_two_ranks_equal_one(const LRASets& s, const std::string& name, double dropout) {
  const fs::path one = temp_dir(name + "_one"), two = temp_dir(name + "_two");
  const LRARun ref = lra_single(s, one, 0, false, dropout);
  REQUIRE(ref.result.steps == 7);
  const auto runs = lra_threads(s, two, false, 0, false, dropout);
  REQUIRE(runs[0].error == "");
  REQUIRE(runs[1].error == "");
  const auto p = params_of(*ref.task.model);
  // The best model was reloaded for the test split: compare the final parameters through the checkpoint.
  const auto final_one = load_safetensors((one / "checkpoint.safetensors").string());
  const auto final_two = load_safetensors((two / "checkpoint.safetensors").string());
  int64_t model_tensors = 0;
  REQUIRE(final_one.tensors.size() == final_two.tensors.size());
  for (size_t i = 0; i < final_one.tensors.size(); ++i) {
    CHECK(final_one.tensors[i].first == final_two.tensors[i].first);
    CHECK(final_one.tensors[i].second.to_vector<float>() == final_two.tensors[i].second.to_vector<float>());
    model_tensors += final_one.tensors[i].first.rfind("model.", 0) == 0;
  }
  CHECK(model_tensors == static_cast<int64_t>(ref.task.model->named_parameters().size()));
  CHECK(final_two.metadata.at("extra.world_size") == "2");
  CHECK(final_two.metadata.at("extra.global_batch") == "8");
  CHECK(final_one.metadata.at("extra.micro_batches") == "2");
  // Both ranks hold the best model, the same bits as the single process's.
  CHECK(params_of(*runs[0].task.model) == p);
  CHECK(params_of(*runs[1].task.model) == p);
  init::seed(7);
  LRATransformer initial(std::dynamic_pointer_cast<LRATransformer>(ref.task.model)->config);
  CHECK(params_of(initial) != p);  // it trained
  // Rank 0 alone wrote the metrics: the same lines, none twice.
  const auto lines = lra_metric_lines(one / "metrics.jsonl");
  REQUIRE(lines.size() == 6);  // train at steps 2, 4, 6, 7; eval at 3, 6
  CHECK(lra_metric_lines(two / "metrics.jsonl") == lines);
  CHECK(runs[0].result.best_step == ref.result.best_step);
  CHECK(runs[1].result.best_accuracy == ref.result.best_accuracy);
  CHECK(runs[1].result.last_eval.loss == ref.result.last_eval.loss);
  CHECK(ref.result.last_eval.examples == 13);
  CHECK(runs[0].result.last_eval.examples == 13);
  // The test split, scored by every rank's part.
  CHECK(ref.test.examples == 11);
  CHECK(runs[0].test.examples == 11);
  CHECK(runs[0].test.loss == ref.test.loss);
  CHECK(runs[1].test.accuracy == ref.test.accuracy);
  CHECK(std::isfinite(ref.test.loss));
  fs::remove_all(one);
  fs::remove_all(two);
}

}  // namespace

TEST_CASE("train_lra data parallel: a retrieval batch is sharded with its second document", "[dist][lra]") {
  const fs::path dir = temp_dir("lra_slice");
  fs::create_directories(dir);
  const LRASets s = retrieval_sets(dir);
  DataLoader whole(s.train, app::lra_loader_options(kLRABatch, true, 5, 0, 0, 1));
  DataLoader rank1(s.train, app::lra_loader_options(kLRABatch, true, 5, 0, 1, 2));
  const Batch b = whole.build_batch(2, 3);
  const Batch r1 = rank1.build_batch(2, 3);
  REQUIRE(b.inputs2.defined());
  REQUIRE(b.inputs2.sizes() == Shape{8, 12});
  auto rows = [](const Tensor& t, int64_t begin, int64_t end) {
    const auto v = t.contiguous_raw().to_vector<int64_t>();
    const int64_t S = t.size(1);
    return std::vector<int64_t>(v.begin() + begin * S, v.begin() + end * S);
  };
  // Rank 1 of 2 reads rows 4..7 of the global batch, both documents.
  CHECK(r1.inputs2.sizes() == Shape{4, 12});
  CHECK(rows(r1.inputs, 0, 4) == rows(b.inputs, 4, 8));
  CHECK(rows(r1.inputs2, 0, 4) == rows(b.inputs2, 4, 8));
  const auto labels = b.labels.to_vector<int64_t>();
  CHECK(r1.labels.to_vector<int64_t>() == std::vector<int64_t>(labels.begin() + 4, labels.end()));
  // The second micro-batch of the whole batch is the same shard.
  const Batch m1 = app::slice_batch(b, 4, 8);
  CHECK(m1.inputs2.sizes() == Shape{4, 12});
  CHECK(rows(m1.inputs2, 0, 4) == rows(r1.inputs2, 0, 4));
  CHECK(rows(m1.inputs, 0, 4) == rows(r1.inputs, 0, 4));
  CHECK(m1.indices == r1.indices);
  // The documents differ, so a slice that dropped or misplaced input2 could not pass.
  CHECK(rows(b.inputs2, 4, 8) != rows(b.inputs, 4, 8));
  CHECK(rows(b.inputs2, 4, 8) != rows(b.inputs2, 0, 4));
  fs::remove_all(dir);
}

TEST_CASE("train_lra data parallel: ListOps on 2 ranks at batch B equals 1 process at 2B in 2 micro-batches",
          "[dist][dp][lra]") {
  const fs::path dir = temp_dir("lra_listops_data");
  fs::create_directories(dir);
  check_two_ranks_equal_one(listops_sets(dir), "lra_listops", 0.1);
  fs::remove_all(dir);
}

TEST_CASE("train_lra data parallel: retrieval (two documents) on 2 ranks equals 1 process in 2 micro-batches",
          "[dist][dp][lra]") {
  const fs::path dir = temp_dir("lra_retrieval_data");
  fs::create_directories(dir);
  check_two_ranks_equal_one(retrieval_sets(dir), "lra_retrieval", 0.0);
  fs::remove_all(dir);
}

TEST_CASE("train_lra data parallel: a 2-rank ZeRO-1 checkpoint resumes on 1 process to the same bits",
          "[dist][dp][lra][resume]") {
  const fs::path data = temp_dir("lra_resume_data"), full = temp_dir("lra_full"), two = temp_dir("lra_stop2"),
                 one = temp_dir("lra_resume1");
  fs::create_directories(data);
  const LRASets s = listops_sets(data);
  const auto reference = lra_threads(s, full, false);
  REQUIRE(reference[0].error == "");
  const auto expected = load_safetensors((full / "checkpoint.safetensors").string());

  const auto first = lra_threads(s, two, true, 4);  // stopped after step 4: mid-epoch, after an evaluation
  REQUIRE(first[0].error == "");
  REQUIRE(first[0].result.interrupted);
  CHECK(first[0].result.steps == 4);
  fs::create_directories(one);
  for (const char* file : {"checkpoint.safetensors", "metrics.jsonl", "best.safetensors"})
    fs::copy(two / file, one / file);

  const LRARun alone = lra_single(s, one, 0, true);
  CHECK(alone.result.steps == 7);
  const auto resumed = load_safetensors((one / "checkpoint.safetensors").string());
  REQUIRE(resumed.tensors.size() == expected.tensors.size());
  for (size_t i = 0; i < resumed.tensors.size(); ++i) {
    CHECK(resumed.tensors[i].first == expected.tensors[i].first);
    CHECK(resumed.tensors[i].second.to_vector<float>() == expected.tensors[i].second.to_vector<float>());
  }
  CHECK(lra_metric_lines(one / "metrics.jsonl") == lra_metric_lines(full / "metrics.jsonl"));
  CHECK(alone.result.best_step == reference[0].result.best_step);
  CHECK(alone.test.loss == reference[0].test.loss);
  for (const auto& d : {data, full, two, one}) fs::remove_all(d);
}

TEST_CASE("mpi: train_lra's ListOps run on 2 processes equals 1 process in 2 micro-batches", "[.][mpi]") {
  auto world = dist::mpi_world();
  REQUIRE(world->world_size() == 2);
  world->set_timeout(60);
  // Each rank its own data and reference directories; the 2-rank run's is rank 0's pid.
  const fs::path data = temp_dir("lra_mpi_data_r" + std::to_string(world->rank()));
  const fs::path alone_dir = temp_dir("lra_mpi_alone_r" + std::to_string(world->rank()));
  fs::create_directories(data);
  const LRASets s = listops_sets(data);
  const LRARun ref = lra_single(s, alone_dir, 0, false, 0.1);
  {  // the dropout masks matter: without them training ends elsewhere
    const fs::path off = temp_dir("lra_mpi_nodrop_r" + std::to_string(world->rank()));
    CHECK(params_of(*lra_single(s, off).task.model) != params_of(*ref.task.model));
    fs::remove_all(off);
  }
  Tensor id = from_vector<int64_t>({static_cast<int64_t>(::getpid())}, {1});
  world->broadcast(id, 0);
  const fs::path shared = fs::temp_directory_path() / ("dimix_dist_mpi_lra_" + std::to_string(id.item<int64_t>()));
  if (world->rank() == 0) fs::remove_all(shared);
  world->barrier();

  LRARun run;
  run.task = lra_task(s, world->rank(), 2, 0.1);
  run.result = app::train(lra_train_config(shared, world, 1), run.task);
  score_test(run, s, world.get(), 1);
  CHECK(params_of(*run.task.model) == params_of(*ref.task.model));
  CHECK(run.result.best_step == ref.result.best_step);
  CHECK(run.test.loss == ref.test.loss);
  CHECK(run.test.examples == 11);
  world->barrier();  // rank 0 reads the 2-rank metrics after every rank is done
  if (world->rank() == 0) {
    CHECK(lra_metric_lines(shared / "metrics.jsonl") == lra_metric_lines(alone_dir / "metrics.jsonl"));
    fs::remove_all(shared);
  }
  fs::remove_all(data);
  fs::remove_all(alone_dir);
}
