// CUDA kernels of ops/resize: "resize_bilinear_forward" (x [N, C, H, W] ->
// out [N, C, out_h, out_w], align_corners=True) and "resize_bilinear_backward"
// (grad_x [N, C, H, W], zeroed by the op, from grad_out). Tensors contiguous.
//
// The taps (source indices i0, i1 and weight w1 of each output row and
// column) come from core/bilinear.h's bilinear_tap on the host, so both
// devices use the same taps. Forward: a thread per output pixel, the CPU's
// double-precision blend. Backward without atomics: a thread per input pixel
// gathers from the output pixels whose taps touch it (a contiguous range of
// rows and of columns, found on the host), in the CPU's (row, column, tap)
// order.
#include <vector>

#include "core/bilinear.h"
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

// Device copies of the taps: ints = [y taps (i0, i1) x out_h | x taps x out_w |
// y ranges (lo, hi) x H | x ranges x W], weights = [wy1 x out_h | wx1 x out_w].
struct Taps {
  Tensor ints, weights;
};

Taps make_taps(int64_t H, int64_t W, int64_t out_h, int64_t out_w, Device device) {
  std::vector<int64_t> ints;
  std::vector<double> weights;
  auto taps = [&](int64_t in, int64_t out) {
    for (int64_t i = 0; i < out; ++i) {
      const BilinearTap t = bilinear_tap(i, in, out);
      ints.push_back(t.i0);
      ints.push_back(t.i1);
      weights.push_back(t.w1);
    }
  };
  auto ranges = [&](int64_t in, int64_t out) {
    for (int64_t s = 0; s < in; ++s) {
      int64_t lo = -1, hi = -1;
      for (int64_t i = 0; i < out; ++i) {
        const BilinearTap t = bilinear_tap(i, in, out);
        if (t.i0 == s || t.i1 == s) {
          if (lo < 0) lo = i;
          hi = i + 1;
        }
      }
      ints.push_back(lo < 0 ? 0 : lo);
      ints.push_back(lo < 0 ? 0 : hi);
    }
  };
  taps(H, out_h);
  taps(W, out_w);
  ranges(H, out_h);
  ranges(W, out_w);
  const int64_t ni = static_cast<int64_t>(ints.size()), nw = static_cast<int64_t>(weights.size());
  return {to_device_raw(from_vector<int64_t>(ints, {ni}), device),
          to_device_raw(from_vector<double>(weights, {nw}), device)};
}

template <class T>
__global__ void resize_forward_kernel(T* out, const T* x, const int64_t* ints, const double* weights, int64_t planes,
                                      int64_t H, int64_t W, int64_t out_h, int64_t out_w) {
  const int64_t* ty = ints;
  const int64_t* tx = ints + 2 * out_h;
  const double* wy = weights;
  const double* wx = weights + out_h;
  DIMIX_GRID_STRIDE(idx, planes * out_h * out_w) {
    const int64_t j = idx % out_w, i = (idx / out_w) % out_h, pl = idx / (out_w * out_h);
    const T* src = x + pl * H * W;
    const int64_t y0 = ty[2 * i], y1 = ty[2 * i + 1], x0 = tx[2 * j], x1 = tx[2 * j + 1];
    const double a = wx[j], b = wy[i];
    const double top = (1 - a) * src[y0 * W + x0] + a * src[y0 * W + x1];
    const double bot = (1 - a) * src[y1 * W + x0] + a * src[y1 * W + x1];
    out[idx] = static_cast<T>((1 - b) * top + b * bot);
  }
}

template <class T>
__global__ void resize_backward_kernel(T* gx, const T* g, const int64_t* ints, const double* weights, int64_t planes,
                                       int64_t H, int64_t W, int64_t out_h, int64_t out_w) {
  const int64_t* ty = ints;
  const int64_t* tx = ints + 2 * out_h;
  const int64_t* ry = ints + 2 * out_h + 2 * out_w;
  const int64_t* rx = ry + 2 * H;
  const double* wy = weights;
  const double* wx = weights + out_h;
  DIMIX_GRID_STRIDE(idx, planes * H * W) {
    const int64_t sx = idx % W, sy = (idx / W) % H, pl = idx / (W * H);
    const T* src = g + pl * out_h * out_w;
    T acc = gx[idx];
    for (int64_t i = ry[2 * sy]; i < ry[2 * sy + 1]; ++i) {
      const bool top = ty[2 * i] == sy, bot = ty[2 * i + 1] == sy;
      const double wy1 = wy[i], wy0 = 1 - wy1;
      for (int64_t j = rx[2 * sx]; j < rx[2 * sx + 1]; ++j) {
        const bool left = tx[2 * j] == sx, right = tx[2 * j + 1] == sx;
        const double v = src[i * out_w + j], wx1 = wx[j], wx0 = 1 - wx1;
        if (top && left) acc += static_cast<T>(wy0 * wx0 * v);
        if (top && right) acc += static_cast<T>(wy0 * wx1 * v);
        if (bot && left) acc += static_cast<T>(wy1 * wx0 * v);
        if (bot && right) acc += static_cast<T>(wy1 * wx1 * v);
      }
    }
    gx[idx] = acc;
  }
}

void resize_forward_cuda(const Tensor& out, const Tensor& x) {
  DIMIX_CHECK(x.is_contiguous() && out.is_contiguous() && x.dim() == 4 && out.dim() == 4,
              "resize_bilinear: CUDA kernel expects contiguous 4-d tensors");
  const int64_t planes = x.sizes()[0] * x.sizes()[1], H = x.sizes()[2], W = x.sizes()[3];
  const int64_t out_h = out.sizes()[2], out_w = out.sizes()[3];
  if (out.numel() == 0) return;
  const Taps taps = make_taps(H, W, out_h, out_w, out.device());
  DeviceContext& ctx = context_of(out);
  dispatch_float(x.dtype(), "resize_bilinear", [&]<class T>() {
    resize_forward_kernel<T><<<grid_for(out.numel(), ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(out), ptr<T>(x), ptr<int64_t>(taps.ints), ptr<double>(taps.weights), planes, H, W, out_h, out_w);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void resize_backward_cuda(const Tensor& gx, const Tensor& g) {
  DIMIX_CHECK(gx.is_contiguous() && g.is_contiguous() && gx.dim() == 4 && g.dim() == 4,
              "resize_bilinear backward: CUDA kernel expects contiguous 4-d tensors");
  const int64_t planes = gx.sizes()[0] * gx.sizes()[1], H = gx.sizes()[2], W = gx.sizes()[3];
  const int64_t out_h = g.sizes()[2], out_w = g.sizes()[3];
  if (gx.numel() == 0) return;
  const Taps taps = make_taps(H, W, out_h, out_w, gx.device());
  DeviceContext& ctx = context_of(gx);
  dispatch_float(gx.dtype(), "resize_bilinear", [&]<class T>() {
    resize_backward_kernel<T><<<grid_for(gx.numel(), ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(gx), ptr<T>(g), ptr<int64_t>(taps.ints), ptr<double>(taps.weights), planes, H, W, out_h, out_w);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("resize_bilinear_forward", resize_forward_cuda);
DIMIX_REGISTER_KERNEL("resize_bilinear_backward", resize_backward_cuda);

}  // namespace dimix::cuda
