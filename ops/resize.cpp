// Bilinear resize with align_corners=True (see resize.h), as
// torch.nn.UpsamplingBilinear2d: x [N, C, H, W] -> [N, C, out_h, out_w].
// The forward is core/bilinear.h's bilinear_plane (the same taps as the data
// transforms). The backward scatters each output gradient onto its four
// source taps with the same weights; planes (n, c) are independent, so they
// run in parallel and each plane accumulates serially (deterministic).
//
// CUDA kernels dispatched to (tensors contiguous; grad_x arrives zeroed):
//   "resize_bilinear_forward"  void(const Tensor& out, const Tensor& x)
//   "resize_bilinear_backward" void(const Tensor& grad_x, const Tensor& grad_out)
#include "ops/resize.h"

#include <algorithm>

#include "core/bilinear.h"
#include "ops/common.h"

namespace dimix {
namespace {

template <class T>
void resize_forward_cpu(const T* x, T* out, int64_t planes, int64_t H, int64_t W, int64_t out_h, int64_t out_w) {
  const int64_t in_plane = H * W, out_plane = out_h * out_w;
  parallel_for(0, planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(out_plane, 1)), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) bilinear_plane(x + pl * in_plane, H, W, out + pl * out_plane, out_h, out_w);
  });
}

template <class T>
void resize_backward_cpu(T* gx, const T* g, int64_t planes, int64_t H, int64_t W, int64_t out_h, int64_t out_w) {
  std::vector<BilinearTap> ty(out_h), tx(out_w);
  for (int64_t i = 0; i < out_h; ++i) ty[i] = bilinear_tap(i, H, out_h);
  for (int64_t j = 0; j < out_w; ++j) tx[j] = bilinear_tap(j, W, out_w);
  const int64_t in_plane = H * W, out_plane = out_h * out_w;
  parallel_for(0, planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(out_plane, 1)), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      T* dst = gx + pl * in_plane;
      const T* src = g + pl * out_plane;
      std::fill(dst, dst + in_plane, T(0));
      for (int64_t i = 0; i < out_h; ++i) {
        const double wy1 = ty[i].w1, wy0 = 1 - wy1;
        T* row0 = dst + ty[i].i0 * W;
        T* row1 = dst + ty[i].i1 * W;
        for (int64_t j = 0; j < out_w; ++j) {
          const double v = src[i * out_w + j], wx1 = tx[j].w1, wx0 = 1 - wx1;
          row0[tx[j].i0] += static_cast<T>(wy0 * wx0 * v);
          row0[tx[j].i1] += static_cast<T>(wy0 * wx1 * v);
          row1[tx[j].i0] += static_cast<T>(wy1 * wx0 * v);
          row1[tx[j].i1] += static_cast<T>(wy1 * wx1 * v);
        }
      }
    }
  });
}

Tensor resize_backward_raw(const Tensor& g_in, const Shape& in_sizes) {
  const Tensor g = g_in.contiguous_raw();
  Tensor gx = empty(in_sizes, g.dtype(), g.device());
  if (g.device().is_cuda()) {
    fill_(gx, 0);
    cuda_kernel<void(const Tensor&, const Tensor&)>("resize_bilinear_backward")(gx, g);
    return gx;
  }
  const int64_t planes = in_sizes[0] * in_sizes[1];
  dispatch_float(g.dtype(), "resize_bilinear", [&]<class T>() {
    resize_backward_cpu<T>(gx.data<T>(), g.data<T>(), planes, in_sizes[2], in_sizes[3], g.sizes()[2], g.sizes()[3]);
  });
  return gx;
}

}  // namespace

Tensor resize_bilinear(const Tensor& x_in, int64_t out_h, int64_t out_w) {
  check_floating("resize_bilinear", x_in);
  DIMIX_CHECK(x_in.dim() == 4, "resize_bilinear: expected x [N, C, H, W], got shape ", x_in.shape_str());
  DIMIX_CHECK(out_h >= 1 && out_w >= 1, "resize_bilinear: output size must be at least 1x1, got ", out_h, "x", out_w);
  const int64_t N = x_in.sizes()[0], C = x_in.sizes()[1], H = x_in.sizes()[2], W = x_in.sizes()[3];
  DIMIX_CHECK(H >= 1 && W >= 1, "resize_bilinear: input ", x_in.shape_str(), " has an empty image");
  if (H == out_h && W == out_w) return x_in;
  const Tensor x = x_in.contiguous_raw();
  Tensor out = empty({N, C, out_h, out_w}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&)>("resize_bilinear_forward")(out, x);
  } else {
    dispatch_float(x.dtype(), "resize_bilinear",
                   [&]<class T>() { resize_forward_cpu<T>(x.data<T>(), out.data<T>(), N * C, H, W, out_h, out_w); });
  }
  if (needs_grad({x_in}))
    record(out, "resize_bilinear", {x_in}, [in_sizes = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      return {resize_backward_raw(g, in_sizes)};
    });
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"resize_bilinear/mixed_4x5_to_7x3", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return resize_bilinear(x[0], 7, 3); }},
    {"resize_bilinear/up_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {1, 2, 3, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return resize_bilinear(x[0], 5, 4); }},
    {"resize_bilinear/down_to_1x1", [](Generator& g, DType t) { return std::vector{randn_input(g, {1, 1, 3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return resize_bilinear(x[0], 1, 1); }},
    {"resize_bilinear/from_1xW", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 1, 1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return resize_bilinear(x[0], 3, 6); }},
});

}  // namespace dimix
