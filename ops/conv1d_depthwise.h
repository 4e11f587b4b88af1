// The short causal depthwise convolution of the M2 / Hyena sequence mixer
// (PAPERS.md 2.3 step 2): nn.Conv1d(C, C, K, groups=C, padding=K-1) keeping
// the first L outputs, so output t sees inputs t-K+1 .. t only:
//   y[b, c, t] = bias[c] + sum_{j < K} w[c, j] x[b, c, t + j - (K - 1)]
// (x = 0 before position 0). Shapes: x [B, C, L] (any strides; a transposed
// [B, L, C] tensor is read in place), weight [C, K] (PyTorch's [C, 1, K]
// without the 1), bias [C] or undefined; y [B, C, L], laid out in memory like
// x (channels-last x gives channels-last y).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor causal_conv1d_depthwise(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace dimix
