// Bilinear resize with align_corners=True, as torch.nn.UpsamplingBilinear2d:
// x [N, C, H, W] -> [N, C, out_h, out_w]; source coordinate of output pixel
// i is i * (H - 1) / (out_h - 1) (0 when out_h == 1). Identity when the size
// is unchanged.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w);

}  // namespace dimix
