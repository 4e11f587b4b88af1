// The training loop: exact resume, seed determinism, NaN handling, metrics
// and plot output, on a small mixer and synthetic data.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/tiny_mixer.h"
#include "apps/app_common.h"
#include "apps/train_common.h"
#include "data/image_dataset.h"
#include "data/transforms.h"
#include "models/init.h"
#include "core/safetensors.h"
#include "models/serialize.h"

using namespace dimix;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// `seed` drives the data order; `init_seed` the model's initial weights.
app::TrainTask make_task(uint64_t seed, uint64_t init_seed = 0) {
  SyntheticImageOptions so;
  so.size = 96;
  so.channels = 1;
  so.height = so.width = 8;
  so.num_classes = 3;
  so.seed = 11;
  auto train_set = std::make_shared<SyntheticImageDataset>(so);
  so.size = 32;
  so.stream = 1;
  auto test_set = std::make_shared<SyntheticImageDataset>(so);
  init::seed(init_seed ? init_seed : seed);
  app::TrainTask t;
  t.model = testing::tiny_mixer();
  auto tf = std::make_shared<Compose>();
  tf->add<ToFloat>();
  DataLoaderOptions o;
  o.batch_size = 16;
  o.drop_last = true;
  o.seed = seed;
  o.num_workers = 1;
  o.transform = tf;
  t.train = std::make_shared<DataLoader>(train_set, o);
  o.shuffle = false;
  o.drop_last = false;
  t.eval = std::make_shared<DataLoader>(test_set, o);
  t.metadata = {{"model", "test-mixer"}};
  return t;
}

app::TrainConfig make_config(const std::string& dir) {
  app::TrainConfig c;
  c.out_dir = dir;
  c.epochs = 3;  // 6 batches an epoch -> 18 steps
  c.lr = 3e-3;
  c.weight_decay = 0.01;
  c.schedule = "cosine";
  c.log_every = 4;
  c.progress = false;
  c.seed = 5;
  return c;
}

// The metrics lines without the throughput field (timing differs run to run).
std::vector<std::string> metric_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find(",\"img_per_s\"");
    out.push_back(p == std::string::npos ? line : line.substr(0, p));
  }
  return out;
}

