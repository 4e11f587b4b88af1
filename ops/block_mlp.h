// block_mlp: the levels of a Butterfly MLP (Algorithm 1, PAPERS.md 1.3) as a
// single op. Along `dim`, the n = G * b positions split into G groups of b
// positions `stride` apart (the butterfly grouping of block_linear.h), and
// every group goes through its own MLP b -> h -> b with exact (erf) GELU:
//
//   level(x) = block_linear(gelu(block_linear(x, w1, b1, dim, stride, 1)), w2, b2, dim, 1, stride)
//
// written back to the positions it came from; block_mlp(x, levels) applies
// the levels in order. Shapes per level: w1 [G, h, b], b1 [G, h],
// w2 [G, b, h], b2 [G, b] (biases may be undefined), with G * b = n; y has
// x's shape.
//
// Why one op: composed, every level writes its hidden activations (h/b times
// the input), a GELU pass reads them and writes f and f', and the backward
// reads all of it back; on the CPU those passes over memory cost more than
// the arithmetic. Here the op takes one slab of x at a time (one row of
// `outer` for a middle dim, 128 rows transposed for the last dim), runs every
// level on it in cache, and writes y once; the backward recomputes the
// levels' inputs and hidden blocks from x (saved: x only, so the levels keep
// no activation memory). On a GPU the op runs the composite.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/prenorm_residual.h"

namespace dimix {

struct BlockMlpLevel {
  Tensor w1, b1, w2, b2;  // b1, b2 may be undefined
  int64_t stride = 1;
};

// With `around` (prenorm_residual.h), x + block_mlp(layer_norm(x)) and the
// like in the same pass: the pre-norm residual branch of a mixer block.
Tensor block_mlp(const Tensor& x, const std::vector<BlockMlpLevel>& levels, int64_t dim,
                 const PreNormResidual& around = {});

// One level.
Tensor block_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, int64_t dim,
                 int64_t stride);

}  // namespace dimix
