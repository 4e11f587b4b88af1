// The MPI backend: processes started by mpirun / mpiexec / srun, on CPU
// buffers (CUDA tensors are staged through host memory; use the NCCL
// backend for GPU buffers).
//
// The collectives are built from non-blocking point-to-point messages, not
// from MPI_Allreduce, for two reasons:
//   - determinism: MPI may sum in any order (and does, by message size and
//     rank count); here each rank receives the pieces it reduces and adds
//     them in rank order itself (communicator.h);
//   - failure reporting: a collective polls its requests against a deadline
//     and, when it passes, knows exactly which peers never sent, so the
//     Error names them. (MPI_Allreduce would wait forever.)
// all_reduce is a direct reduce-scatter followed by a direct all-gather:
// each rank sends and receives (W-1)/W of the buffer twice, the same bytes
// as a ring all-reduce, in 2 rounds of W-1 concurrent messages.
// Reference: MPI 3.1 standard, ch. 3 (non-blocking point-to-point, message
// ordering) and ch. 8.3 (error handlers).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "dist/communicator.h"
#include "dist/detail.h"

#ifdef DIMIX_WITH_MPI
#include <mpi.h>
#endif

namespace dimix::dist {

#ifdef DIMIX_WITH_MPI

namespace {

std::string mpi_error(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, static_cast<size_t>(len));
}

#define DIMIX_MPI_CHECK(expr)                                                                         \
  do {                                                                                                \
    const int dimix_rc_ = (expr);                                                                     \
    if (dimix_rc_ != MPI_SUCCESS) DIMIX_FAIL("mpi: ", #expr, " failed: ", mpi_error(dimix_rc_)); \
  } while (0)

void finalize_at_exit() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

void ensure_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  // SERIALIZED: one thread at a time calls MPI (the training loop's thread);
  // data-loader workers never do.
  DIMIX_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
  std::atexit(finalize_at_exit);
}

bool mpi_alive() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// Messages are cut into pieces of at most 1 GiB (MPI counts are int).
constexpr int64_t kMaxPiece = int64_t(1) << 30;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    ensure_initialized();
    DIMIX_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    DIMIX_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    DIMIX_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    DIMIX_MPI_CHECK(MPI_Comm_size(comm_, &world_));
    MPI_Comm local;
    DIMIX_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
    DIMIX_MPI_CHECK(MPI_Comm_rank(local, &local_rank_));
    DIMIX_MPI_CHECK(MPI_Comm_size(local, &local_size_));
    MPI_Comm_free(&local);
  }
  ~MpiCommunicator() override {
    if (mpi_alive() && broken_.empty()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(const Tensor& t) override {
    check_tensor("all_reduce", t);
    if (t.device().is_cuda()) return staged(t, [&](const Tensor& h) { all_reduce(h); });
    begin("all_reduce");
    const int64_t n = t.numel();
    const size_t esz = dtype_size(t.dtype());
    char* data = static_cast<char*>(t.raw_data());
    auto lo = [&](int q) { return detail::chunk_begin(n, world_, q); };
    const int64_t mine = lo(rank_ + 1) - lo(rank_);
    // Round 1: chunk q goes to rank q; this rank's chunk comes from everyone.
    scratch_.resize(static_cast<size_t>(mine * esz * world_));
    Requests reqs;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      recv(reqs, scratch_.data() + q * mine * esz, mine * esz, q, 0);
      send(reqs, data + lo(q) * esz, (lo(q + 1) - lo(q)) * esz, q, 0);
    }
    wait(reqs, "all_reduce");
    std::vector<const void*> srcs;
    for (int q = 0; q < world_; ++q)
      srcs.push_back(q == rank_ ? data + lo(rank_) * esz : scratch_.data() + q * mine * esz);
    detail::sum_in_rank_order(t.dtype(), data + lo(rank_) * esz, srcs, mine);
    // Round 2: every rank's summed chunk to everyone.
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      recv(reqs, data + lo(q) * esz, (lo(q + 1) - lo(q)) * esz, q, 1);
      send(reqs, data + lo(rank_) * esz, mine * esz, q, 1);
    }
    wait(reqs, "all_reduce");
  }

  void reduce_scatter(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("reduce_scatter", input, output);
    if (input.device().is_cuda()) {
      Tensor hin = to_device_raw(input, Device::cpu()), hout = to_device_raw(output, Device::cpu());
      reduce_scatter(hin, hout);
      copy_(output, to_device_raw(hout, output.device()));
      return;
    }
    begin("reduce_scatter");
    const int64_t n = output.numel();
    const int64_t bytes = n * static_cast<int64_t>(dtype_size(output.dtype()));
    const char* in = static_cast<const char*>(input.raw_data());
    scratch_.resize(static_cast<size_t>(bytes * world_));
    Requests reqs;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      recv(reqs, scratch_.data() + q * bytes, bytes, q, 0);
      send(reqs, in + q * bytes, bytes, q, 0);
    }
    wait(reqs, "reduce_scatter");
    std::vector<const void*> srcs;
    for (int q = 0; q < world_; ++q) srcs.push_back(q == rank_ ? in + rank_ * bytes : scratch_.data() + q * bytes);
    detail::sum_in_rank_order(output.dtype(), output.raw_data(), srcs, n);
  }

  void all_gather(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("all_gather", output, input);
    if (input.device().is_cuda()) {
      Tensor hin = to_device_raw(input, Device::cpu()), hout = to_device_raw(output, Device::cpu());
      all_gather(hin, hout);
      copy_(output, to_device_raw(hout, output.device()));
      return;
    }
    begin("all_gather");
    const int64_t bytes = input.numel() * static_cast<int64_t>(dtype_size(input.dtype()));
    const char* in = static_cast<const char*>(input.raw_data());
    char* out = static_cast<char*>(output.raw_data());
    Requests reqs;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      recv(reqs, out + q * bytes, bytes, q, 0);
      send(reqs, in, bytes, q, 0);
    }
    if (out + rank_ * bytes != in) std::memcpy(out + rank_ * bytes, in, static_cast<size_t>(bytes));
    wait(reqs, "all_gather");
  }

  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t);
    check_root("broadcast", root);
    if (t.device().is_cuda()) return staged(t, [&](const Tensor& h) { broadcast(h, root); });
    begin("broadcast");
    const int64_t bytes = t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
    char* data = static_cast<char*>(t.raw_data());
    Requests reqs;
    if (rank_ == root) {
      for (int q = 0; q < world_; ++q)
        if (q != root) send(reqs, data, bytes, q, 0);
    } else {
      recv(reqs, data, bytes, root, 0);
    }
    wait(reqs, "broadcast");
  }

  void barrier() override {
    begin("barrier");
    Requests reqs;
    char dummy = 0;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      recv(reqs, nullptr, 0, q, 0);
      send(reqs, &dummy, 0, q, 0);
    }
    wait(reqs, "barrier");
  }

 private:
  struct Requests {
    std::vector<MPI_Request> req;
    std::vector<int> peer;
    std::vector<bool> is_recv;
  };

  // Every collective gets its own tag (its sequence number, mod the tag
  // space), so a late message of a failed collective cannot be taken for
  // one of a later collective.
  void begin(const char* op) {
    DIMIX_CHECK(broken_.empty(), "mpi ", op, " on rank ", rank_, ": the communicator is broken (", broken_, ")");
    DIMIX_CHECK(mpi_alive(), "mpi ", op, ": MPI is not initialised or already finalised");
    seq_ = (seq_ + 1) % 8000;
  }
  int tag(int round) const { return static_cast<int>(seq_ * 4 + round); }

  void send(Requests& r, const void* p, int64_t bytes, int peer, int round) {
    for (int64_t off = 0; off < bytes || (bytes == 0 && off == 0); off += kMaxPiece) {
      const int len = static_cast<int>(std::min(kMaxPiece, bytes - off));
      MPI_Request q;
      DIMIX_MPI_CHECK(MPI_Isend(static_cast<const char*>(p) + off, len, MPI_BYTE, peer, tag(round), comm_, &q));
      r.req.push_back(q);
      r.peer.push_back(peer);
      r.is_recv.push_back(false);
      if (bytes == 0) break;
    }
  }
  void recv(Requests& r, void* p, int64_t bytes, int peer, int round) {
    for (int64_t off = 0; off < bytes || (bytes == 0 && off == 0); off += kMaxPiece) {
      const int len = static_cast<int>(std::min(kMaxPiece, bytes - off));
      MPI_Request q;
      DIMIX_MPI_CHECK(MPI_Irecv(static_cast<char*>(p) + off, len, MPI_BYTE, peer, tag(round), comm_, &q));
      r.req.push_back(q);
      r.peer.push_back(peer);
      r.is_recv.push_back(true);
      if (bytes == 0) break;
    }
  }

  // Waits for every request until the deadline; on timeout (or an MPI
  // error) cancels what is left, marks the communicator broken and throws,
  // naming the peers that never delivered.
  void wait(Requests& r, const char* op) {
    std::string failure;
    auto done = [&] {
      bool all = true;
      for (size_t i = 0; i < r.req.size(); ++i) {
        if (r.req[i] == MPI_REQUEST_NULL) continue;
        int flag = 0;
        MPI_Status st;
        const int rc = MPI_Test(&r.req[i], &flag, &st);
        if (rc != MPI_SUCCESS) {
          failure = "message " + std::string(r.is_recv[i] ? "from" : "to") + " rank " + std::to_string(r.peer[i]) +
                    " failed: " + mpi_error(rc);
          return true;
        }
        all = all && flag;
      }
      return all;
    };
    const bool finished = detail::wait_until(done, timeout_);
    if (finished && failure.empty()) {
      r = Requests{};
      return;
    }
    std::vector<int> missing;
    for (size_t i = 0; i < r.req.size(); ++i) {
      if (r.req[i] == MPI_REQUEST_NULL) continue;
      if (std::find(missing.begin(), missing.end(), r.peer[i]) == missing.end()) missing.push_back(r.peer[i]);
      if (r.is_recv[i]) MPI_Cancel(&r.req[i]);
      MPI_Request_free(&r.req[i]);
    }
    std::sort(missing.begin(), missing.end());
    if (failure.empty())
      failure = std::string(op) + " timed out after " + format_seconds(timeout_) +
                " waiting for " + detail::rank_list(missing) + " (died, hangs, or called other collectives)";
    broken_ = failure;
    r = Requests{};
    DIMIX_FAIL("mpi ", op, " on rank ", rank_, " of ", world_, ": ", failure);
  }

  static std::string format_seconds(double s) {
    std::ostringstream os;
    os << s << " s";
    return os.str();
  }

  template <class Fn>
  void staged(const Tensor& t, Fn&& fn) {
    Tensor host = to_device_raw(t, Device::cpu());
    fn(host);
    copy_(t, to_device_raw(host, t.device()));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1;
  int64_t seq_ = 0;
  std::vector<char> scratch_;
  std::string broken_;
};

}  // namespace

bool mpi_built() { return true; }

std::shared_ptr<Communicator> mpi_world() { return std::make_shared<MpiCommunicator>(); }

void abort_world(int exit_code) {
  if (!mpi_alive()) return;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

#else  // built without MPI

bool mpi_built() { return false; }

std::shared_ptr<Communicator> mpi_world() {
  DIMIX_FAIL("mpi: dimix was built without MPI: distributed runs need MPI (install openmpi-bin and libopenmpi-dev, "
             "then re-run cmake and rebuild)");
}

void abort_world(int) {}

#endif

}  // namespace dimix::dist
