// The CUDA runtime: device contexts (one stream per device, cuBLAS handle and
// workspace, an index-error word), the caching device allocator, staged
// host<->device copies, and the checked-call error reporting.
//
// The allocator registers itself with core (register_allocator) from a static
// initialiser, only when a device is present; on a machine without a GPU or a
// driver nothing is printed and CUDA tensors report "no GPU is present".
//
// Caching: cudaMalloc/cudaFree synchronise the device and cost 10-100 us, so
// freed blocks go to per-device free lists keyed by rounded size and are
// handed out again. Reuse is safe without events because every kernel and
// copy runs on the device's one stream: work queued after a reuse runs after
// the work that used the block before it was freed.
#include "cuda/common.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace dimix::cuda {

// ---- errors ---------------------------------------------------------------------------
void fail_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so later calls are not blamed
  DIMIX_FAIL("CUDA error: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", expr, " at ", file, ":",
             line);
}

static const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  DIMIX_FAIL("cuBLAS error: ", cublas_status_name(s), " (", static_cast<int>(s), ") in ", expr, " at ", file, ":",
             line);
}

bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("DIMIX_CUDA_SYNC");
    return v != nullptr && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return on;
}

void check_launch(cudaStream_t stream, const char* file, int line) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail_cuda(e, "kernel launch", file, line);
  if (sync_debug()) {
    const cudaError_t s = cudaStreamSynchronize(stream);
    if (s != cudaSuccess) fail_cuda(s, "kernel execution (DIMIX_CUDA_SYNC=1)", file, line);
  }
}

// ---- devices ----------------------------------------------------------------------------
int device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: not an error here
      return 0;
    }
    return count;
  }();
  return n;
}

bool available() { return device_count() > 0; }

namespace {

// Double-buffered pinned staging for host<->device copies of one device.
struct Staging {
  static constexpr size_t kChunk = size_t(8) << 20;
  std::mutex mu;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
};

struct ContextSlot {
  std::once_flag once;
  std::unique_ptr<DeviceContext> ctx;
  // Lazily made, guarded by `mu`.
  std::mutex mu;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
  bool cublas_tf32 = false;
  Staging staging;
};

std::vector<std::unique_ptr<ContextSlot>>& slots() {
  // Leaked on purpose: destroying streams and handles at exit races the
  // driver's own teardown.
  static auto* s = [] {
    auto* v = new std::vector<std::unique_ptr<ContextSlot>>();
    for (int i = 0; i < device_count(); ++i) v->push_back(std::make_unique<ContextSlot>());
    return v;
  }();
  return *s;
}

thread_local int tl_current_device = -1;

void set_device(int device) {
  if (tl_current_device != device) {
    DIMIX_CUDA_CHECK(cudaSetDevice(device));
    tl_current_device = device;
  }
}

ContextSlot& slot_for(int device) {
  DIMIX_CHECK(device >= 0 && device < device_count(), "cuda: device ", device, " requested but ", device_count(),
              " device(s) present");
  return *slots()[device];
}

bool g_allow_tf32 = false;

}  // namespace

DeviceContext& context(int device) {
  ContextSlot& s = slot_for(device);
  set_device(device);
  std::call_once(s.once, [&] {
    auto ctx = std::make_unique<DeviceContext>();
    ctx->device = device;
    DIMIX_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    DIMIX_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->num_sms, cudaDevAttrMultiProcessorCount, device));
    DIMIX_CUDA_CHECK(cudaMalloc(&ctx->error_word, sizeof(unsigned long long)));
    DIMIX_CUDA_CHECK(cudaMemsetAsync(ctx->error_word, 0, sizeof(unsigned long long), ctx->stream));
    DIMIX_CUDA_CHECK(cudaHostAlloc(&ctx->error_host, sizeof(unsigned long long), cudaHostAllocPortable));
    s.ctx = std::move(ctx);
  });
  return *s.ctx;
}

