// block_attention: multi-head softmax attention within groups of tokens,
// the attention of Butterfly Attention (PAPERS.md 1.5, 1.6) and, with one
// group of all tokens, ordinary dense attention.
//
// q, k, v: [B, S, H, hd] (any strides; e.g. views of a fused QKV output).
// Tokens are grouped as block_linear groups them: S = G * block, group
// k = a * stride + s holds positions a * block * stride + s + j * stride,
// j < block; attention runs within each group and each head, and outputs go
// back to the same positions (the butterfly permute / un-permute are folded
// into the indexing). block = S, stride = 1 is dense attention.
//   scores = q k^T / sqrt(hd)  [- 1e6 where key_mask == 0, as the LRA code]
//   out = dropout(softmax(scores)) v
// key_mask: optional [B, S] (any dtype, nonzero = keep). Attention dropout
// uses Philox like dropout(): probabilities are dropped by (seed, offset,
// flat index of the [B, H, group, query, key] score) and the backward redraws
// the same mask. Output: [B, S, H, hd], contiguous.
// Memory: scores exist only per (batch, head, group) inside the kernel; the
// backward recomputes them (flash-attention style), so nothing S x S is kept.
#pragma once
#include "core/rng.h"
#include "core/tensor.h"

namespace dimix {

Tensor block_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t block, int64_t stride,
                       const Tensor& key_mask = Tensor(), double dropout_p = 0.0, Generator* gen = nullptr);

}  // namespace dimix
