// CUDA kernel of core's copy_ on the GPU: "copy_strided" copies src into dst
// (same shape, any strides on either side, dtypes may differ: the value is
// converted with static_cast as on the CPU). Both tensors are on one device.
// Contiguous same-dtype copies never get here (core uses a device memcpy).
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class D, class S>
__global__ void cast_flat(D* dst, const S* src, int64_t n) {
  DIMIX_GRID_STRIDE(i, n) dst[i] = static_cast<D>(src[i]);
}

template <class D, class S>
__global__ void copy_strided_kernel(D* dst, const S* src, int64_t n, StridedIndex<2> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[2];
    idx.offsets(i, off);
    dst[off[0]] = static_cast<D>(src[off[1]]);
  }
}

void copy_strided_cuda(const Tensor& dst, const Tensor& src) {
  DIMIX_CHECK(dst.sizes() == src.sizes(), "copy_: destination shape ", dst.shape_str(),
              " differs from source shape ", src.shape_str());
  DIMIX_CHECK(dst.device() == src.device(), "copy_: a strided or casting copy between two GPUs (",
              src.device().str(), " -> ", dst.device().str(), "); make the source contiguous first");
  DeviceContext& ctx = context_of(dst);
  const int64_t n = dst.numel();
  if (n == 0) return;
  const bool flat = dst.is_contiguous() && src.is_contiguous();
  if (flat && dst.dtype() == src.dtype()) {
    DIMIX_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n * dtype_size(dst.dtype()),
                                     cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  }
  dispatch_all(dst.dtype(), "copy_", [&]<class D>() {
    dispatch_all(src.dtype(), "copy_", [&]<class S>() {
      if (flat) {
        cast_flat<D, S><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<D>(dst), ptr<S>(src), n);
      } else {
        const auto idx = make_strided_index<2>(dst.sizes(), {&dst.strides(), &src.strides()}, "copy_");
        copy_strided_kernel<D, S><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<D>(dst), ptr<S>(src), n, idx);
      }
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("copy_strided", copy_strided_cuda);

}  // namespace dimix::cuda
