// DataLoader (see loader.h). Workers claim batch indices in order from a
// shared counter, at most num_workers * prefetch ahead of the consumer, and
// file each finished batch (or its error) under its index; next() waits for
// exactly the batch it is due, so delivery order never depends on timing.
#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/rng.h"

namespace dimix {

namespace {

constexpr uint64_t kShuffleDomain = 0x5AFF1E00ull;

// Rethrows a worker's exception as a dimix::Error.
[[noreturn]] void rethrow_as_error(const std::exception_ptr& error, int64_t epoch, int64_t batch_index) {
  try {
    std::rethrow_exception(error);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    DIMIX_FAIL("DataLoader: epoch ", epoch, " batch ", batch_index, ": ", e.what());
  } catch (...) {
    DIMIX_FAIL("DataLoader: epoch ", epoch, " batch ", batch_index, ": unknown exception");
  }
}

void copy_into(const Tensor& batch, int64_t i, const Tensor& x) {
  const int64_t per = x.numel();
  if (x.is_contiguous() && x.dtype() == batch.dtype()) {
    const size_t es = dtype_size(x.dtype());
    std::memcpy(static_cast<char*>(batch.raw_data()) + static_cast<size_t>(i * per) * es, x.raw_data(),
                static_cast<size_t>(per) * es);
  } else {
    Shape strides(batch.strides().begin() + 1, batch.strides().end());
    copy_(batch.as_strided(x.sizes(), strides, batch.offset() + i * per), x);
  }
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  DIMIX_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
  const auto& o = options_;
  DIMIX_CHECK(o.batch_size > 0, "DataLoader: expected batch_size > 0, got ", o.batch_size);
  DIMIX_CHECK(o.num_workers >= 0 && o.prefetch >= 1, "DataLoader: expected num_workers >= 0 and prefetch >= 1, got ",
              o.num_workers, " and ", o.prefetch);
  DIMIX_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "DataLoader: expected 0 <= rank < world_size, got rank ",
              o.rank, " of ", o.world_size);
}

DataLoader::~DataLoader() { stop_workers(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), g = global_batch_size();
  return options_.drop_last ? n / g : (n + g - 1) / g;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  const int64_t n = dataset_->size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  if (!options_.shuffle) return order;
  // Fisher-Yates; swap partner j of position i is Philox word pair i under a
  // key derived from (seed, epoch), so the permutation is a function of both.
  uint32_t w[4];
  Philox4x32::generate(static_cast<uint64_t>(epoch), options_.seed ^ kShuffleDomain, w);
  const uint64_t key = (static_cast<uint64_t>(w[1]) << 32) | w[0];
  for (int64_t i = n - 1; i > 0; --i) {
    Philox4x32::generate(static_cast<uint64_t>(i), key, w);
    const uint64_t bits = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    std::swap(order[static_cast<size_t>(i)], order[bits % static_cast<uint64_t>(i + 1)]);
  }
  return order;
}

std::pair<int64_t, int64_t> DataLoader::rank_range(int64_t batch_index) const {
  // The global batch's m positions split into world_size contiguous parts:
  // B each when full; the last, short one as evenly as possible.
  const int64_t g = global_batch_size(), start = batch_index * g;
  const int64_t m = std::min(g, dataset_->size() - start);
  const int64_t w = options_.world_size, r = options_.rank;
  const int64_t base = m / w, extra = m % w;
  const int64_t begin = start + r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

Batch DataLoader::build_batch(int64_t epoch, int64_t batch_index) const {
  DIMIX_CHECK(batch_index >= 0 && batch_index < num_batches(), "DataLoader: batch ", batch_index,
              " out of range [0, ", num_batches(), ")");
  return collate(epoch, batch_index, epoch_order(epoch));
}

Batch DataLoader::collate(int64_t epoch, int64_t batch_index, const std::vector<int64_t>& order) const {
  const auto [begin, end] = rank_range(batch_index);
  Batch batch;
  batch.epoch = epoch;
  batch.batch_index = batch_index;
  batch.indices.assign(order.begin() + begin, order.begin() + end);
  const int64_t B = end - begin;
  const uint64_t key = augment_key(options_.seed, epoch);
  const Compose* transform = options_.transform.get();
  auto input_of = [&](const Example& ex, int64_t index) {
    return transform ? transform->apply_keyed(ex.input, key, index) : ex.input;
  };

  // The first example fixes the batch's shapes and dtypes. A rank whose part
  // of a short last batch is empty still gets tensors of the right trailing shape.
  const int64_t first = B > 0 ? batch.indices[0] : order.at(0);
  const Example ex0 = dataset_->get(first);
  const Tensor x0 = input_of(ex0, first);
  auto batched = [&](const Tensor& x) {
    Shape s{B};
    s.insert(s.end(), x.sizes().begin(), x.sizes().end());
    return empty(s, x.dtype());
  };
  batch.inputs = batched(x0);
  if (ex0.input2.defined()) batch.inputs2 = batched(ex0.input2);
  batch.labels = empty({B}, DType::i64);
  if (B == 0) return batch;
  int64_t* labels = batch.labels.data<int64_t>();

  auto place = [&](int64_t i, const Example& ex, const Tensor& x) {
    const int64_t index = batch.indices[static_cast<size_t>(i)];
    DIMIX_CHECK(x.sizes() == x0.sizes() && x.dtype() == x0.dtype(), "DataLoader: example ", index, " of ",
                dataset_->name(), " is ", dtype_name(x.dtype()), " ", x.shape_str(), " but example ", first, " is ",
                dtype_name(x0.dtype()), " ", x0.shape_str(), "; a batch needs one shape");
    DIMIX_CHECK(ex.input2.defined() == batch.inputs2.defined() &&
                    (!ex.input2.defined() || (ex.input2.sizes() == ex0.input2.sizes() &&
                                              ex.input2.dtype() == ex0.input2.dtype())),
                "DataLoader: example ", index, " of ", dataset_->name(), " has a second input unlike example ", first);
    copy_into(batch.inputs, i, x);
    if (ex.input2.defined()) copy_into(batch.inputs2, i, ex.input2);
    labels[i] = ex.label;
  };
  place(0, ex0, x0);

  for (int64_t i = 1; i < B; ++i) {
    const int64_t index = batch.indices[static_cast<size_t>(i)];
    const Example ex = dataset_->get(index);
    place(i, ex, input_of(ex, index));
  }
  return batch;
}

void DataLoader::set_epoch(int64_t epoch, int64_t start_batch) {
  DIMIX_CHECK(epoch >= 0, "DataLoader: expected epoch >= 0, got ", epoch);
  DIMIX_CHECK(start_batch >= 0 && start_batch <= num_batches(), "DataLoader: start batch ", start_batch,
              " out of range [0, ", num_batches(), "]");
  stop_workers();
  if (epoch != epoch_ || !order_ready_) {
    epoch_ = epoch;
    order_ = epoch_order(epoch);
    order_ready_ = true;
  }
  position_ = start_batch;
}

void DataLoader::skip_batches(int64_t k) {
  DIMIX_CHECK(k >= 0, "DataLoader: expected a batch count >= 0 to skip, got ", k);
  stop_workers();
  position_ = std::min(num_batches(), position_ + k);
}

std::optional<Batch> DataLoader::next() {
  if (!order_ready_) {
    order_ = epoch_order(epoch_);
    order_ready_ = true;
  }
  if (position_ >= num_batches()) return std::nullopt;
  if (options_.num_workers == 0) {
    const int64_t k = position_++;
    try {
      return collate(epoch_, k, order_);
    } catch (...) {
      rethrow_as_error(std::current_exception(), epoch_, k);
    }
  }
  if (workers_.empty()) start_workers();
  Slot slot;
  int64_t k;
  {
    std::unique_lock<std::mutex> lock(mu_);
    k = position_;
    ready_cv_.wait(lock, [&] { return ready_.count(k) > 0; });
    auto it = ready_.find(k);
    slot = std::move(it->second);
    ready_.erase(it);
    ++position_;
  }
  work_cv_.notify_all();
  if (slot.error) rethrow_as_error(slot.error, epoch_, k);
  return std::move(slot.batch);
}

void DataLoader::start_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    ready_.clear();
    next_claim_ = position_;
  }
  const int64_t remaining = num_batches() - position_;
  const int n = static_cast<int>(std::min<int64_t>(options_.num_workers, std::max<int64_t>(remaining, 1)));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  ready_.clear();
  stop_ = false;
}

void DataLoader::worker_loop() {
  const int64_t total = num_batches();
  const int64_t window = static_cast<int64_t>(options_.num_workers) * options_.prefetch;
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || next_claim_ >= total || next_claim_ < position_ + window; });
      if (stop_ || next_claim_ >= total) return;
      k = next_claim_++;
    }
    Slot slot;
    try {
      slot.batch = collate(epoch_, k, order_);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      ready_.emplace(k, std::move(slot));
    }
    ready_cv_.notify_all();
  }
}

}  // namespace dimix
