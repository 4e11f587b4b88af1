// Non-overlapping 2-D patches, as torch.nn.Unfold / Fold with
// kernel_size = stride = p (no padding, no dilation).
//
// unfold_patches: x [N, C, H, W] -> [N, C*p*p, L], L = (H/p) * (W/p), patches
// in row-major order, feature index c*p*p + ki*p + kj. H and W must be
// multiples of p. fold_patches is its exact inverse (also its adjoint, since
// patches do not overlap): cols [N, C*p*p, L] -> [N, C, H, W].
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor unfold_patches(const Tensor& x, int64_t p);
Tensor fold_patches(const Tensor& cols, int64_t H, int64_t W, int64_t p);

}  // namespace dimix
