// layer_norm over the last dim, as torch.nn.functional.layer_norm with
// normalized_shape = [D]: y = (x - mean) * rstd * weight + bias, with
// rstd = 1/sqrt(var_biased + eps). The forward saves mean and rstd per row
// for the backward. weight and bias ([D]) are optional (undefined tensors).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace dimix
