// The NCCL backend: collectives on CUDA buffers, the standard transport for
// GPUs (NVLink, InfiniBand/RoCE, sockets), bootstrapped over another
// communicator (MPI) that carries the NCCL unique id from rank 0.
//
// Ordering: dimix runs every kernel on one stream per device (cuda/runtime.h).
// NCCL runs on its own stream; each collective waits (device-side, an event)
// for the work already queued on the compute stream, and the compute stream
// waits for the collective, so kernels that follow see its result without
// the host in between. The host then waits for the collective with the
// communicator's deadline, polling NCCL's asynchronous error state, so a
// dead peer ends in an Error (and ncclCommAbort), not a hang.
//
// When NCCL is found, CMake compiles this file with nvcc (it needs the
// device context of cuda/common.cuh); otherwise it is plain C++ with stubs.
// Reference: NCCL 2.x user guide (communicator creation with
// ncclCommInitRankConfig, non-blocking communicators, error handling).
#include "dist/communicator.h"
#include "dist/detail.h"

#if defined(DIMIX_WITH_NCCL)
#include <nccl.h>

#include <cstring>
#include <sstream>

#include "cuda/common.cuh"
#endif

namespace dimix::dist {

#if defined(DIMIX_WITH_NCCL)

namespace {

#define DIMIX_NCCL_CHECK(expr)                                                                            \
  do {                                                                                                    \
    const ncclResult_t dimix_r_ = (expr);                                                                 \
    if (dimix_r_ != ncclSuccess && dimix_r_ != ncclInProgress)                                            \
      DIMIX_FAIL("nccl: ", #expr, " failed: ", ncclGetErrorString(dimix_r_), " (set NCCL_DEBUG=INFO for details)"); \
  } while (0)

ncclDataType_t nccl_type(DType t, const char* op) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  DIMIX_FAIL("nccl ", op, ": unsupported dtype");
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, int device)
      : boot_(std::move(bootstrap)), device_(device) {
    DIMIX_CHECK(cuda::available() && device >= 0 && device < cuda::device_count(), "nccl: CUDA device ", device,
                " is not available (", cuda::device_count(), " devices)");
    set_timeout(boot_->timeout());
    cuda::context(device_);  // makes the device current
    ncclUniqueId id;
    if (boot_->rank() == 0) DIMIX_NCCL_CHECK(ncclGetUniqueId(&id));
    Tensor id_bytes = empty({static_cast<int64_t>(sizeof(id))}, DType::u8);
    std::memcpy(id_bytes.raw_data(), &id, sizeof(id));
    boot_->broadcast(id_bytes, 0);
    std::memcpy(&id, id_bytes.raw_data(), sizeof(id));
    DIMIX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DIMIX_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    DIMIX_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    // Non-blocking creation, so a peer that never joins is a timeout here too.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    DIMIX_NCCL_CHECK(ncclCommInitRankConfig(&comm_, boot_->world_size(), id, boot_->rank(), &config));
    wait_async("init");
  }

  ~NcclCommunicator() override {
    if (comm_) {
      if (broken_.empty()) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (done_) cudaEventDestroy(done_);
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return boot_->rank(); }
  int world_size() const override { return boot_->world_size(); }
  int local_rank() const override { return boot_->local_rank(); }
  int local_size() const override { return boot_->local_size(); }
  std::string backend() const override { return "nccl"; }

  void all_reduce(const Tensor& t) override {
    check_tensor("all_reduce", t);
    if (t.device().is_cpu()) return boot_->all_reduce(t);
    check_device("all_reduce", t);
    run("all_reduce", [&] {
      return ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype(), "all_reduce"),
                           ncclSum, comm_, stream_);
    });
  }

  void reduce_scatter(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("reduce_scatter", input, output);
    if (input.device().is_cpu()) return boot_->reduce_scatter(input, output);
    check_device("reduce_scatter", input);
    run("reduce_scatter", [&] {
      return ncclReduceScatter(input.raw_data(), output.raw_data(), static_cast<size_t>(output.numel()),
                               nccl_type(output.dtype(), "reduce_scatter"), ncclSum, comm_, stream_);
    });
  }

