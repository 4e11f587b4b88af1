// CUDA kernels of ops/conv1d_depthwise (the M2 mixer's causal depthwise
// convolution): "causal_conv1d_depthwise_forward" and "..._backward".
// x, y, dx, gy contiguous [B, C, L]; weight [C, K]; bias [C] or undefined.
// Tap j reads x at t - s_j, s_j = K - 1 - j:
//   y[b,c,t]  = bias[c] + sum_j w[c,j] x[b,c,t-s_j]
//   dx[b,c,t] = sum_j w[c,j] gy[b,c,t+s_j]
//   dw[c,j]   = sum_{b,t} gy[b,c,t] x[b,c,t-s_j],  db[c] = sum_{b,t} gy[b,c,t]
// y and dx: a thread per element. dw and db: a block per (c, j) / c with a
// fixed thread-to-element assignment and tree reduction (deterministic).
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T>
__global__ void conv1d_forward_kernel(T* y, const T* x, const T* w, const T* bias, int64_t B, int64_t C, int64_t L,
                                      int64_t K) {
  DIMIX_GRID_STRIDE(idx, B * C * L) {
    const int64_t t = idx % L, c = (idx / L) % C;
    const T* xr = x + (idx - t);
    T acc = bias ? bias[c] : T(0);
    for (int64_t j = 0; j < K; ++j) {
      const int64_t s = t - (K - 1 - j);
      if (s >= 0) acc += w[c * K + j] * xr[s];
    }
    y[idx] = acc;
  }
}

template <class T>
__global__ void conv1d_dx_kernel(T* dx, const T* gy, const T* w, int64_t B, int64_t C, int64_t L, int64_t K) {
  DIMIX_GRID_STRIDE(idx, B * C * L) {
    const int64_t t = idx % L, c = (idx / L) % C;
    const T* gr = gy + (idx - t);
    T acc = 0;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t s = t + (K - 1 - j);
      if (s < L) acc += w[c * K + j] * gr[s];
    }
    dx[idx] = acc;
  }
}

// Block q < C*K computes dw[c, j]; blocks C*K .. C*K + C - 1 compute db (when wanted).
template <class T>
__global__ void conv1d_param_grad_kernel(T* dw, T* db, const T* gy, const T* x, int64_t B, int64_t C, int64_t L,
                                         int64_t K) {
  __shared__ T scratch[32];
  const int64_t jobs = (dw ? C * K : 0) + (db ? C : 0);
  for (int64_t q = blockIdx.x; q < jobs; q += gridDim.x) {
    const bool weight = dw && q < C * K;
    const int64_t c = weight ? q / K : q - (dw ? C * K : 0), j = weight ? q % K : 0, shift = K - 1 - j;
    T acc = 0;
    for (int64_t e = threadIdx.x; e < B * L; e += blockDim.x) {
      const int64_t b = e / L, t = e % L;
      const int64_t row = (b * C + c) * L;
      if (!weight) acc += gy[row + t];
      else if (t >= shift) acc += gy[row + t] * x[row + t - shift];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) {
      if (weight) dw[c * K + j] = acc;
      else db[c] = acc;
    }
  }
}

void conv1d_forward_cuda(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
  DIMIX_CHECK(y.is_contiguous() && x.is_contiguous() && w.is_contiguous(),
              "causal_conv1d_depthwise: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(y);
  const int64_t B = x.sizes()[0], C = x.sizes()[1], L = x.sizes()[2], K = w.sizes()[1];
  if (y.numel() == 0) return;
  dispatch_float(x.dtype(), "causal_conv1d_depthwise", [&]<class T>() {
    conv1d_forward_kernel<T><<<grid_for(y.numel(), ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(y), ptr<T>(x), ptr<T>(w), bias.defined() ? ptr<T>(bias.contiguous_raw()) : nullptr, B, C, L, K);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void conv1d_backward_cuda(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& gy, const Tensor& x,
                          const Tensor& w) {
  DIMIX_CHECK(gy.is_contiguous() && x.is_contiguous() && w.is_contiguous(),
              "causal_conv1d_depthwise backward: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(x);
  const int64_t B = x.sizes()[0], C = x.sizes()[1], L = x.sizes()[2], K = w.sizes()[1];
  dispatch_float(x.dtype(), "causal_conv1d_depthwise", [&]<class T>() {
    if (dx.defined() && dx.numel() > 0) {
      conv1d_dx_kernel<T><<<grid_for(dx.numel(), ctx), kThreads, 0, ctx.stream>>>(ptr<T>(dx), ptr<T>(gy), ptr<T>(w),
                                                                                 B, C, L, K);
      DIMIX_CUDA_LAUNCH_CHECK();
    }
    const int64_t jobs = (dw.defined() ? C * K : 0) + (db.defined() ? C : 0);
    if (jobs == 0) return;
    conv1d_param_grad_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(jobs, int64_t(ctx.num_sms) * 32)), kThreads,
                                  0, ctx.stream>>>(dw.defined() ? ptr<T>(dw) : nullptr,
                                                   db.defined() ? ptr<T>(db) : nullptr, ptr<T>(gy), ptr<T>(x), B, C, L,
                                                   K);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("causal_conv1d_depthwise_forward", conv1d_forward_cuda);
DIMIX_REGISTER_KERNEL("causal_conv1d_depthwise_backward", conv1d_backward_cuda);

}  // namespace dimix::cuda
