// Helpers of the data-parallel tests: a small butterfly mixer on synthetic
// 8x8 images whose loaders are built for a rank of a world, the training
// configuration, and the run's parameters and metrics for comparison.
//
// The training set has 89 examples and the global batch 16, so the last
// batch of every epoch is a short one of 9, cut 5 + 4 over 2 ranks (or 2
// micro-batches): the uneven path is exercised too.
#pragma once
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/tiny_mixer.h"
#include "apps/train_common.h"
#include "data/image_dataset.h"
#include "data/transforms.h"
#include "dist/communicator.h"
#include "models/init.h"

namespace dimix::dist_test {

namespace fs = std::filesystem;

constexpr int64_t kGlobalBatch = 16;

// A dataset that fails (throws, or kills its process) when example `fail_at`
// is read: a rank that dies mid-training.
class FailingDataset : public Dataset {
 public:
  FailingDataset(std::shared_ptr<const Dataset> inner, int64_t fail_at, bool kill)
      : inner_(std::move(inner)), fail_at_(fail_at), kill_(kill) {}
  int64_t size() const override { return inner_->size(); }
  Example get(int64_t index) const override {
    if (reads_++ >= fail_at_) {
      if (kill_) std::raise(SIGKILL);
      DIMIX_FAIL("FailingDataset: example ", index, " is unreadable");
    }
    return inner_->get(index);
  }
  int64_t num_classes() const override { return inner_->num_classes(); }
  std::string name() const override { return "failing"; }

 private:
  std::shared_ptr<const Dataset> inner_;
  int64_t fail_at_;
  bool kill_;
  mutable std::atomic<int64_t> reads_{0};
};

// fail_at >= 0: the training set of this rank fails after that many reads.
inline app::TrainTask make_task(int rank, int world, int micro_batches, int64_t fail_at = -1, bool kill = false,
                                int64_t global_batch = kGlobalBatch) {
  SyntheticImageOptions so;
  so.size = 89;
  so.channels = 1;
  so.height = so.width = 8;
  so.num_classes = 3;
  so.seed = 11;
  std::shared_ptr<const Dataset> train_set = std::make_shared<SyntheticImageDataset>(so);
  if (fail_at >= 0) train_set = std::make_shared<FailingDataset>(train_set, fail_at, kill);
  so.size = 30;
  so.stream = 1;
  auto test_set = std::make_shared<SyntheticImageDataset>(so);
  init::seed(3);
  app::TrainTask t;
  t.model = testing::tiny_mixer();
  auto tf = std::make_shared<Compose>();
  tf->add<ToFloat>();
  DataLoaderOptions o;
  o.batch_size = global_batch / world;
  o.drop_last = false;
  o.seed = 5;
  o.num_workers = 1;
  o.transform = tf;
  o.rank = rank;
  o.world_size = world;
  t.train = std::make_shared<DataLoader>(train_set, o);
  o.batch_size = 4 * micro_batches;  // 4 per shard
  o.shuffle = false;
  t.eval = std::make_shared<DataLoader>(test_set, o);
  t.metadata = {{"model", "dist-test-mixer"}};
  return t;
}

inline app::TrainConfig make_config(const std::string& dir, std::shared_ptr<dist::Communicator> comm,
                                    int micro_batches, bool zero1 = false) {
  app::TrainConfig c;
  c.out_dir = dir;
  c.steps = 9;  // 6 batches an epoch: crosses an epoch end and its short batch
  c.lr = 3e-3;
  c.weight_decay = 0.01;
  c.clip = 0.5;  // small enough to clip: the global norm path is exercised
  c.schedule = "cosine";
  c.log_every = 2;
  c.eval_every = 4;
  c.progress = false;
  c.seed = 5;
  c.comm = std::move(comm);
  c.micro_batches = micro_batches;
  c.zero1 = zero1;
  return c;
}

inline std::vector<float> params_of(const Network& net) {
  std::vector<float> out;
  for (const auto& [n, p] : net.named_parameters())
    for (float v : p.to_vector<float>()) out.push_back(v);
  return out;
}

// The metrics lines without the throughput field (timing differs).
inline std::vector<std::string> metric_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find(",\"img_per_s\"");
    out.push_back(p == std::string::npos ? line : line.substr(0, p));
  }
  return out;
}

inline fs::path temp_dir(const std::string& name, int64_t id = ::getpid()) {
  const fs::path d = fs::temp_directory_path() / ("dimix_dist_" + name + "_" + std::to_string(id));
  fs::remove_all(d);
  return d;
}

}  // namespace dimix::dist_test
