// The CUDA runtime as the rest of dimix sees it: whether a GPU is usable and
// a way to wait for queued work. The kernels themselves are reached through
// the kernel table (core/kernel_table.h); in a build without CUDA these
// report no GPU.
#pragma once

namespace dimix::cuda {

// True when dimix was built with CUDA and a device is present.
bool available();
int device_count();
// Waits for all work queued on the current device's stream.
void synchronize();

}  // namespace dimix::cuda
