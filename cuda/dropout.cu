// CUDA kernel of ops/dropout: "dropout_forward" (also its backward: the same
// masked scaling of the gradient). x and out contiguous, same shape.
//
// Element i is dropped when philox_uniform<T>(seed, offset, i) < T(p)
// (core/rng.h, compiled here as __host__ __device__), so the GPU draws
// exactly the CPU's mask; kept elements become x * T(1 / (1 - p)).
#include "core/rng.h"
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T>
__global__ void dropout_kernel(T* out, const T* x, int64_t n, T threshold, T scale, uint64_t seed, uint64_t offset) {
  DIMIX_GRID_STRIDE(i, n) {
    const T u = philox_uniform<T>(seed, offset, static_cast<uint64_t>(i));
    out[i] = u < threshold ? T(0) : x[i] * scale;
  }
}

void dropout_forward_cuda(const Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  DIMIX_CHECK(x.is_contiguous() && out.is_contiguous(), "dropout: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(out);
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype(), "dropout", [&]<class T>() {
    dropout_kernel<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(out), ptr<T>(x), n, static_cast<T>(p),
                                                                    static_cast<T>(1.0 / (1.0 - p)), seed, offset);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("dropout_forward", dropout_forward_cuda);

}  // namespace dimix::cuda
