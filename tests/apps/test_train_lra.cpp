// train_lra's pieces: the per-task defaults (PAPERS.md 1.6), the Path-X
// curriculum's 2x2 position-table upsampling and initialisation from a
// smaller stage's checkpoint or best model, and the training loop's best-model
// hook (best.safetensors holds the model of the best evaluation: reloading it
// reproduces that accuracy) on a tiny ListOps file; the loaders' share of the
// global batch per rank (the data-parallel runs are in tests/dist).
#include <catch2/catch.hpp>

#include <filesystem>

#include "apps/lra_common.h"
#include "apps/train_common.h"
#include "core/safetensors.h"
#include "data/lra_datasets.h"
#include "models/init.h"
#include "models/serialize.h"
#include "tests/data/data_test_util.h"

using namespace dimix;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

LRAConfig tiny_config(int64_t max_len) {
  LRAConfig c;
  c.vocab = 32;
  c.max_len = max_len;
  c.dim = 8;
  c.hidden = 16;
  c.heads = 2;
  c.layers = 1;
  c.classes = 10;
  return c;
}

}  // namespace

TEST_CASE("train_lra: task defaults follow PAPERS.md 1.6", "[apps][lra]") {
  const auto l = app::lra_task_defaults("listops");
  CHECK(l.batch == 32);
  CHECK(l.warmup == 1000);
  CHECK(l.steps == 5000);
  CHECK(l.eval_every == 50);
  CHECK(l.eval_batches == 62);
  CHECK(l.radix == 64);
  CHECK(app::lra_task_defaults("image").batch == 256);
  CHECK(app::lra_task_defaults("retrieval").warmup == 800);
  CHECK(app::lra_task_defaults("pathfinder32").steps == 62400);
  CHECK(app::lra_task_defaults("pathfinder128").radix == 128);
  CHECK_THROWS_WITH(app::lra_task_defaults("cifar"), Contains("no defaults"));
}

TEST_CASE("train_lra: position tables upsample 2x2, nearest neighbour", "[apps][lra]") {
  // 2x2 grid, D = 3: row r holds 10 r + c.
  std::vector<float> v;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) v.push_back(float(10 * r + c));
  const Tensor up = app::upsample_position_table(from_vector(v, {4, 3}));
  REQUIRE(up.sizes() == Shape{16, 3});
  const auto u = up.to_vector<float>();
  for (int Y = 0; Y < 4; ++Y)
    for (int X = 0; X < 4; ++X)
      for (int c = 0; c < 3; ++c) CHECK(u[(Y * 4 + X) * 3 + c] == float(10 * ((Y / 2) * 2 + X / 2) + c));
  // Rows 0, 1 (grid row 0) = old 0, 0, 1, 1; rows 4, 5 (grid row 1) the same.
  CHECK(u[1 * 3] == 0.0f);
  CHECK(u[2 * 3] == 10.0f);
  CHECK(u[5 * 3] == 0.0f);
  CHECK(u[8 * 3] == 20.0f);
  CHECK_THROWS_WITH(app::upsample_position_table(zeros({5, 2})), Contains("not a square"));
}

TEST_CASE("train_lra: --init-from a smaller stage upsamples the position table", "[apps][lra]") {
  test::TempDir dir;
  init::seed(1);
  LRATransformer small(tiny_config(16));  // a 4x4 "image"
  save_module(small, dir.file("best.safetensors"));
  save_checkpoint(dir.file("checkpoint.safetensors"), small, nullptr);
  for (const std::string file : {"best.safetensors", "checkpoint.safetensors"}) {
    init::seed(2);
    LRATransformer big(tiny_config(64));  // 8x8
    CHECK(app::init_lra_from(big, dir.file(file)));
    CHECK(big.position->weight.to_vector<float>() ==
          app::upsample_position_table(small.position->weight).to_vector<float>());
    CHECK(big.word->weight.to_vector<float>() == small.word->weight.to_vector<float>());
    CHECK(big.head->parameters().front().to_vector<float>() == small.head->parameters().front().to_vector<float>());
  }
  // Same size: a plain copy.
  LRATransformer same(tiny_config(16));
  CHECK_FALSE(app::init_lra_from(same, dir.file("best.safetensors")));
  CHECK(same.position->weight.to_vector<float>() == small.position->weight.to_vector<float>());
  // 16 -> 32 positions is not the curriculum's 2x2 step.
  LRATransformer odd(tiny_config(32));
  CHECK_THROWS_WITH(app::init_lra_from(odd, dir.file("best.safetensors")),
                    Contains("best.safetensors") && Contains("cannot initialise"));
  save_safetensors(dir.file("other.safetensors"), {{"conv.weight", zeros({2, 2})}});
  CHECK_THROWS_WITH(app::init_lra_from(same, dir.file("other.safetensors")), Contains("holds none"));
}

