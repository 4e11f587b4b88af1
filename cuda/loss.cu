// CUDA kernels of ops/loss: the fused softmax cross-entropy,
// "cross_entropy_forward" and "cross_entropy_backward", over logits [N, C]
// (contiguous) with integer targets [N] (i64 or i32, range-checked on the
// host by the op). A warp per row.
//
// Forward, per row: lse = m + log sum exp(x - m) by the online max/sum of
// softmax.cu, plus sum_c x_c for label smoothing s:
//   loss = (1 - s) * (lse - x_t) + s * (lse - mean_c x_c)
// Backward: dx_c = (exp(x_c - lse) - s / C) * f, then dx_t -= (1 - s) * f,
// with f = grad_loss[i or 0] * scale. Ignored rows: loss 0, lse 0, dx 0.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T, class I>
__global__ void cross_entropy_forward_kernel(T* losses, T* lse, const T* logits, const I* target, int64_t N,
                                             int64_t C, T s, int64_t ignore_index) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T inv_c = T(1) / static_cast<T>(C);
  for (int64_t i = warp; i < N; i += nwarps) {
    const int64_t t = static_cast<int64_t>(target[i]);
    if (t == ignore_index) {
      if (lane == 0) { losses[i] = 0; lse[i] = 0; }
      continue;
    }
    const T* x = logits + i * C;
    T m = -dm::infinity<T>(), se = 0, sx = 0;
    for (int64_t c = lane; c < C; c += 32) {
      online_add(m, se, x[c]);
      sx += x[c];
    }
    for (int o = 16; o > 0; o >>= 1) {
      const T m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, se, o);
      online_merge(m, se, m2, s2);
    }
    sx = warp_sum(sx);
    if (lane == 0) {
      const T l = m + dm::log(se);
      lse[i] = l;
      losses[i] = (T(1) - s) * (l - x[t]) + (s != T(0) ? s * (l - sx * inv_c) : T(0));
    }
  }
}

template <class T, class I>
__global__ void cross_entropy_backward_kernel(T* gx, const T* grad_loss, bool per_row, double scale, const T* logits,
                                              const I* target, const T* lse, int64_t N, int64_t C, T off, T on,
                                              int64_t ignore_index) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  for (int64_t i = warp; i < N; i += nwarps) {
    T* dx = gx + i * C;
    const int64_t t = static_cast<int64_t>(target[i]);
    if (t == ignore_index) {
      for (int64_t c = lane; c < C; c += 32) dx[c] = T(0);
      continue;
    }
    const T f = static_cast<T>(static_cast<double>(grad_loss[per_row ? i : 0]) * scale);
    const T* x = logits + i * C;
    const T l = lse[i];
    for (int64_t c = lane; c < C; c += 32) {
      T v = (dm::exp(x[c] - l) - off) * f;
      if (c == t) v -= on * f;
      dx[c] = v;
    }
  }
}


void cross_entropy_forward_cuda(const Tensor& losses, const Tensor& lse, const Tensor& logits, const Tensor& target,
                                double label_smoothing, int64_t ignore_index) {
  DIMIX_CHECK(logits.is_contiguous() && target.is_contiguous(), "cross_entropy: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(logits);
  const int64_t N = logits.sizes()[0], C = logits.sizes()[1];
  if (N == 0) return;
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    dispatch_index_types(target.dtype(), "cross_entropy", [&]<class I>() {
      cross_entropy_forward_kernel<T, I><<<warp_grid(N, ctx), kThreads, 0, ctx.stream>>>(
          ptr<T>(losses), ptr<T>(lse), ptr<T>(logits), ptr<I>(target), N, C, static_cast<T>(label_smoothing),
          ignore_index);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

void cross_entropy_backward_cuda(const Tensor& gx, const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                                 const Tensor& lse, double scale, double label_smoothing, int64_t ignore_index) {
  DIMIX_CHECK(grad_loss.is_contiguous() && logits.is_contiguous(), "cross_entropy backward: expected contiguous tensors");
  DeviceContext& ctx = context_of(logits);
  const int64_t N = logits.sizes()[0], C = logits.sizes()[1];
  if (N == 0) return;
  // [N] upstream gradient for reduction "none", a 0-d one otherwise.
  const bool per_row = grad_loss.dim() == 1;
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    const T s = static_cast<T>(label_smoothing), off = s / static_cast<T>(C), on = T(1) - s;
    dispatch_index_types(target.dtype(), "cross_entropy", [&]<class I>() {
      cross_entropy_backward_kernel<T, I><<<warp_grid(N, ctx), kThreads, 0, ctx.stream>>>(
          ptr<T>(gx), ptr<T>(grad_loss), per_row, scale, ptr<T>(logits), ptr<I>(target), ptr<T>(lse), N, C, off, on,
          ignore_index);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("cross_entropy_forward", cross_entropy_forward_cuda);
DIMIX_REGISTER_KERNEL("cross_entropy_backward", cross_entropy_backward_cuda);

}  // namespace dimix::cuda
