// DataLoader: order, shuffling, drop_last counts, bit-identical batches for
// any worker count, exact resume mid-epoch, rank sharding of global batches,
// worker errors reaching the consumer, and shutdown mid-epoch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>
#include <stdexcept>

#include "data/image_dataset.h"
#include "data/loader.h"

using Catch::Matchers::Contains;
using namespace dimix;

namespace {

// Example i: f32 [2] = {i, 10 i}, label i mod 7; get() of `bad_index`
// throws a dimix::Error (or a std::runtime_error when `std_error`).
class CountingDataset final : public Dataset {
 public:
  explicit CountingDataset(int64_t n, int64_t bad_index = -1, bool std_error = false)
      : n_(n), bad_(bad_index), std_error_(std_error) {}
  int64_t size() const override { return n_; }
  Example get(int64_t i) const override {
    if (i == bad_) {
      if (std_error_) throw std::runtime_error("disk on fire");
      DIMIX_FAIL("counting: file 'fake.bin' record ", i, " is corrupt");
    }
    Example ex;
    ex.input = from_vector<float>({static_cast<float>(i), static_cast<float>(10 * i)}, {2});
    ex.label = i % 7;
    return ex;
  }
  int64_t num_classes() const override { return 7; }
  std::string name() const override { return "counting"; }

 private:
  int64_t n_, bad_;
  bool std_error_;
};

std::shared_ptr<const Dataset> synthetic_cifar(int64_t n) {
  SyntheticImageOptions o;
  o.size = n;
  o.seed = 3;
  return std::make_shared<SyntheticImageDataset>(o);
}

std::shared_ptr<const Compose> cifar_augment() {
  auto pipe = std::make_shared<Compose>();
  pipe->add<RandomCrop>(32, 4).add<RandomHorizontalFlip>().add<ToFloat>().add<Normalize>(
      std::vector<double>{0.49, 0.48, 0.45}, std::vector<double>{0.25, 0.24, 0.26});
  return pipe;
}

// Every batch of one epoch, as raw bytes + labels + indices.
struct Seen {
  std::vector<std::vector<uint8_t>> inputs;
  std::vector<std::vector<int64_t>> labels, indices;
  bool operator==(const Seen&) const = default;
};

void record(Seen& s, const Batch& b) {
  const auto* p = static_cast<const uint8_t*>(b.inputs.raw_data());
  s.inputs.emplace_back(p, p + b.inputs.numel() * dtype_size(b.inputs.dtype()));
  s.labels.push_back(b.labels.to_vector<int64_t>());
  s.indices.push_back(b.indices);
}

Seen run_epoch(DataLoader& loader, int64_t epoch, int64_t start = 0) {
  loader.set_epoch(epoch, start);
  Seen s;
  while (auto b = loader.next()) record(s, *b);
  return s;
}

}  // namespace

TEST_CASE("loader: unshuffled batches in dataset order, drop_last counts", "[data]") {
  auto ds = std::make_shared<CountingDataset>(10);
  DataLoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  DataLoader keep(ds, o);
  CHECK(keep.num_batches() == 4);
  std::vector<int64_t> sizes;
  int64_t k = 0;
  while (auto b = keep.next()) {
    sizes.push_back(b->size());
    CHECK(b->batch_index == k);
    CHECK(b->inputs.sizes() == Shape{b->size(), 2});
    CHECK(b->inputs.dtype() == DType::f32);
    CHECK(b->labels.dtype() == DType::i64);
    for (int64_t i = 0; i < b->size(); ++i) {
      const int64_t idx = 3 * k + i;
      CHECK(b->indices[i] == idx);
      CHECK(b->inputs.at({i, 0}) == idx);
      CHECK(b->inputs.at({i, 1}) == 10 * idx);
      CHECK(b->labels.at({i}) == idx % 7);
    }
    ++k;
  }
  CHECK(sizes == std::vector<int64_t>{3, 3, 3, 1});
  CHECK(!keep.next());  // stays at the end until the next epoch

  o.drop_last = true;
  DataLoader drop(ds, o);
  CHECK(drop.num_batches() == 3);
  int64_t n = 0;
  while (auto b = drop.next()) n += b->size() == 3;
  CHECK(n == 3);
  o.batch_size = 11;
  CHECK(DataLoader(ds, o).num_batches() == 0);
}

