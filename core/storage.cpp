// The CPU caching allocator and the allocator registry (see storage.h).
#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace dimix {
namespace {

// Blocks are rounded to 64 bytes (small) or 4 KiB (large) so that tensors of
// nearly equal size share free lists. The cache keeps at most kMaxCached bytes;
// past that, frees go back to the system.
class CpuCachingAllocator final : public Allocator {
 public:
  static constexpr size_t kMaxCached = size_t(4) << 30;

  static size_t round(size_t n) {
    if (n == 0) n = 1;
    const size_t q = n < (size_t(64) << 10) ? 64 : 4096;
    return (n + q - 1) / q * q;
  }

  void* allocate(size_t nbytes, int) override {
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_allocs++;
    void* p = nullptr;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= size;
      stats_.num_cache_hits++;
    } else {
      p = std::aligned_alloc(64, size);
      if (!p) {
        release_cache_locked();
        p = std::aligned_alloc(64, size);
      }
      DIMIX_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", size, " bytes");
    }
    stats_.current_bytes += size;
    if (stats_.current_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.current_bytes;
    return p;
  }

  void deallocate(void* p, size_t nbytes, int) override {
    if (!p) return;
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.current_bytes -= size;
    if (caching_ && stats_.cached_bytes + size <= kMaxCached) {
      free_[size].push_back(p);
      stats_.cached_bytes += size;
    } else {
      std::free(p);
    }
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
    release_cache_locked();
  }
  void copy(void* dst, Device, const void* src, Device, size_t nbytes) override {
    if (nbytes) std::memcpy(dst, src, nbytes);
  }

 private:
  void release_cache_locked() {
    for (auto& [size, list] : free_)
      for (void* p : list) std::free(p);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  // Sanitizer builds (and DIMIX_NO_ALLOC_CACHE=1) free every block at once,
  // so use-after-free is caught and nothing cached is reported as a leak.
#ifdef DIMIX_NO_CACHING_ALLOCATOR
  const bool caching_ = false;
#else
  const bool caching_ = std::getenv("DIMIX_NO_ALLOC_CACHE") == nullptr;
#endif
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

Allocator*& slot(DeviceKind kind) {
  static CpuCachingAllocator cpu;
  static Allocator* slots[2] = {&cpu, nullptr};
  return slots[static_cast<int>(kind)];
}

}  // namespace

Allocator& allocator_for(DeviceKind kind) {
  Allocator* a = slot(kind);
  DIMIX_CHECK(a != nullptr, "no allocator for device kind '",
              kind == DeviceKind::CUDA ? "cuda" : "cpu",
              "': dimix was built without CUDA, or no GPU is present");
  return *a;
}
void register_allocator(DeviceKind kind, Allocator* a) { slot(kind) = a; }
bool has_allocator(DeviceKind kind) { return slot(kind) != nullptr; }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device), owned_(true) {
  data_ = allocator_for(device.kind).allocate(nbytes, device.index);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)), owned_(false) {}

Storage::~Storage() {
  if (owned_) {
    allocator_for(device_.kind).deallocate(data_, nbytes_, device_.index);
  } else if (release_) {
    release_(data_);
  }
}

}  // namespace dimix
