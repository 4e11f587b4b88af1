// block_chain: several butterfly block products along one dim, each
// optionally followed by an activation, as a single op:
//
//   y = act_L(block_linear(... act_1(block_linear(x, W_1, b_1, dim, in_1, out_1)) ...,
//             W_L, b_L, dim, in_L, out_L))
//
// Each step is a block_linear (block_linear.h: weight [G, b_out, b_in], bias
// [G, b_out] or undefined, input and output strides) and an activation:
// "" (none), "elu" (alpha 1) or "gelu" (exact). A step's input length is the
// previous step's output length G * b_out. The Butterfly-Linear mixer
// (PAPERS.md 1.2 b: two Monarch-style sparse layers with ELU between) is one
// chain of four steps.
//
// Why one op: composed, every step writes its output and every activation
// reads and writes it again, and the backward reads them all back; on the
// CPU those passes over memory cost more than the small block products. Here
// the op takes one slab of x at a time (ops/slab.h), runs every step on it in
// cache and writes y once; the backward recomputes the steps' outputs per
// slab from x (saved: x only). On a GPU the op runs the composite.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/prenorm_residual.h"

namespace dimix {

struct BlockChainStep {
  Tensor weight, bias;  // [G, b_out, b_in], [G, b_out] or undefined
  int64_t in_stride = 1, out_stride = 1;
  std::string activation;  // "", "elu" or "gelu"
};

// With `around` (prenorm_residual.h), x + block_chain(layer_norm(x)) and the
// like in the same pass (a residual needs the chain to keep the length).
Tensor block_chain(const Tensor& x, const std::vector<BlockChainStep>& steps, int64_t dim,
                   const PreNormResidual& around = {});

}  // namespace dimix
