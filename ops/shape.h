// Shape ops: differentiable views (reshape, permute, transpose, expand,
// squeeze/unsqueeze, slice/narrow, flatten), contiguous, and the ops that
// assemble or pick elements: cat, stack, index_select, gather, masked_fill,
// where. Views share storage with their input; their backward maps the
// gradient back through the inverse view.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace dimix {

// One dim may be -1 (inferred). A view when the strides allow it, else a copy.
Tensor reshape(const Tensor& x, const Shape& shape);
inline Tensor view(const Tensor& x, const Shape& shape) { return reshape(x, shape); }
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
// Broadcast to `shape` (stride 0 on stretched dims; -1 keeps a dim).
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
// Elements start, start+step, ... < end along dim (negative start/end wrap;
// ends past the size are clamped, as Python slicing).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// A contiguous tensor with the same values (x itself when already contiguous).
Tensor contiguous(const Tensor& x);

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
// out = x.index_select(dim, index) with index 1-d integer.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j][k] = x[index[i][j][k]][j][k] (dim 0), as torch.gather.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Elements where mask != 0 (mask: u8/i32/i64/float, broadcast to x) become value.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// cond != 0 ? a : b, with broadcasting.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- raw helpers (not recorded), used by backward passes -----------------------
Tensor expand_raw(const Tensor& x, const Shape& shape);
// Writes src into the (possibly strided) view dst, on any device.
void assign_(const Tensor& dst, const Tensor& src);
// out = base (copied), then out[... index[i] ...] += src[...] along dim, as torch.scatter_add.
Tensor scatter_add_raw(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src);
// out = zeros [n, ...] with out[index[i]] += src[i] along dim 0 of a 1-d index.
Tensor index_add_raw(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace dimix