cublasHandle_t cublas_handle(DeviceContext& ctx) {
  ContextSlot& s = slot_for(ctx.device);
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.cublas) {
    DIMIX_CUBLAS_CHECK(cublasCreate(&s.cublas));
    DIMIX_CUBLAS_CHECK(cublasSetStream(s.cublas, ctx.stream));
    // cuBLAS would otherwise take a workspace from cudaMalloc per call
    // pattern; a fixed one keeps it off the allocator (32 MiB suits Hopper).
    const size_t ws = size_t(32) << 20;
    DIMIX_CUDA_CHECK(cudaMalloc(&s.cublas_workspace, ws));
    DIMIX_CUBLAS_CHECK(cublasSetWorkspace(s.cublas, s.cublas_workspace, ws));
    s.cublas_tf32 = !g_allow_tf32;  // force the mode to be set below
  }
  if (s.cublas_tf32 != g_allow_tf32) {
    DIMIX_CUBLAS_CHECK(cublasSetMathMode(s.cublas, g_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    s.cublas_tf32 = g_allow_tf32;
  }
  return s.cublas;
}

double time_stream_ms(const std::function<void()>& work, int device) {
  DeviceContext& ctx = context(device);
  cudaEvent_t start = nullptr, stop = nullptr;
  DIMIX_CUDA_CHECK(cudaEventCreate(&start));
  DIMIX_CUDA_CHECK(cudaEventCreate(&stop));
  float ms = 0;
  try {
    DIMIX_CUDA_CHECK(cudaEventRecord(start, ctx.stream));
    work();
    context(device);  // work may have made another device current
    DIMIX_CUDA_CHECK(cudaEventRecord(stop, ctx.stream));
    DIMIX_CUDA_CHECK(cudaEventSynchronize(stop));
    DIMIX_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  } catch (...) {
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
    throw;
  }
  DIMIX_CUDA_CHECK(cudaEventDestroy(start));
  DIMIX_CUDA_CHECK(cudaEventDestroy(stop));
  return ms;
}

std::string device_name(int device) {
  if (device < 0 || device >= device_count()) return "";
  cudaDeviceProp prop{};
  DIMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

void synchronize() {
  for (int d = 0; d < device_count(); ++d) {
    ContextSlot& s = slot_for(d);
    if (!s.ctx) continue;  // nothing was ever queued there
    set_device(d);
    DIMIX_CUDA_CHECK(cudaStreamSynchronize(s.ctx->stream));
  }
}

// ---- index checking ------------------------------------------------------------------------
IndexChecker index_checker(DeviceContext& ctx) {
  DIMIX_CUDA_CHECK(cudaMemsetAsync(ctx.error_word, 0xFF, sizeof(unsigned long long), ctx.stream));
  return IndexChecker{ctx.error_word};
}

int64_t first_bad_index(DeviceContext& ctx) {
  DIMIX_CUDA_CHECK(cudaMemcpyAsync(ctx.error_host, ctx.error_word, sizeof(unsigned long long),
                                   cudaMemcpyDeviceToHost, ctx.stream));
  DIMIX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  const unsigned long long w = *ctx.error_host;
  return w == ~0ull ? -1 : static_cast<int64_t>(w);
}

int64_t index_value_at(const Tensor& index, int64_t pos) {
  const std::vector<int64_t> v = index.contiguous_raw().to_vector<int64_t>();
  DIMIX_CHECK(pos >= 0 && pos < static_cast<int64_t>(v.size()), "index_value_at: position ", pos, " outside ",
              index.shape_str());
  return v[pos];
}

// ---- the caching device allocator ---------------------------------------------------------
namespace {

class CudaCachingAllocator final : public Allocator {
 public:
  // Small blocks round to 512 B, large ones to 1 MiB, so tensors of nearly
  // equal size share free lists. A cached block serves a request when it is
  // at most twice its size, so a tiny tensor never pins a huge block.
  static size_t round(size_t n) {
    const size_t q = n <= (size_t(1) << 20) ? 512 : (size_t(1) << 20);
    return (n + q - 1) / q * q;
  }

  void* allocate(size_t nbytes, int device) override {
    if (nbytes == 0) return nullptr;
    const size_t size = round(nbytes);
    DIMIX_CHECK(device >= 0 && device < device_count(), "cuda allocator: device ", device, " requested but ",
                device_count(), " device(s) present");
    std::lock_guard<std::mutex> lock(mu_);
    auto& free_list = free_[device];
    stats_.num_allocs++;
    void* p = nullptr;
    size_t got = size;
    auto it = free_list.lower_bound(size);
    if (it != free_list.end() && it->first <= 2 * size) {
      got = it->first;
      p = it->second;
      free_list.erase(it);
      stats_.cached_bytes -= got;
      stats_.num_cache_hits++;
    } else {
      set_device(device);
      cudaError_t e = cudaMalloc(&p, size);
      if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        release_locked(device);
        e = cudaMalloc(&p, size);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        DIMIX_FAIL("cuda allocator: cannot allocate ", size, " bytes on cuda:", device, " (", cudaGetErrorString(e),
                   "; in use ", stats_.current_bytes, " bytes, cached ", stats_.cached_bytes, " bytes)");
      }
    }
    live_[p] = Block{got, device};
    stats_.current_bytes += got;
    if (stats_.current_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.current_bytes;
    return p;
  }

  // Never throws: called from Storage's destructor.
  void deallocate(void* p, size_t, int) noexcept override {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours; nothing sensible to do
    const Block b = it->second;
    live_.erase(it);
    stats_.current_bytes -= b.size;
    stats_.cached_bytes += b.size;
    free_[b.device].emplace(b.size, p);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_bytes = stats_.current_bytes;
  }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [device, list] : free_) release_locked(device);
  }

  void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) override {
    if (nbytes == 0) return;
    if (dst_dev.is_cuda() && src_dev.is_cuda()) {
      DeviceContext& sctx = context(src_dev.index);
      if (dst_dev.index == src_dev.index) {
        DIMIX_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, sctx.stream));
        return;
      }
      // Across devices: both streams drained first, then a synchronous copy,
      // so neither device's stream order needs an event.
      DeviceContext& dctx = context(dst_dev.index);
      DIMIX_CUDA_CHECK(cudaStreamSynchronize(dctx.stream));
      context(src_dev.index);
      DIMIX_CUDA_CHECK(cudaStreamSynchronize(sctx.stream));
      DIMIX_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, nbytes, sctx.stream));
      DIMIX_CUDA_CHECK(cudaStreamSynchronize(sctx.stream));
      return;
    }
    if (dst_dev.is_cuda()) return host_to_device(dst, dst_dev.index, src, nbytes);
    return device_to_host(dst, src, src_dev.index, nbytes);
  }

 private:
  struct Block {
    size_t size;
    int device;
  };

  void release_locked(int device) {
    auto& list = free_[device];
    if (list.empty()) return;
    set_device(device);
    for (auto& [size, p] : list) {
      (void)cudaFree(p);  // cudaFree waits for the device: the block is idle
      stats_.cached_bytes -= size;
    }
    list.clear();
  }

  static Staging& staging_for(int device) {
    Staging& st = slot_for(device).staging;
    if (!st.buf[0]) {
      for (int i = 0; i < 2; ++i) {
        DIMIX_CUDA_CHECK(cudaHostAlloc(&st.buf[i], Staging::kChunk, cudaHostAllocPortable));
        DIMIX_CUDA_CHECK(cudaEventCreateWithFlags(&st.done[i], cudaEventDisableTiming));
      }
    }
    return st;
  }

  // Host bytes are copied into a pinned chunk, which the stream copies to the
  // device; a chunk is refilled only after its previous copy finished. The
  // call returns once the last chunk is queued: the caller's host buffer is
  // no longer needed by then.
  static void host_to_device(void* dst, int device, const void* src, size_t nbytes) {
    DeviceContext& ctx = context(device);
    Staging& st = slot_for(device).staging;
    std::lock_guard<std::mutex> lock(st.mu);
    staging_for(device);
    size_t done = 0;
    for (int k = 0; done < nbytes; k ^= 1) {
      const size_t n = std::min(Staging::kChunk, nbytes - done);
      DIMIX_CUDA_CHECK(cudaEventSynchronize(st.done[k]));
      std::memcpy(st.buf[k], static_cast<const char*>(src) + done, n);
      DIMIX_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + done, st.buf[k], n, cudaMemcpyHostToDevice,
                                       ctx.stream));
      DIMIX_CUDA_CHECK(cudaEventRecord(st.done[k], ctx.stream));
      done += n;
    }
  }

  // Chunks are queued two ahead, so the device copies one chunk while the
  // host drains the other. Returns when every byte is on the host.
  static void device_to_host(void* dst, const void* src, int device, size_t nbytes) {
    DeviceContext& ctx = context(device);
    Staging& st = slot_for(device).staging;
    std::lock_guard<std::mutex> lock(st.mu);
    staging_for(device);
    const size_t chunks = (nbytes + Staging::kChunk - 1) / Staging::kChunk;
    auto enqueue = [&](size_t c) {
      const size_t off = c * Staging::kChunk, n = std::min(Staging::kChunk, nbytes - off);
      const int k = static_cast<int>(c & 1);
      DIMIX_CUDA_CHECK(cudaEventSynchronize(st.done[k]));  // a previous H2D may still read it
      DIMIX_CUDA_CHECK(cudaMemcpyAsync(st.buf[k], static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost,
                                       ctx.stream));
      DIMIX_CUDA_CHECK(cudaEventRecord(st.done[k], ctx.stream));
    };
    for (size_t c = 0; c < std::min<size_t>(2, chunks); ++c) enqueue(c);
    for (size_t c = 0; c < chunks; ++c) {
      const int k = static_cast<int>(c & 1);
      DIMIX_CUDA_CHECK(cudaEventSynchronize(st.done[k]));
      const size_t off = c * Staging::kChunk, n = std::min(Staging::kChunk, nbytes - off);
      std::memcpy(static_cast<char*>(dst) + off, st.buf[k], n);
      if (c + 2 < chunks) enqueue(c + 2);
    }
  }

  mutable std::mutex mu_;
  std::map<int, std::multimap<size_t, void*>> free_;
  std::unordered_map<void*, Block> live_;
  AllocatorStats stats_;
};

CudaCachingAllocator* device_allocator() {
  static CudaCachingAllocator* a = available() ? new CudaCachingAllocator() : nullptr;  // leaked: see slots()
  return a;
}

// Registered at start-up only when a GPU is present.
const bool registered = [] {
  if (CudaCachingAllocator* a = device_allocator()) register_allocator(DeviceKind::CUDA, a);
  return true;
}();

}  // namespace

AllocatorStats memory_stats() {
  CudaCachingAllocator* a = device_allocator();
  return a ? a->stats() : AllocatorStats{};
}
void reset_peak_memory() {
  if (CudaCachingAllocator* a = device_allocator()) a->reset_peak();
}
void empty_cache() {
  if (CudaCachingAllocator* a = device_allocator()) a->empty_cache();
}

}  // namespace dimix::cuda