TEST_CASE("loader: the shuffle is a seeded permutation per epoch", "[data]") {
  auto ds = std::make_shared<CountingDataset>(100);
  DataLoaderOptions o;
  o.batch_size = 7;
  o.seed = 42;
  DataLoader loader(ds, o);
  const auto e0 = loader.epoch_order(0), e1 = loader.epoch_order(1);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(100);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  CHECK(e0 != iota);
  CHECK(e0 != e1);
  o.seed = 43;
  CHECK(DataLoader(ds, o).epoch_order(0) != e0);
  o.seed = 42;
  CHECK(DataLoader(ds, o).epoch_order(0) == e0);
  // The batches walk the epoch order.
  const Seen s = run_epoch(loader, 1);
  std::vector<int64_t> visited;
  for (const auto& idx : s.indices) visited.insert(visited.end(), idx.begin(), idx.end());
  CHECK(visited == e1);
}

TEST_CASE("loader: 0, 1 and 3 workers give bit-identical batches", "[data]") {
  auto ds = synthetic_cifar(70);
  Seen reference;
  for (int workers : {0, 1, 3}) {
    DataLoaderOptions o;
    o.batch_size = 8;
    o.seed = 9;
    o.num_workers = workers;
    o.transform = cifar_augment();
    DataLoader loader(ds, o);
    Seen s = run_epoch(loader, 2);
    REQUIRE(s.inputs.size() == 9);
    CHECK(s.inputs.back().size() == 6 * 3 * 32 * 32 * sizeof(float));  // 70 = 8 * 8 + 6
    if (workers == 0) {
      reference = s;
      // Each batch equals the transform applied to each example on its own.
      const Batch b = loader.build_batch(2, 4);
      for (int64_t i = 0; i < b.size(); ++i) {
        const Tensor one = o.transform->apply(ds->get(b.indices[i]).input, 9, 2, b.indices[i]);
        CHECK(std::memcmp(one.raw_data(), static_cast<const float*>(b.inputs.raw_data()) + i * 3072,
                          3072 * sizeof(float)) == 0);
      }
    } else {
      CHECK(s == reference);
    }
  }
}

TEST_CASE("loader: resuming mid-epoch gives the same remaining batches", "[data]") {
  auto ds = synthetic_cifar(50);
  DataLoaderOptions o;
  o.batch_size = 6;
  o.seed = 4;
  o.num_workers = 2;
  o.transform = cifar_augment();
  DataLoader full(ds, o);
  const Seen whole = run_epoch(full, 3);
  REQUIRE(whole.inputs.size() == 9);

  DataLoader resumed(ds, o);
  const Seen tail = run_epoch(resumed, 3, 5);
  REQUIRE(tail.inputs.size() == 4);
  for (size_t k = 0; k < 4; ++k) {
    CHECK(tail.inputs[k] == whole.inputs[5 + k]);
    CHECK(tail.indices[k] == whole.indices[5 + k]);
  }
  // The same through skip_batches, after consuming two batches with workers running.
  DataLoader skipping(ds, o);
  skipping.set_epoch(3);
  skipping.next();
  skipping.next();
  skipping.skip_batches(3);
  CHECK(skipping.position() == 5);
  Seen rest;
  while (auto b = skipping.next()) record(rest, *b);
  CHECK(rest == tail);
  CHECK_THROWS_WITH(resumed.set_epoch(3, 10), Contains("start batch 10") && Contains("[0, 9]"));
}

TEST_CASE("loader: rank shards cover each global batch exactly", "[data]") {
  auto ds = synthetic_cifar(20);
  for (bool drop_last : {false, true}) {
    DataLoaderOptions o;
    o.seed = 5;
    o.drop_last = drop_last;
    o.transform = cifar_augment();
    o.batch_size = 6;
    DataLoader single(ds, o);
    const Seen global = run_epoch(single, 1);
    o.batch_size = 2;
    o.world_size = 3;
    std::vector<Seen> ranks;
    for (int r = 0; r < 3; ++r) {
      o.rank = r;
      o.num_workers = r;  // worker count must not matter either
      DataLoader loader(ds, o);
      CHECK(loader.num_batches() == single.num_batches());
      ranks.push_back(run_epoch(loader, 1));
    }
    REQUIRE(global.inputs.size() == (drop_last ? 3u : 4u));
    for (size_t k = 0; k < global.inputs.size(); ++k) {
      std::vector<uint8_t> bytes;
      std::vector<int64_t> indices, labels;
      for (const Seen& s : ranks) {
        REQUIRE(s.inputs.size() == global.inputs.size());
        bytes.insert(bytes.end(), s.inputs[k].begin(), s.inputs[k].end());
        indices.insert(indices.end(), s.indices[k].begin(), s.indices[k].end());
        labels.insert(labels.end(), s.labels[k].begin(), s.labels[k].end());
      }
      CHECK(bytes == global.inputs[k]);
      CHECK(indices == global.indices[k]);
      CHECK(labels == global.labels[k]);
    }
    if (!drop_last) {
      // The short last global batch (2 of 6) splits 1 / 1 / 0.
      CHECK(ranks[0].indices[3].size() == 1);
      CHECK(ranks[1].indices[3].size() == 1);
      CHECK(ranks[2].indices[3].empty());
    }
  }
  DataLoaderOptions bad;
  bad.rank = 2;
  bad.world_size = 2;
  CHECK_THROWS_WITH(DataLoader(ds, bad), Contains("rank 2 of 2"));
}

