// Storage: one owned buffer on one device, shared by every view of it.
//
// CPU buffers are 64-byte aligned and come from a caching allocator: freed
// blocks are kept in per-size free lists and handed out again, because mapping
// fresh pages for every large activation costs more than the math on it
// (a fresh 256 MiB softmax output costs PyTorch 3.5x a reused one).
// Other devices register their allocator here (the CUDA backend does, from
// cuda/); core knows nothing about them beyond this interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include "core/device.h"

namespace dimix {

struct AllocatorStats {
  size_t current_bytes = 0;  // handed out and not yet freed
  size_t peak_bytes = 0;     // max of current_bytes since the last reset
  size_t cached_bytes = 0;   // freed, kept for reuse
  size_t num_allocs = 0;     // requests served
  size_t num_cache_hits = 0; // requests served from the cache
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, int device_index) = 0;
  virtual void deallocate(void* p, size_t nbytes, int device_index) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void empty_cache() = 0;
  // Copies between this device and the host (or within the device).
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) = 0;
};

// The allocator for a device kind; Error if none is registered (a CUDA device
// in a build without CUDA).
Allocator& allocator_for(DeviceKind kind);
void register_allocator(DeviceKind kind, Allocator* a);
bool has_allocator(DeviceKind kind);

class Storage {
 public:
  Storage(size_t nbytes, Device device);  // allocates (uninitialised)
  // Wraps memory owned elsewhere; `release` frees it (may be empty).
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void(void*)> release_;
  bool owned_ = false;
};

}  // namespace dimix
