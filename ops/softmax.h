// softmax and log_softmax along one dim (numerically stable: max-shifted).
// Backward: softmax g_in = y * (g - sum(g * y)); log_softmax
// g_in = g - exp(y) * sum(g).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace dimix
