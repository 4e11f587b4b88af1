// The CUDA backend in a build without CUDA: nothing is registered in the
// kernel table, so every GPU op throws "built without CUDA" (see
// core/kernel_table.h), and device queries report no GPU.
#include "cuda/runtime.h"

namespace dimix::cuda {

bool available() { return false; }
int device_count() { return 0; }
void synchronize() {}

}  // namespace dimix::cuda
