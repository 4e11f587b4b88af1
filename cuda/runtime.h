// The CUDA runtime as the rest of dimix sees it: whether a GPU is usable, a
// way to wait for queued work, the device allocator's statistics and the few
// global switches. The kernels themselves are reached through the kernel
// table (core/kernel_table.h). A build without CUDA links cuda/stubs.cpp,
// which reports no GPU, zero statistics and ignores the switches.
//
// Execution model (cuda/runtime.cu): one stream per device carries every
// kernel, copy and cuBLAS/cuDNN call, so work is ordered without events; a
// caching allocator serves device memory (cudaMalloc only on a cache miss);
// host<->device copies go through pinned staging buffers.
// Setting DIMIX_CUDA_SYNC=1 in the environment synchronises after every
// kernel launch, so an asynchronous fault is reported at the launch that
// caused it (slow; for debugging).
#pragma once
#include <functional>
#include <string>

#include "core/storage.h"

namespace dimix::cuda {

// True when dimix was built with CUDA and a device is present.
bool available();
int device_count();
// Waits for all work queued on every device's stream; a failure of queued
// work surfaces here as dimix::Error.
void synchronize();

// The device caching allocator, summed over devices (zeros without a GPU).
AllocatorStats memory_stats();
void reset_peak_memory();
// Returns every cached, unused block to the driver.
void empty_cache();

// TF32 tensor-core math for f32 matrix products (cuBLAS and cuDNN): faster,
// ~1e-3 relative error. Off by default so f32 results match the CPU.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Whether DIMIX_CUDA_SYNC=1 synchronise-after-every-launch is on.
bool sync_debug();

// For benchmarks: milliseconds between a CUDA event recorded on `device`'s
// stream before `work` runs and one recorded after it (so only the GPU time
// of what `work` queued, launch gaps included); waits for the second event.
// Throws without a GPU.
double time_stream_ms(const std::function<void()>& work, int device = 0);
// The device's name ("NVIDIA H100 80GB HBM3"); "" without a GPU.
std::string device_name(int device = 0);

}  // namespace dimix::cuda
