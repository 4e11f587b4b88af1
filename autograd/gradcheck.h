// gradcheck: backward against central differences, in f64.
//
// For f(inputs) -> out and a fixed random weighting w of out's elements, the
// analytical vector-Jacobian product (backward with grad = w) must equal the
// numerical d<w, f>/dx_i = (<w, f(x + eps e_i)> - <w, f(x - eps e_i)>) / 2eps
// for every element of every input that requires grad. Inputs may be any
// views (non-contiguous, offset); perturbations write through their strides,
// so expanded (stride-0) inputs are not allowed.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dimix {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 1234;  // for the output weighting
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;  // over all checked elements
  std::string message;       // first failure, naming input and element
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts = {});

}  // namespace dimix