  void all_gather(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("all_gather", output, input);
    if (input.device().is_cpu()) return boot_->all_gather(input, output);
    check_device("all_gather", input);
    run("all_gather", [&] {
      return ncclAllGather(input.raw_data(), output.raw_data(), static_cast<size_t>(input.numel()),
                           nccl_type(input.dtype(), "all_gather"), comm_, stream_);
    });
  }

  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t);
    check_root("broadcast", root);
    if (t.device().is_cpu()) return boot_->broadcast(t, root);
    check_device("broadcast", t);
    run("broadcast", [&] {
      return ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype(), "broadcast"),
                           root, comm_, stream_);
    });
  }

  // A barrier over the GPUs' queues as well: a one-element all-reduce.
  void barrier() override {
    if (!token_.defined()) token_ = zeros({1}, DType::f32, Device::cuda(device_));
    all_reduce(token_);
  }

 private:
  void check_device(const char* op, const Tensor& t) const {
    DIMIX_CHECK(t.device() == Device::cuda(device_), "nccl ", op, ": this communicator is for cuda:", device_,
                ", got a tensor on ", t.device().str());
    DIMIX_CHECK(broken_.empty(), "nccl ", op, " on rank ", rank(), ": the communicator is broken (", broken_, ")");
  }

  // Queues one collective on the NCCL stream between the compute stream's
  // work before and after it, then waits for it with the deadline.
  template <class Enqueue>
  void run(const char* op, Enqueue&& enqueue) {
    cuda::DeviceContext& ctx = cuda::context(device_);
    DIMIX_CUDA_CHECK(cudaEventRecord(ready_, ctx.stream));
    DIMIX_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    DIMIX_NCCL_CHECK(enqueue());
    wait_async(op);  // a non-blocking communicator may still be enqueuing
    DIMIX_CUDA_CHECK(cudaEventRecord(done_, stream_));
    DIMIX_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, done_, 0));
    std::string failure;
    const bool finished = detail::wait_until(
        [&] {
          const cudaError_t e = cudaEventQuery(done_);
          if (e == cudaSuccess) return true;
          if (e != cudaErrorNotReady) {
            failure = std::string("CUDA error ") + cudaGetErrorString(e);
            return true;
          }
          ncclResult_t st = ncclSuccess;
          ncclCommGetAsyncError(comm_, &st);
          if (st != ncclSuccess && st != ncclInProgress) {
            failure = std::string("NCCL error ") + ncclGetErrorString(st);
            return true;
          }
          return false;
        },
        timeout_);
    if (finished && failure.empty()) return;
    fail(op, failure.empty() ? timeout_message(op) : failure);
  }

  // Waits until the communicator has no operation in progress on the host.
  void wait_async(const char* op) {
    ncclResult_t st = ncclInProgress;
    const bool ok = detail::wait_until(
        [&] {
          ncclCommGetAsyncError(comm_, &st);
          return st != ncclInProgress;
        },
        timeout_);
    if (!ok) fail(op, timeout_message(op));
    if (st != ncclSuccess) fail(op, std::string("NCCL error ") + ncclGetErrorString(st));
  }

  std::string timeout_message(const char* op) const {
    std::ostringstream os;
    os << op << " timed out after " << timeout_
       << " s (a rank died or hangs; NCCL cannot tell which: the other ranks' errors name it; NCCL_DEBUG=INFO shows more)";
    return os.str();
  }

  [[noreturn]] void fail(const char* op, const std::string& why) {
    broken_ = why;
    ncclCommAbort(comm_);  // releases peers blocked in NCCL kernels
    comm_ = nullptr;
    DIMIX_FAIL("nccl ", op, " on rank ", rank(), " of ", world_size(), ": ", why);
  }

  std::shared_ptr<Communicator> boot_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  Tensor token_;
  std::string broken_;
};

}  // namespace

bool nccl_built() { return true; }

std::shared_ptr<Communicator> nccl(std::shared_ptr<Communicator> bootstrap, int cuda_device) {
  DIMIX_CHECK(bootstrap != nullptr, "nccl: a bootstrap communicator is required");
  return std::make_shared<NcclCommunicator>(std::move(bootstrap), cuda_device);
}

#else  // built without NCCL

bool nccl_built() { return false; }

std::shared_ptr<Communicator> nccl(std::shared_ptr<Communicator>, int) {
  DIMIX_FAIL("nccl: dimix was built without NCCL (it needs CUDA and NCCL's nccl.h / libnccl at configure time); "
             "distributed GPU runs need it");
}

#endif

}  // namespace dimix::dist
