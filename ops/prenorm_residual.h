// PreNormResidual: what the fused block ops (block_mlp, block_chain) can do
// around their products in the same pass over memory. With it, the op f
// computes
//
//   y = (residual ? x : 0) + f(norm ? layer_norm(x, weight, bias, eps) : x)
//
// with layer_norm over x's last dim (layer_norm.h; weight and bias [C] or
// undefined). That is the pre-norm residual branch of an MLP-Mixer block,
// x + mix(LN(x)), as one op: the normalised x and f's output never reach
// memory, and the backward recomputes the norm per slab from x.
#pragma once
#include <functional>

#include "core/tensor.h"

namespace dimix {

struct PreNormResidual {
  bool norm = false;
  Tensor weight, bias;  // layer_norm's [C], each may be undefined
  double eps = 1e-5;
  bool residual = false;  // needs f to keep the length of the mixed dim
};

// Errors naming `op` for a norm whose weight or bias is not [C] (x's last
// dim) or of another dtype or device, for weight or bias given with the
// norm off, and for a residual around an f whose output length along `dim`
// (n_out) is not x's.
void check_prenorm_residual(const char* op, const Tensor& x, const PreNormResidual& a, int64_t n_out, int64_t dim);

// The definition above composed from layer_norm, f and an add: what the
// fused ops run on the GPU, and their oracle in the tests.
Tensor prenorm_residual_composite(const Tensor& x, const PreNormResidual& a,
                                  const std::function<Tensor(const Tensor&)>& f);

}  // namespace dimix
