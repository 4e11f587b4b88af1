// block_mlp: one level of the Butterfly MLP (Algorithm 1, PAPERS.md 1.3) as a
// single op. Along `dim`, the n = G * b positions split into G groups of b
// positions `stride` apart (the butterfly grouping of block_linear.h), and
// every group goes through its own MLP b -> h -> b with exact (erf) GELU:
//
//   y = block_linear(gelu(block_linear(x, w1, b1, dim, stride, 1)), w2, b2, dim, 1, stride)
//
// written back to the positions it came from. Shapes: x [..., n, ...],
// w1 [G, h, b], b1 [G, h], w2 [G, b, h], b2 [G, b] (biases may be undefined);
// y has x's shape.
//
// Why one op: composed, a level writes its hidden activations (h/b times the
// input), a GELU pass reads them and writes f and f', and the backward reads
// all of it back; on the CPU those passes over memory cost more than the
// level's arithmetic. Here a group's hidden block lives in L1 between its two
// products, and the backward recomputes it from x (saved: x only, so a level
// also keeps no activation memory). On a GPU the op runs the composite.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor block_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, int64_t dim,
                 int64_t stride);

}  // namespace dimix
