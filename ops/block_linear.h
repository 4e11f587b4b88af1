// block_linear: the butterfly block-diagonal product, the core op of every
// Dimension Mixer layer (PAPERS.md 1.1).
//
// x is viewed as [outer, n_in, inner] around `dim` (inner = product of the
// dims after it; inner = 1 when dim is the last). n_in = G * b_in splits into
// G groups of b_in positions gathered with stride g_in = in_stride:
//   group k = a * g_in + s  (0 <= s < g_in)  holds positions
//   a * b_in * g_in + s + j * g_in,  j = 0 .. b_in-1,
// which is exactly the butterfly permutation x.view(-1, b, g).transpose
// without the copy. Each group is multiplied by its own weight:
//   y[o, pos_out(k, jo), i] = bias[k, jo] + sum_j weight[k, jo, j] * x[o, pos_in(k, j), i]
// and written to the output positions of group k under out_stride
// (a' * b_out * g_out + s' + jo * g_out with k = a' * g_out + s').
// Shapes: weight [G, b_out, b_in], bias [G, b_out] or undefined; output has
// n_out = G * b_out along `dim`. G must be divisible by both strides.
// Stride 1 in and out is a plain block-diagonal matrix; G = 1 is a dense
// linear map along `dim` (used for MLP-Mixer token mixing without transposes).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor block_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t dim, int64_t in_stride,
                    int64_t out_stride);

// x as [outer, n, inner] around `dim` (inner: the product of the dims after
// it): a view when the dims before and after `dim` merge, else a contiguous
// copy (never a permuted one); unit inner stride whenever inner > 1. The
// layout the block kernels (block_linear, block_mlp) work in.
Tensor view_around_dim(const Tensor& x, int64_t dim);

// The butterfly strides of PAPERS.md 1.1 for n positions and block size b:
// level i has stride b^i, capped at n/b when b^(i+1) > n (capped = true), or
// b^i uncapped (the Table II Butterfly-MLP rule, valid when n = b^L).
// The number of levels is ceil(log(n)/log(b)) as the authors compute it.
std::vector<int64_t> butterfly_strides(int64_t n, int64_t b, bool capped = true);

}  // namespace dimix
