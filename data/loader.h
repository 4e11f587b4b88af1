// DataLoader: turns a Dataset into batches. Per epoch it shuffles with a
// Philox permutation keyed by (seed, epoch), cuts global batches of
// batch_size * world_size positions, gives rank r its slice of each, applies
// the Compose transform to every example (keyed by (seed, epoch, index)) and
// stacks the results. Batches are built ahead on worker threads into a
// bounded window and handed out in order; every batch is a pure function of
// (dataset, options, epoch, batch index), so any worker count gives the same
// bits, and a run resumes exactly from (epoch, batch index).
//
// Batch: inputs [B, ...example shape] (f32 [B, C, H, W] after to_float, i64
// [B, S] for token datasets), inputs2 likewise when examples carry a second
// input, labels i64 [B], and the dataset indices.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace dimix {

struct Batch {
  Tensor inputs;
  Tensor inputs2;  // undefined unless the examples have input2
  Tensor labels;   // i64 [B]
  std::vector<int64_t> indices;
  int64_t epoch = 0;
  int64_t batch_index = 0;  // position within the epoch
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct DataLoaderOptions {
  int64_t batch_size = 32;  // per rank
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;        // shuffle and augmentation
  // 0: batches are built inside next() on the caller's thread. Examples are
  // not spread over OpenMP threads: per-image work is a few microseconds, and
  // on a busy 2-core machine an OpenMP team per batch measured 30-90x slower
  // than one serial thread; worker threads overlap loading with training instead.
  int num_workers = 0;
  int prefetch = 2;         // batches built ahead, per worker
  int rank = 0;
  int world_size = 1;
  std::shared_ptr<const Compose> transform;  // null: inputs as the dataset gives them
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  ~DataLoader();  // stops and joins the workers, also mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts epoch `epoch` at batch `start_batch` (resume), dropping anything
  // prefetched. A fresh loader is at epoch 0, batch 0.
  void set_epoch(int64_t epoch, int64_t start_batch = 0);
  // Skips k batches of the current epoch without building them.
  void skip_batches(int64_t k);
  // The next batch of this rank, or nullopt at the end of the epoch (then
  // call set_epoch for the next one). An error while building a batch (on
  // any thread) is rethrown here as a dimix::Error when that batch is due.
  std::optional<Batch> next();

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }  // index of the batch next() returns
  int64_t num_batches() const;                    // per epoch, for this rank (the same on every rank)
  int64_t global_batch_size() const { return options_.batch_size * options_.world_size; }
  const DataLoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }
  // The order in which an epoch visits the dataset (identity without shuffle).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Batch `batch_index` of `epoch` for this rank, built on the caller's thread.
  Batch build_batch(int64_t epoch, int64_t batch_index) const;

 private:
  void start_workers();
  void stop_workers();
  void worker_loop();
  // This rank's [begin, end) positions in the epoch order for a batch.
  std::pair<int64_t, int64_t> rank_range(int64_t batch_index) const;
  Batch collate(int64_t epoch, int64_t batch_index, const std::vector<int64_t>& order) const;

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  int64_t epoch_ = 0, position_ = 0;
  std::vector<int64_t> order_;  // epoch order of epoch_; fixed while workers run
  bool order_ready_ = false;

  // Prefetch state, guarded by mu_.
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> workers_;
  std::map<int64_t, Slot> ready_;
  int64_t next_claim_ = 0;  // next batch index a worker takes
  bool stop_ = false;
};

}  // namespace dimix
