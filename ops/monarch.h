// Monarch matrices (PAPERS.md 2.1) as two strided block-diagonal products:
// every permutation of the authors' code is folded into block_linear's
// group strides (ops/block_linear.h), so nothing is rearranged in memory and
// the gradients are block_linear's own.
//
// monarch_matrix: the paper's square MonarchMatrix, M = P R P L P for
// n = m^2, P the m x m transpose permutation, L and R [m, m, m] (m blocks of
// m x m). Folded: P L P reads the groups k + j m (stride m) and writes them
// back with stride m; the final R P reads contiguous groups and writes with
// stride m:
//   monarch_matrix(x) = block_linear(block_linear(x, L, in m, out m), R, in 1, out m)
//
// monarch_multiply: the general rectangular product of fly / m2
// (blockdiag_butterfly_multiply), w1 [k, q, p] and w2 [l, s, r] with
// n = k p inputs and l r = k q: the first factor maps contiguous groups of p
// to contiguous groups of q; the second reads the groups i + j l (stride l)
// and writes output s_idx * l + l_idx (stride l); s l outputs:
//   monarch_multiply(x) = block_linear(block_linear(x, w1, in 1, out 1), w2, in l, out l)
//
// Both mix dimension `dim` of x (any rank, any strides), like block_linear.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor monarch_matrix(const Tensor& x, const Tensor& L, const Tensor& R, int64_t dim = -1);
Tensor monarch_multiply(const Tensor& x, const Tensor& w1, const Tensor& w2, int64_t dim = -1);

}  // namespace dimix
