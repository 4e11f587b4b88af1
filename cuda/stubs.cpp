// The CUDA backend in a build without CUDA: nothing is registered in the
// kernel table, so every GPU op throws "built without CUDA" (see
// core/kernel_table.h), and device queries report no GPU.
#include "cuda/runtime.h"

#include "core/error.h"

namespace dimix::cuda {

bool available() { return false; }
int device_count() { return 0; }
void synchronize() {}

AllocatorStats memory_stats() { return {}; }
void reset_peak_memory() {}
void empty_cache() {}

void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }
bool sync_debug() { return false; }

double time_stream_ms(const std::function<void()>&, int) { DIMIX_FAIL("cuda::time_stream_ms: built without CUDA"); }
std::string device_name(int) { return ""; }

}  // namespace dimix::cuda
