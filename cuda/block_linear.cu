// CUDA kernels of ops/block_linear, the butterfly block-diagonal product:
// "block_linear_forward" and "block_linear_backward_weight" (the input
// gradient is the forward with W^T and the sides swapped; the bias gradient
// is a sum; both are composed by the op).
//
// x3 [outer, n_in, inner] (any strides), y3/dy3 [outer, n_out, inner]
// (contiguous), weight [G, b_out, b_in] (contiguous), bias [G, b_out] or
// undefined. Group k = a * g + s of a side with block b and stride g holds
// positions a*b*g + s + j*g, j < b (PAPERS.md 1.1).
// Part-1 kernels, written to be obviously right: a thread per output element
// (forward), and for the weight gradient a thread per (chunk of rows, weight)
// partial sum followed by an ordered sum over chunks (deterministic).
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

constexpr int64_t kRowChunk = 256;

__device__ __forceinline__ int64_t group_base(int64_t k, int64_t b, int64_t g) { return (k / g) * b * g + k % g; }

template <class T>
__global__ void block_linear_forward_kernel(T* y, const T* x, const T* w, const T* bias, int64_t outer, int64_t inner,
                                            int64_t G, int64_t b_in, int64_t b_out, int64_t g_in, int64_t g_out,
                                            int64_t sxo, int64_t sxn, int64_t sxi) {
  const int64_t n_out = G * b_out;
  DIMIX_GRID_STRIDE(idx, outer * n_out * inner) {
    const int64_t i = idx % inner, p = (idx / inner) % n_out, o = idx / (inner * n_out);
    const int64_t a = p / (b_out * g_out), rem = p % (b_out * g_out), jo = rem / g_out, s = rem % g_out;
    const int64_t k = a * g_out + s;
    const T* xk = x + o * sxo + group_base(k, b_in, g_in) * sxn + i * sxi;
    const T* wk = w + (k * b_out + jo) * b_in;
    T acc = bias ? bias[k * b_out + jo] : T(0);
    for (int64_t j = 0; j < b_in; ++j) acc += wk[j] * xk[j * g_in * sxn];
    y[idx] = acc;
  }
}

// partial[c, k, jo, j] = sum over rows r of chunk c of dy[r, pos_out(k, jo)] * x[r, pos_in(k, j)].
template <class T>
__global__ void block_linear_weight_partials(T* partial, const T* dy, const T* x, int64_t outer, int64_t inner,
                                             int64_t G, int64_t b_in, int64_t b_out, int64_t g_in, int64_t g_out,
                                             int64_t sxo, int64_t sxn, int64_t sxi, int64_t chunks) {
  const int64_t n_out = G * b_out, per = G * b_out * b_in, R = outer * inner;
  DIMIX_GRID_STRIDE(idx, chunks * per) {
    const int64_t c = idx / per, e = idx - c * per;
    const int64_t k = e / (b_out * b_in), jo = (e / b_in) % b_out, j = e % b_in;
    const int64_t pin = group_base(k, b_in, g_in) + j * g_in, pout = group_base(k, b_out, g_out) + jo * g_out;
    const int64_t r1 = (c + 1) * kRowChunk < R ? (c + 1) * kRowChunk : R;
    T acc = 0;
    for (int64_t r = c * kRowChunk; r < r1; ++r) {
      const int64_t o = r / inner, i = r - o * inner;
      acc += dy[(o * n_out + pout) * inner + i] * x[o * sxo + pin * sxn + i * sxi];
    }
    partial[idx] = acc;
  }
}

template <class T>
__global__ void sum_partials(T* out, const T* partial, int64_t chunks, int64_t per) {
  DIMIX_GRID_STRIDE(e, per) {
    T s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * per + e];
    out[e] = s;
  }
}

void block_linear_forward_cuda(const Tensor& y3, const Tensor& x3, const Tensor& w, const Tensor& bias, int64_t g_in,
                               int64_t g_out) {
  DIMIX_CHECK(y3.is_contiguous() && w.is_contiguous() && (!bias.defined() || bias.is_contiguous()) && x3.dim() == 3,
              "block_linear: CUDA kernel expects a 3-d x and contiguous y, weight and bias");
  DeviceContext& ctx = context_of(y3);
  const int64_t outer = x3.sizes()[0], inner = x3.sizes()[2];
  const int64_t G = w.sizes()[0], b_out = w.sizes()[1], b_in = w.sizes()[2];
  if (y3.numel() == 0) return;
  dispatch_float(x3.dtype(), "block_linear", [&]<class T>() {
    block_linear_forward_kernel<T><<<grid_for(y3.numel(), ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(y3), ptr<T>(x3), ptr<T>(w), bias.defined() ? ptr<T>(bias) : nullptr, outer, inner, G, b_in, b_out,
        g_in, g_out, x3.strides()[0], x3.strides()[1], x3.strides()[2]);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void block_linear_backward_weight_cuda(const Tensor& dw, const Tensor& dy3, const Tensor& x3, int64_t g_in,
                                       int64_t g_out) {
  DIMIX_CHECK(dw.is_contiguous() && dy3.is_contiguous() && x3.dim() == 3,
              "block_linear backward: CUDA kernel expects contiguous dw and dy");
  DeviceContext& ctx = context_of(dw);
  const int64_t outer = x3.sizes()[0], inner = x3.sizes()[2];
  const int64_t G = dw.sizes()[0], b_out = dw.sizes()[1], b_in = dw.sizes()[2], per = G * b_out * b_in;
  const int64_t R = outer * inner;
  if (per == 0) return;
  if (R == 0) {
    DIMIX_CUDA_CHECK(cudaMemsetAsync(dw.raw_data(), 0, per * dtype_size(dw.dtype()), ctx.stream));
    return;
  }
  const int64_t chunks = (R + kRowChunk - 1) / kRowChunk;
  const Tensor partial = empty({chunks, per}, dw.dtype(), dw.device());
  dispatch_float(dw.dtype(), "block_linear", [&]<class T>() {
    block_linear_weight_partials<T><<<grid_for(chunks * per, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(partial), ptr<T>(dy3), ptr<T>(x3), outer, inner, G, b_in, b_out, g_in, g_out, x3.strides()[0],
        x3.strides()[1], x3.strides()[2], chunks);
    DIMIX_CUDA_LAUNCH_CHECK();
    sum_partials<T><<<grid_for(per, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(dw), ptr<T>(partial), chunks, per);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("block_linear_forward", block_linear_forward_cuda);
DIMIX_REGISTER_KERNEL("block_linear_backward_weight", block_linear_backward_weight_cuda);

}  // namespace dimix::cuda
