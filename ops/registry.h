// The op registry: every differentiable op lists test cases here, from its
// own file, and the registry tests walk them all:
//   - gradcheck in f64 on the CPU for every case (tests/ops/test_registry.cpp);
//   - CUDA vs CPU parity of the output and every input gradient, when a GPU
//     is present (same inputs, cast to f32).
// A new op gets both by registering; no test is copied.
//
//   DIMIX_REGISTER_OP_CASES({
//     {"softmax/lastdim", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 5}, t)}; },
//      [](const std::vector<Tensor>& x) { return softmax(x[0], -1); }},
//   });
//
// Input makers draw fresh values from `g` and mark differentiable inputs with
// requires_grad; awkward sizes (odd tails, size-1 dims, non-contiguous views)
// belong in the cases.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace dimix {

struct OpCase {
  std::string name;  // "op/variant"
  std::function<std::vector<Tensor>(Generator&, DType)> make_inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  GradcheckOptions gradcheck = {};
  // CUDA parity: max |gpu - cpu| / max(|cpu|) over output and gradients (f32).
  double parity_tol = 1e-4;
  bool check_gradients = true;  // false for ops with no differentiable input
};

void register_op_cases(std::vector<OpCase> cases);
const std::vector<OpCase>& op_registry();

// ---- input makers for cases ---------------------------------------------------
// Normal(0,1) values; differentiable by default.
Tensor randn_input(Generator& g, const Shape& shape, DType t, bool requires_grad = true);
// Uniform in [lo, hi) (for log/sqrt/pow domains and the like).
Tensor uniform_input(Generator& g, const Shape& shape, DType t, double lo, double hi, bool requires_grad = true);
// The same as randn_input but a non-contiguous view: the data is allocated with
// the last two dims swapped and transposed back (needs dim >= 2).
Tensor noncontig_input(Generator& g, const Shape& shape, DType t, bool requires_grad = true);
// Integer indices in [0, high).
Tensor index_input(Generator& g, const Shape& shape, int64_t high, DType t = DType::i64);

}  // namespace dimix

#define DIMIX_OPS_CAT2(a, b) a##b
#define DIMIX_OPS_CAT(a, b) DIMIX_OPS_CAT2(a, b)
#define DIMIX_REGISTER_OP_CASES(...) \
  static const bool DIMIX_OPS_CAT(dimix_op_cases_, __LINE__) = (::dimix::register_op_cases(__VA_ARGS__), true)
