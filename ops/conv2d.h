// 2-D convolution, as torch.nn.functional.conv2d with dilation 1.
//
// x [N, C, H, W], weight [O, C / groups, kh, kw], bias [O] or undefined;
// the same stride and zero padding along H and W. Output [N, O, Ho, Wo] with
// Ho = (H + 2 * padding - kh) / stride + 1 (and likewise Wo). groups splits C
// and O into `groups` independent convolutions (C and O divisible by it).
// CPU: im2col + gemm<T> (ops/linalg.h). GPU: cuDNN (cuda/conv2d.cu).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), int64_t stride = 1,
              int64_t padding = 0, int64_t groups = 1);

}  // namespace dimix
