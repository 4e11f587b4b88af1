// The device kernel table: how ops reach CUDA kernels without #ifdefs.
//
// cuda/ registers each kernel under a name ("softmax_forward") from a static
// initialiser; an op looks it up when its input lives on a GPU. In a build
// without CUDA nothing is registered and the lookup throws "built without
// CUDA". Signatures are checked at lookup (a mismatch is an Error, not UB).
#pragma once
#include <string>
#include <typeinfo>
#include <vector>

#include "core/error.h"

namespace dimix {

void register_kernel(const std::string& name, void* fn, const char* signature);
void* find_kernel_raw(const std::string& name, const char* signature);
bool cuda_built();  // true when the CUDA backend was compiled in
// Whether a kernel is registered under `name` (any signature), and every
// registered name, sorted: for tests that every op's kernel exists.
bool has_kernel(const std::string& name);
std::vector<std::string> registered_kernels();

// Fn is a function type, e.g. void(const Tensor&, const Tensor&).
template <class Fn>
Fn* cuda_kernel(const std::string& name) {
  return reinterpret_cast<Fn*>(find_kernel_raw(name, typeid(Fn).name()));
}

}  // namespace dimix

// In cuda/*.cu: DIMIX_REGISTER_KERNEL("softmax_forward", softmax_forward_cuda);
#define DIMIX_KERNEL_CAT2(a, b) a##b
#define DIMIX_KERNEL_CAT(a, b) DIMIX_KERNEL_CAT2(a, b)
// (The parameter is not called `name`: it would replace the `.name()` below.)
#define DIMIX_REGISTER_KERNEL(kernel_name, fn)                                                   \
  static const bool DIMIX_KERNEL_CAT(dimix_kernel_reg_, __LINE__) =                              \
      (::dimix::register_kernel(kernel_name, reinterpret_cast<void*>(&fn), typeid(decltype(fn)).name()), true)
