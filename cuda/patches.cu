// CUDA kernels of ops/patches: "unfold_patches" (x [N, C, H, W] -> cols
// [N, C*p*p, L]) and "fold_patches" (its inverse), non-overlapping p x p
// patches, L = Hp * Wp, Hp = H / p, Wp = W / p:
//   cols[n, c*p*p + ki*p + kj, ph*Wp + pw] = x[n, c, ph*p + ki, pw*p + kj]
// A permutation: a thread per cols element copies one way or the other, and
// no two threads touch one element. Tensors contiguous.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T, bool ToCols>
__global__ void patches_kernel(T* x, T* cols, int64_t total, int64_t C, int64_t H, int64_t W, int64_t p) {
  const int64_t Hp = H / p, Wp = W / p, L = Hp * Wp, F = C * p * p;
  DIMIX_GRID_STRIDE(i, total) {
    const int64_t l = i % L, f = (i / L) % F, n = i / (L * F);
    const int64_t c = f / (p * p), ki = (f / p) % p, kj = f % p;
    const int64_t ph = l / Wp, pw = l % Wp;
    const int64_t xi = ((n * C + c) * H + ph * p + ki) * W + pw * p + kj;
    if constexpr (ToCols) cols[i] = x[xi];
    else x[xi] = cols[i];
  }
}

template <bool ToCols>
void patches_cuda(const Tensor& x, const Tensor& cols, int64_t p, const char* op) {
  DIMIX_CHECK(x.is_contiguous() && cols.is_contiguous() && x.dim() == 4, op, ": CUDA kernel expects contiguous ",
              "x [N, C, H, W] and cols");
  DeviceContext& ctx = context_of(x);
  const int64_t total = cols.numel();
  if (total == 0) return;
  dispatch_float(x.dtype(), op, [&]<class T>() {
    patches_kernel<T, ToCols><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(x), ptr<T>(cols), total, x.sizes()[1], x.sizes()[2], x.sizes()[3], p);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void unfold_patches_cuda(const Tensor& cols, const Tensor& x, int64_t p) { patches_cuda<true>(x, cols, p, "unfold_patches"); }
void fold_patches_cuda(const Tensor& x, const Tensor& cols, int64_t p) { patches_cuda<false>(x, cols, p, "fold_patches"); }

}  // namespace

DIMIX_REGISTER_KERNEL("unfold_patches", unfold_patches_cuda);
DIMIX_REGISTER_KERNEL("fold_patches", fold_patches_cuda);

}  // namespace dimix::cuda