TEST_CASE("loader: an empty shard still has the batch's trailing shape", "[data]") {
  DataLoaderOptions o;
  o.batch_size = 2;
  o.world_size = 4;
  o.rank = 3;
  o.shuffle = false;
  DataLoader loader(std::make_shared<CountingDataset>(3), o);
  auto b = loader.next();
  REQUIRE(b);
  CHECK(b->size() == 0);
  CHECK(b->inputs.sizes() == Shape{0, 2});
  CHECK(b->labels.sizes() == Shape{0});
}

TEST_CASE("loader: errors on any thread reach the consumer at their batch", "[data]") {
  for (int workers : {0, 1, 3}) {
    DataLoaderOptions o;
    o.batch_size = 4;
    o.shuffle = false;
    o.num_workers = workers;
    DataLoader loader(std::make_shared<CountingDataset>(20, 9), o);
    REQUIRE(loader.next());
    REQUIRE(loader.next());
    CHECK_THROWS_WITH(loader.next(), Contains("fake.bin") && Contains("record 9"));
    auto after = loader.next();  // the loader goes on with the next batch
    REQUIRE(after);
    CHECK(after->indices.front() == 12);

    DataLoader wrapped(std::make_shared<CountingDataset>(20, 0, true), o);
    try {
      wrapped.next();
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains("DataLoader") && Contains("batch 0") && Contains("disk on fire"));
    }
  }
  // Examples of different shapes cannot share a batch.
  class Ragged final : public Dataset {
   public:
    int64_t size() const override { return 4; }
    Example get(int64_t i) const override { return {zeros({1 + i % 2}), Tensor(), 0}; }
    int64_t num_classes() const override { return 1; }
    std::string name() const override { return "ragged"; }
  };
  DataLoaderOptions o;
  o.shuffle = false;
  DataLoader ragged(std::make_shared<Ragged>(), o);
  CHECK_THROWS_WITH(ragged.next(), Contains("example 1") && Contains("[2]") && Contains("[1]"));
}

TEST_CASE("loader: destroyed mid-epoch with workers blocked on a full queue", "[data]") {
  auto ds = synthetic_cifar(400);
  for (int round = 0; round < 5; ++round) {
    DataLoaderOptions o;
    o.batch_size = 4;
    o.num_workers = 3;
    o.prefetch = 1;
    o.transform = cifar_augment();
    DataLoader loader(ds, o);
    REQUIRE(loader.next());
    if (round % 2) loader.set_epoch(1, 50);  // restart elsewhere, then leave
    REQUIRE(loader.next());
  }
  SUCCEED("no hang");
}

TEST_CASE("loader: a second input (retrieval pairs) is batched too", "[data]") {
  class Pairs final : public Dataset {
   public:
    int64_t size() const override { return 5; }
    Example get(int64_t i) const override {
      return {from_vector<int64_t>({i, i + 1, i + 2}, {3}), from_vector<int64_t>({-i, -2 * i}, {2}), i % 2};
    }
    int64_t num_classes() const override { return 2; }
    std::string name() const override { return "pairs"; }
  };
  DataLoaderOptions o;
  o.batch_size = 2;
  o.shuffle = false;
  DataLoader loader(std::make_shared<Pairs>(), o);
  loader.next();
  auto b = loader.next();
  REQUIRE(b);
  CHECK(b->inputs.dtype() == DType::i64);
  CHECK(b->inputs.to_vector<int64_t>() == std::vector<int64_t>{2, 3, 4, 3, 4, 5});
  CHECK(b->inputs2.to_vector<int64_t>() == std::vector<int64_t>{-2, -4, -3, -6});
  CHECK(b->labels.to_vector<int64_t>() == std::vector<int64_t>{0, 1});
}