std::vector<float> params_of(const Network& net) {
  std::vector<float> out;
  for (const auto& [n, p] : net.named_parameters())
    for (float v : p.to_vector<float>()) out.push_back(v);
  return out;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("dimix_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

}  // namespace

TEST_CASE("training: a stopped and resumed run equals the uninterrupted run, step for step", "[apps][train][resume]") {
  const fs::path a = temp_dir("full"), b = temp_dir("resumed");
  auto ta = make_task(5);
  const auto ra = app::train(make_config(a.string()), ta);
  CHECK(ra.steps == 18);
  CHECK_FALSE(ra.interrupted);

  auto tb = make_task(5);
  auto cb = make_config(b.string());
  cb.stop_after = 7;  // mid-epoch, mid log interval
  const auto rb1 = app::train(cb, tb);
  CHECK(rb1.interrupted);
  CHECK(rb1.steps == 7);
  auto tb2 = make_task(5, 99);  // a fresh process: different init, all state must come from the checkpoint
  cb.stop_after = 0;
  cb.resume = true;
  const auto rb2 = app::train(cb, tb2);
  CHECK(rb2.steps == 18);

  const auto la = metric_lines(ra.metrics), lb = metric_lines(rb2.metrics);
  REQUIRE(la.size() >= 6);
  CHECK(la == lb);
  CHECK(params_of(*ta.model) == params_of(*tb2.model));
  CHECK(fs::exists(ra.plot));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("training: the same seed gives bit-identical results", "[apps][train]") {
  const fs::path a = temp_dir("seed_a"), b = temp_dir("seed_b");
  auto ta = make_task(5), tb = make_task(5);
  auto ca = make_config(a.string()), cb = make_config(b.string());
  ca.epochs = cb.epochs = 1;
  app::train(ca, ta);
  app::train(cb, tb);
  CHECK(params_of(*ta.model) == params_of(*tb.model));
  CHECK(metric_lines((a / "metrics.jsonl").string()) == metric_lines((b / "metrics.jsonl").string()));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("training: the loss falls and the synthetic task is learned", "[apps][train]") {
  const fs::path d = temp_dir("learn");
  auto t = make_task(1);
  auto c = make_config(d.string());
  c.epochs = 8;
  const auto r = app::train(c, t);
  CHECK(r.last_eval.accuracy > 0.8);
  fs::remove_all(d);
}

TEST_CASE("training: a NaN loss stops with a clear error and keeps the last good checkpoint", "[apps][train]") {
  const fs::path d = temp_dir("nan");
  auto t = make_task(2);
  auto c = make_config(d.string());
  c.epochs = 1;
  app::train(c, t);  // a good checkpoint
  c.epochs = 3;
  c.resume = true;
  c.lr = 1e30;  // diverges
  auto t2 = make_task(2);
  CHECK_THROWS_WITH(app::train(c, t2), Contains("loss became") && Contains("checkpoint.safetensors"));
  // The checkpoint on disk is still the last good one: step 6, finite weights.
  const auto ck = load_safetensors((d / "checkpoint.safetensors").string());
  REQUIRE(ck.metadata.count("extra.step") == 1);
  CHECK(ck.metadata.at("extra.step") == "6");
  for (const auto& [n, t] : ck.tensors)
    for (double v : t.to_vector<double>()) REQUIRE(std::isfinite(v));
  fs::remove_all(d);
}

TEST_CASE("training: resume checks the checkpoint belongs to this run", "[apps][train]") {
  const fs::path d = temp_dir("mismatch");
  auto t = make_task(2);
  auto c = make_config(d.string());
  c.epochs = 1;
  app::train(c, t);
  auto t2 = make_task(2);
  t2.metadata["model"] = "another-model";
  c.resume = true;
  CHECK_THROWS_WITH(app::train(c, t2), Contains("model") && Contains("another-model"));
  auto t3 = make_task(3);
  t3.metadata = t.metadata;
  CHECK_THROWS_WITH(app::train(c, t3), Contains("data seed 2") && Contains("uses 3"));
  c.out_dir = (d / "nothing").string();
  CHECK_THROWS_WITH(app::train(c, t2), Contains("no checkpoint"));
  fs::remove_all(d);
}

TEST_CASE("flags: unknown flags and bad values are one-line errors", "[apps]") {
  app::Flags f("prog", "test");
  f.add("lr", "0.1", "learning rate");
  f.add_bool("resume", "resume");
  const char* bad1[] = {"prog", "--nope", "1"};
  CHECK_THROWS_WITH(f.parse(3, const_cast<char**>(bad1)), Contains("unknown flag --nope"));
  const char* bad2[] = {"prog", "--lr", "fast"};
  app::Flags g("prog", "test");
  g.add("lr", "0.1", "learning rate");
  g.add("steps", "0", "steps");
  // numeric flags are checked while parsing, even if never read
  CHECK_THROWS_WITH(g.parse(3, const_cast<char**>(bad2)), Contains("--lr expects a number") && Contains("fast"));
  const char* bad3[] = {"prog", "--steps", "1.5"};
  app::Flags g3("prog", "test");
  g3.add("steps", "0", "steps");
  REQUIRE(g3.parse(3, const_cast<char**>(bad3)));
  CHECK_THROWS_WITH(g3.integer("steps"), Contains("--steps expects an integer"));
  const char* ok[] = {"prog", "--lr=0.5", "--resume"};
  app::Flags h("prog", "test");
  h.add("lr", "0.1", "learning rate");
  h.add_bool("resume", "resume");
  REQUIRE(h.parse(3, const_cast<char**>(ok)));
  CHECK(h.real("lr") == 0.5);
  CHECK(h.flag("resume"));
  CHECK(h.help().find("--lr") != std::string::npos);
}
