// Helpers of the fused (part-2) kernels in cuda/: how much shared memory a
// block may use, opting a kernel into more than the default 48 KiB, and the
// DIMIX_CUDA_SIMPLE switch that routes every fused op back to its part-1
// ("_simple") kernel.
//
// Why the switch: each fused kernel keeps its obviously-right first form as
// the oracle (registered as "<name>_simple" and compared in
// tests/ops/test_cuda_fused.cpp). When a result on a new GPU looks wrong,
// DIMIX_CUDA_SIMPLE=1 reruns the same program on the oracles: if the problem
// goes away, a fused kernel is to blame.
#pragma once
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cuda/common.cuh"

namespace dimix::cuda {

// True when DIMIX_CUDA_SIMPLE is set to anything but "" or "0".
inline bool use_simple_kernels() {
  static const bool on = [] {
    const char* v = std::getenv("DIMIX_CUDA_SIMPLE");
    return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

constexpr size_t kDefaultSmem = 48 * 1024;  // what any kernel may use without opting in

// The dynamic shared memory one block may use on ctx's device (the opt-in
// limit: 227 KiB on H100, 163 KiB on A100), capped at `cap` so that at least
// two blocks still fit on an SM.
inline size_t smem_budget(const DeviceContext& ctx, size_t cap = 96 * 1024) {
  static std::atomic<int> cached[64];  // per device, bytes; 0 = not asked yet
  int v = ctx.device < 64 ? cached[ctx.device].load(std::memory_order_relaxed) : 0;
  if (v == 0) {
    DIMIX_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx.device));
    if (v < static_cast<int>(kDefaultSmem)) v = static_cast<int>(kDefaultSmem);
    if (ctx.device < 64) cached[ctx.device].store(v, std::memory_order_relaxed);
  }
  return static_cast<size_t>(v) < cap ? static_cast<size_t>(v) : cap;
}

// Before launching `kernel` with `bytes` of dynamic shared memory: kernels
// must opt in to more than 48 KiB (the attribute is per kernel and sticky, so
// setting it on every launch above 48 KiB is cheap and always right).
template <class Kernel>
inline void allow_smem(Kernel* kernel, size_t bytes) {
  if (bytes > kDefaultSmem)
    DIMIX_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Grid for `tiles` independent tiles: all of them up to a cap (the kernels
// loop over the rest), so launch size stays bounded for huge inputs.
inline unsigned tile_grid(int64_t tiles, const DeviceContext& ctx, int per_sm = 16) {
  const int64_t cap = static_cast<int64_t>(ctx.num_sms) * per_sm;
  return static_cast<unsigned>(tiles < 1 ? 1 : (tiles < cap ? tiles : cap));
}

}  // namespace dimix::cuda
