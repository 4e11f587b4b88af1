// Losses.
//
// cross_entropy: logits [N, C] (or [N, C, d1...] is not supported: flatten
// first), target [N] integer class indices in [0, C), fused log-softmax + NLL.
// label_smoothing s mixes the one-hot target with the uniform distribution as
// PyTorch does: loss_i = (1 - s) * nll_i + s * mean_c(-log p_ic).
// reduction: "mean" (default), "sum" or "none" ([N]).
// Targets equal to ignore_index (default -100) contribute nothing and are
// left out of the mean.
//
// mse_loss: mean (or sum / none) of (a - b)^2, same shapes.
#pragma once
#include <string>

#include "core/tensor.h"

namespace dimix {

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     const std::string& reduction = "mean", int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");

}  // namespace dimix
