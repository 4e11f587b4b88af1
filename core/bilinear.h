// Bilinear interpolation with align_corners=True on raw CPU planes, shared by
// the differentiable op (ops/resize.h) and the image transforms (data/).
// Source coordinate of output index i: i * (in - 1) / (out - 1), or 0 when
// out == 1 (PyTorch's UpsamplingBilinear2d).
#pragma once
#include <cstdint>

namespace dimix {

struct BilinearTap {
  int64_t i0, i1;  // neighbouring source indices
  double w1;       // weight of i1 (i0 gets 1 - w1)
};

inline BilinearTap bilinear_tap(int64_t i, int64_t in, int64_t out) {
  const double scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  const double src = i * scale;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in - 1) i0 = in - 1;
  const int64_t i1 = i0 + 1 < in ? i0 + 1 : in - 1;
  return {i0, i1, src - static_cast<double>(i0)};
}

// dst [out_h, out_w] from src [in_h, in_w], both contiguous planes.
template <class S, class D>
void bilinear_plane(const S* src, int64_t in_h, int64_t in_w, D* dst, int64_t out_h, int64_t out_w) {
  for (int64_t y = 0; y < out_h; ++y) {
    const BilinearTap ty = bilinear_tap(y, in_h, out_h);
    for (int64_t x = 0; x < out_w; ++x) {
      const BilinearTap tx = bilinear_tap(x, in_w, out_w);
      const double top = (1 - tx.w1) * src[ty.i0 * in_w + tx.i0] + tx.w1 * src[ty.i0 * in_w + tx.i1];
      const double bot = (1 - tx.w1) * src[ty.i1 * in_w + tx.i0] + tx.w1 * src[ty.i1 * in_w + tx.i1];
      dst[y * out_w + x] = static_cast<D>((1 - ty.w1) * top + ty.w1 * bot);
    }
  }
}

}  // namespace dimix
