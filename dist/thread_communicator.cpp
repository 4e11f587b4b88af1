// The threads backend: W ranks as W threads of one process, for tests of
// data-parallel code without launching processes. Every collective is a
// sequence of rendezvous (all ranks arrive, or the deadline passes): ranks
// publish their buffer pointers, each reads its peers' buffers directly and
// sums in rank order (detail::sum_in_rank_order), and a closing rendezvous
// keeps a rank from reusing its buffer while a peer still reads it.
//
// Shared process state is shared: models that draw from the default RNG
// (dropout) see one generator from every rank thread; test with models
// that do not.
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <sstream>

#include "dist/communicator.h"
#include "dist/detail.h"

namespace dimix::dist {
namespace {

struct Group {
  explicit Group(int w) : world(w), arrived(w, false), alive(w, true), ptrs(w, nullptr), what(w) {}
  const int world;
  std::mutex mu;
  std::condition_variable cv;
  int64_t generation = 0;
  int count = 0;
  std::vector<bool> arrived, alive;
  std::vector<const void*> ptrs;      // published by each rank for the current phase
  std::vector<const void*> snapshot;  // ptrs of the last completed phase
  std::vector<std::string> what;  // "all_reduce of 1024 bytes": mismatches are errors
  std::string broken;             // why the group can no longer be used
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Group> g, int rank) : g_(std::move(g)), rank_(rank) {}
  ~ThreadCommunicator() override {
    std::lock_guard<std::mutex> lock(g_->mu);
    g_->alive[rank_] = false;
    g_->cv.notify_all();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return g_->world; }
  std::string backend() const override { return "threads"; }

  void all_reduce(const Tensor& t) override {
    check_tensor("all_reduce", t);
    const int64_t n = t.numel();
    const std::string what = "all_reduce of " + std::to_string(n) + " " + dtype_name(t.dtype());
    const std::vector<const void*> srcs = rendezvous("all_reduce", what, t.raw_data());
    std::vector<char> sum(static_cast<size_t>(n) * dtype_size(t.dtype()));
    detail::sum_in_rank_order(t.dtype(), sum.data(), srcs, n);
    rendezvous("all_reduce", what, nullptr);  // every rank has read every buffer
    std::memcpy(t.raw_data(), sum.data(), sum.size());
  }

  void reduce_scatter(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("reduce_scatter", input, output);
    const int64_t n = output.numel();
    const size_t esz = dtype_size(output.dtype());
    const std::string what = "reduce_scatter of " + std::to_string(n) + " " + dtype_name(output.dtype());
    std::vector<const void*> srcs;
    for (const void* p : rendezvous("reduce_scatter", what, input.raw_data())) srcs.push_back(static_cast<const char*>(p) + rank_ * n * esz);
    std::vector<char> sum(static_cast<size_t>(n) * esz);
    detail::sum_in_rank_order(output.dtype(), sum.data(), srcs, n);
    rendezvous("reduce_scatter", what, nullptr);
    std::memcpy(output.raw_data(), sum.data(), sum.size());
  }

  void all_gather(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("all_gather", output, input);
    const size_t bytes = static_cast<size_t>(input.numel()) * dtype_size(input.dtype());
    const std::string what = "all_gather of " + std::to_string(input.numel()) + " " + dtype_name(input.dtype());
    const std::vector<const void*> srcs = rendezvous("all_gather", what, input.raw_data());
    char* out = static_cast<char*>(output.raw_data());
    for (int q = 0; q < g_->world; ++q)
      if (out + q * bytes != srcs[q]) std::memcpy(out + q * bytes, srcs[q], bytes);
    rendezvous("all_gather", what, nullptr);
  }

  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t);
    check_root("broadcast", root);
    const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    const std::string what = "broadcast of " + std::to_string(t.numel()) + " " + dtype_name(t.dtype()) + " from rank " +
                             std::to_string(root);
    const std::vector<const void*> srcs = rendezvous("broadcast", what, t.raw_data());
    if (rank_ != root) std::memcpy(t.raw_data(), srcs[root], bytes);
    rendezvous("broadcast", what, nullptr);
  }

  void barrier() override { rendezvous("barrier", "barrier", nullptr); }

 private:
  // Publishes `ptr`, waits for every rank (or the deadline) and returns
  // every rank's published pointer.
  std::vector<const void*> rendezvous(const char* op, const std::string& what, const void* ptr) {
    Group& g = *g_;
    std::unique_lock<std::mutex> lock(g.mu);
    auto fail = [&](const std::string& why) {
      if (g.broken.empty()) g.broken = why;
      g.cv.notify_all();
      DIMIX_FAIL("threads ", op, " on rank ", rank_, ": ", why);
    };
    if (!g.broken.empty()) DIMIX_FAIL("threads ", op, " on rank ", rank_, ": the group is broken (", g.broken, ")");
    g.arrived[rank_] = true;
    g.ptrs[rank_] = ptr;
    g.what[rank_] = what;
    if (++g.count == g.world) {
      for (int q = 0; q < g.world; ++q)
        if (g.what[q] != g.what[0])
          fail("mismatched collectives: rank 0 called " + g.what[0] + ", rank " + std::to_string(q) + " " + g.what[q]);
      g.count = 0;
      std::fill(g.arrived.begin(), g.arrived.end(), false);
      g.snapshot = g.ptrs;
      ++g.generation;
      g.cv.notify_all();
      return g.snapshot;
    }
    const int64_t gen = g.generation;
    auto missing = [&] {
      std::vector<int> m;
      for (int q = 0; q < g.world; ++q)
        if (!g.arrived[q]) m.push_back(q);
      return m;
    };
    auto left = [&] {
      std::vector<int> m;
      for (int q = 0; q < g.world; ++q)
        if (!g.arrived[q] && !g.alive[q]) m.push_back(q);
      return m;
    };
    const auto deadline = detail::Clock::now() + std::chrono::duration_cast<detail::Clock::duration>(
                                                     std::chrono::duration<double>(timeout_));
    const bool done = g.cv.wait_until(lock, deadline, [&] {
      return g.generation != gen || !g.broken.empty() || !left().empty();
    });
    if (g.generation != gen) return g.snapshot;  // the next phase cannot complete without this rank
    if (!g.broken.empty()) DIMIX_FAIL("threads ", op, " on rank ", rank_, ": ", g.broken);
    if (done) fail(detail::rank_list(left()) + " left the group during " + what);
    std::ostringstream secs;
    secs << timeout_;
    fail(what + " timed out after " + secs.str() + " s waiting for " + detail::rank_list(missing()) +
         " (died, hangs, or called other collectives)");
    return {};  // not reached: fail throws
  }

  std::shared_ptr<Group> g_;
  int rank_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> thread_group(int world_size) {
  DIMIX_CHECK(world_size >= 1, "thread_group: world size must be at least 1, got ", world_size);
  auto g = std::make_shared<Group>(world_size);
  std::vector<std::shared_ptr<Communicator>> out;
  for (int r = 0; r < world_size; ++r) out.push_back(std::make_shared<ThreadCommunicator>(g, r));
  return out;
}

}  // namespace dimix::dist