TEST_CASE("train_lra: the best evaluation's model is kept and reproduces its accuracy", "[apps][lra]") {
  test::TempDir dir;
  // A tiny ListOps task: [MAX a b ] with its value.
  auto rows = [](int n, int salt) {
    std::string s = "Source\tTarget\r\n";
    for (int i = 0; i < n; ++i) {
      const int a = (i * 7 + salt) % 10, b = (i * 3 + 2 * salt) % 10;
      s += "( ( ( [MAX " + std::to_string(a) + " ) " + std::to_string(b) + " ) ] )\t" + std::to_string(std::max(a, b)) +
           "\r\n";
    }
    return std::vector<uint8_t>(s.begin(), s.end());
  };
  test::write_bytes(dir.file("data/basic_train.tsv"), rows(48, 1));
  test::write_bytes(dir.file("data/basic_val.tsv"), rows(16, 5));
  auto train_set = load_lra_listops(dir.file("data"), "train", {16, 16});
  auto val_set = load_lra_listops(dir.file("data"), "val", {16, 16});
  init::seed(3);
  auto model = std::make_shared<LRATransformer>(tiny_config(16));
  DataLoaderOptions to;
  to.batch_size = 8;
  to.drop_last = true;
  to.seed = 4;
  DataLoaderOptions eo;
  eo.batch_size = 8;
  eo.shuffle = false;
  app::TrainTask task;
  task.model = model;
  task.train = std::make_shared<DataLoader>(train_set, to);
  task.eval = std::make_shared<DataLoader>(val_set, eo);
  app::TrainConfig c;
  c.out_dir = dir.file("run");
  c.steps = 12;
  c.lr = 3e-2;
  c.schedule = "onecycle-linear";
  c.warmup = 3;
  c.eval_every = 3;
  c.progress = false;
  c.save_best = true;
  const app::TrainResult r = app::train(c, task);
  REQUIRE(r.best_step > 0);
  CHECK(r.best_step % 3 == 0);
  CHECK(r.best_checkpoint == dir.file("run/best.safetensors"));
  const auto file = load_safetensors(r.best_checkpoint);
  CHECK(file.metadata.at("step") == std::to_string(r.best_step));
  CHECK(std::stod(file.metadata.at("accuracy")) == Approx(r.best_accuracy));
  CHECK(load_safetensors(r.checkpoint).metadata.at("extra.best_step") == std::to_string(r.best_step));
  LRATransformer fresh(tiny_config(16));
  load_module(fresh, r.best_checkpoint);
  DataLoader again(val_set, eo);
  CHECK(app::evaluate(fresh, again, Device::cpu()).accuracy == Approx(r.best_accuracy));
}

TEST_CASE("train_lra loaders: the global batch is shared by the ranks, evaluation included", "[apps][lra]") {
  const DataLoaderOptions t = app::lra_loader_options(32, true, 9, 2, 1, 4);
  CHECK(t.batch_size == 8);
  CHECK(t.rank == 1);
  CHECK(t.world_size == 4);
  CHECK(t.shuffle);
  CHECK(t.drop_last);
  CHECK(t.seed == 9);
  CHECK(t.num_workers == 2);
  const DataLoaderOptions e = app::lra_loader_options(32, false, 9, 2, 3, 4);
  CHECK(e.batch_size == 8);
  CHECK_FALSE(e.shuffle);
  CHECK_FALSE(e.drop_last);
  CHECK(e.rank == 3);
  CHECK_THROWS_WITH(app::lra_loader_options(30, true, 0, 0, 0, 4),
                    Contains("--batch-size 30") && Contains("multiple of 4"));
  CHECK_THROWS_WITH(app::lra_loader_options(32, true, 0, 0, 4, 4), Contains("rank 4 of 4"));
}
