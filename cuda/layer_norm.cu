// CUDA kernels of ops/layer_norm: "layer_norm_forward" and
// "layer_norm_backward" over x [R, D] (contiguous rows of the last dim).
//
// Forward: a warp per row; mean, then the biased variance from a second pass
// over (x - mean) (as the CPU: no E[x^2] - E[x]^2 cancellation), rstd =
// 1/sqrt(var + eps) in double, y = (x - mean) * rstd [* w] [+ b].
// Backward, xhat = (x - mean) * rstd, gh = g * w:
//   dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))   (a warp per row)
//   dw = sum_rows g * xhat, db = sum_rows g: each chunk of kChunk rows sums
//   its partials (a thread per (chunk, column): neighbouring threads read
//   neighbouring columns), then a thread per column adds the chunks in
//   order. No atomics: the same bits every run.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

constexpr int64_t kChunk = 64;

template <class T>
__global__ void layer_norm_forward_kernel(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t R,
                                          int64_t D, double eps) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T inv_d = T(1) / static_cast<T>(D);
  for (int64_t r = warp; r < R; r += nwarps) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    T s = 0;
    for (int64_t i = lane; i < D; i += 32) s += xr[i];
    const T mu = warp_sum(s) * inv_d;
    T v = 0;
    for (int64_t i = lane; i < D; i += 32) {
      const T c = xr[i] - mu;
      v += c * c;
    }
    const T var = warp_sum(v) * inv_d;
    const T rs = static_cast<T>(1.0 / ::sqrt(static_cast<double>(var) + eps));
    if (lane == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int64_t i = lane; i < D; i += 32) {
      T o = (xr[i] - mu) * rs;
      if (w) o = o * w[i];
      if (b) o = o + b[i];
      yr[i] = o;
    }
  }
}

template <class T>
__global__ void layer_norm_backward_dx(T* gx, const T* g, const T* x, const T* mean, const T* rstd, const T* w,
                                       int64_t R, int64_t D) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T inv_d = T(1) / static_cast<T>(D);
  for (int64_t r = warp; r < R; r += nwarps) {
    const T* xr = x + r * D;
    const T* gr = g + r * D;
    const T mu = mean[r], rs = rstd[r];
    T sum_gh = 0, sum_ghx = 0;
    for (int64_t i = lane; i < D; i += 32) {
      const T gh = w ? gr[i] * w[i] : gr[i];
      sum_gh += gh;
      sum_ghx += gh * ((xr[i] - mu) * rs);
    }
    const T a = warp_sum(sum_gh) * inv_d, bb = warp_sum(sum_ghx) * inv_d;
    T* dxr = gx + r * D;
    for (int64_t i = lane; i < D; i += 32) {
      const T gh = w ? gr[i] * w[i] : gr[i];
      dxr[i] = rs * (gh - a - ((xr[i] - mu) * rs) * bb);
    }
  }
}

// partial_w/partial_b [chunks, D] (either may be null).
template <class T>
__global__ void layer_norm_backward_partials(T* partial_w, T* partial_b, const T* g, const T* x, const T* mean,
                                             const T* rstd, int64_t R, int64_t D, int64_t chunks) {
  DIMIX_GRID_STRIDE(idx, chunks * D) {
    const int64_t c = idx / D, i = idx - c * D;
    const int64_t r1 = (c + 1) * kChunk < R ? (c + 1) * kChunk : R;
    T sw = 0, sb = 0;
    for (int64_t r = c * kChunk; r < r1; ++r) {
      const T gv = g[r * D + i];
      if (partial_w) sw += gv * ((x[r * D + i] - mean[r]) * rstd[r]);
      sb += gv;
    }
    if (partial_w) partial_w[idx] = sw;
    if (partial_b) partial_b[idx] = sb;
  }
}

template <class T>
__global__ void sum_chunks(T* out, const T* partial, int64_t chunks, int64_t D) {
  DIMIX_GRID_STRIDE(i, D) {
    T s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * D + i];
    out[i] = s;
  }
}

template <class T>
const T* opt_ptr(const Tensor& t) {
  return t.defined() ? ptr<T>(t) : nullptr;
}


void layer_norm_forward_cuda(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                             const Tensor& weight, const Tensor& bias, double eps) {
  DIMIX_CHECK(x.is_contiguous() && y.is_contiguous(), "layer_norm: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(y);
  const int64_t D = x.sizes().back(), R = D ? x.numel() / D : 0;
  if (R == 0) return;
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
    layer_norm_forward_kernel<T><<<warp_grid(R, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(y), ptr<T>(mean), ptr<T>(rstd), ptr<T>(x), opt_ptr<T>(weight), opt_ptr<T>(bias), R, D, eps);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void layer_norm_backward_cuda(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& g, const Tensor& x,
                              const Tensor& mean, const Tensor& rstd, const Tensor& weight) {
  DIMIX_CHECK(x.is_contiguous() && g.is_contiguous(), "layer_norm backward: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(x);
  const int64_t D = x.sizes().back(), R = D ? x.numel() / D : 0;
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
    if (R == 0) {  // empty input: zero parameter gradients
      for (const Tensor* t : {&gw, &gb})
        if (t->defined()) DIMIX_CUDA_CHECK(cudaMemsetAsync(t->raw_data(), 0, D * sizeof(T), ctx.stream));
      return;
    }
    if (gx.defined()) {
      layer_norm_backward_dx<T><<<warp_grid(R, ctx), kThreads, 0, ctx.stream>>>(
          ptr<T>(gx), ptr<T>(g), ptr<T>(x), ptr<T>(mean), ptr<T>(rstd), opt_ptr<T>(weight), R, D);
      DIMIX_CUDA_LAUNCH_CHECK();
    }
    if (!gw.defined() && !gb.defined()) return;
    const int64_t chunks = (R + kChunk - 1) / kChunk;
    const Tensor pw = gw.defined() ? empty({chunks, D}, x.dtype(), x.device()) : Tensor();
    const Tensor pb = gb.defined() ? empty({chunks, D}, x.dtype(), x.device()) : Tensor();
    layer_norm_backward_partials<T><<<grid_for(chunks * D, ctx), kThreads, 0, ctx.stream>>>(
        pw.defined() ? ptr<T>(pw) : nullptr, pb.defined() ? ptr<T>(pb) : nullptr, ptr<T>(g), ptr<T>(x),
        ptr<T>(mean), ptr<T>(rstd), R, D, chunks);
    DIMIX_CUDA_LAUNCH_CHECK();
    if (gw.defined()) {
      sum_chunks<T><<<grid_for(D, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(gw), ptr<T>(pw), chunks, D);
      DIMIX_CUDA_LAUNCH_CHECK();
    }
    if (gb.defined()) {
      sum_chunks<T><<<grid_for(D, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(gb), ptr<T>(pb), chunks, D);
      DIMIX_CUDA_LAUNCH_CHECK();
    }
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("layer_norm_forward", layer_norm_forward_cuda);
DIMIX_REGISTER_KERNEL("layer_norm_backward", layer_norm_backward_cuda);

}  // namespace dimix::cuda
