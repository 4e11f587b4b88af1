// Reductions over dims: sum, mean, max, var (with keepdim), sum_to (the
// reverse of broadcasting, used by every broadcasting op's backward) and
// argmax (not differentiable).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace dimix {

// dims empty = all dims. Negative dims count from the end.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with Bessel's correction `correction` (1 = unbiased, as torch.var).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false, int64_t correction = 1);
// Max over one dim; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums x down to `shape` (x's shape must broadcast from it). Recorded.
Tensor sum_to(const Tensor& x, const Shape& shape);

// Raw (unrecorded) sum over dims, keepdim form; used by backward passes.
Tensor sum_raw(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);

}  // namespace dimix
