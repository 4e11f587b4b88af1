// topk_indices: the positions of the k largest entries of every row (not
// differentiable), as torch.topk(x, k, dim).indices with a fixed order.
//
// x: any floating tensor; the rows run along `dim` (length L). Output: int64,
// x's shape with `dim` of size k, contiguous. Within a row the indices come
// by value, largest first (smallest first with largest = false); equal values
// are ordered by lower index first, so the result is fully deterministic
// (torch leaves ties unspecified). NaN counts as larger than every number, as
// in torch. Sparsifiner uses it twice per layer (PAPERS.md 3): the top-8
// basis coefficients and the top-`budget` keys of every query row.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor topk_indices(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

}  // namespace dimix
