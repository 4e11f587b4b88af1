// PreNormResidual (see prenorm_residual.h): the checks the fused ops share,
// and the composite they run where they have no fused kernel (the GPU).
#include "ops/prenorm_residual.h"

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/layer_norm.h"

namespace dimix {

void check_prenorm_residual(const char* op, const Tensor& x, const PreNormResidual& a, int64_t n_out, int64_t dim) {
  if (a.norm) {
    const int64_t C = x.sizes().back();
    for (const Tensor* t : {&a.weight, &a.bias}) {
      if (!t->defined()) continue;
      check_same_device(op, x, *t);
      check_same_dtype(op, x, *t);
      DIMIX_CHECK(t->dim() == 1 && t->sizes()[0] == C, op, ": expected the norm's ",
                  t == &a.weight ? "weight" : "bias", " [", C, "] (x's last dim), got ", t->shape_str());
    }
    DIMIX_CHECK(a.eps > 0, op, ": expected the norm's eps > 0, got ", a.eps);
  } else {
    DIMIX_CHECK(!a.weight.defined() && !a.bias.defined(), op,
                ": the norm's weight and bias are given but norm is off");
  }
  DIMIX_CHECK(!a.residual || n_out == x.sizes()[dim], op, ": a residual needs the output length along dim ", dim,
              " to equal the input's ", x.sizes()[dim], ", got ", n_out);
}

Tensor prenorm_residual_composite(const Tensor& x, const PreNormResidual& a, const std::function<Tensor(const Tensor&)>& f) {
  const Tensor y = f(a.norm ? layer_norm(x, a.weight, a.bias, a.eps) : x);
  return a.residual ? x + y : y;
}

}  // namespace dimix
