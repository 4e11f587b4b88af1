// embedding: ids (i64 or i32, any shape) index rows of weight [V, D], giving
// [..., D]. Out-of-range ids are an Error naming the id and V. The backward
// accumulates rows deterministically (a fixed order, no atomics).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace dimix
