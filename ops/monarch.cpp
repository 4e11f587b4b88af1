// Monarch products (see monarch.h): argument checks and the two strided
// block_linear calls. Letters: n the mixed length, m = sqrt(n) (square form);
// k, q, p and l, s, r the factor shapes of the rectangular form.
#include "ops/monarch.h"

#include "ops/block_linear.h"
#include "ops/common.h"

namespace dimix {

Tensor monarch_matrix(const Tensor& x, const Tensor& L, const Tensor& R, int64_t dim) {
  const char* op = "monarch_matrix";
  check_floating(op, x);
  DIMIX_CHECK(x.dim() >= 1, op, ": expected x with at least 1 dim, got a 0-d tensor");
  const int64_t d = normalize_dim(dim, x.dim(), op);
  DIMIX_CHECK(L.defined() && R.defined() && L.dim() == 3, op, ": expected factors L and R [m, m, m], got ",
              L.defined() ? L.shape_str() : std::string("undefined"), " and ",
              R.defined() ? R.shape_str() : std::string("undefined"));
  const int64_t m = L.sizes()[0];
  DIMIX_CHECK(L.sizes() == Shape({m, m, m}) && R.sizes() == Shape({m, m, m}), op,
              ": expected factors L and R [m, m, m], got ", L.shape_str(), " and ", R.shape_str());
  DIMIX_CHECK(x.sizes()[d] == m * m, op, ": x ", x.shape_str(), " has ", x.sizes()[d], " positions along dim ", dim,
              ", expected n = m^2 = ", m * m, " for factors ", L.shape_str());
  return block_linear(block_linear(x, L, Tensor(), d, m, m), R, Tensor(), d, 1, m);
}

Tensor monarch_multiply(const Tensor& x, const Tensor& w1, const Tensor& w2, int64_t dim) {
  const char* op = "monarch_multiply";
  check_floating(op, x);
  DIMIX_CHECK(x.dim() >= 1, op, ": expected x with at least 1 dim, got a 0-d tensor");
  const int64_t d = normalize_dim(dim, x.dim(), op);
  DIMIX_CHECK(w1.defined() && w2.defined() && w1.dim() == 3 && w2.dim() == 3, op,
              ": expected factors w1 [k, q, p] and w2 [l, s, r], got ",
              w1.defined() ? w1.shape_str() : std::string("undefined"), " and ",
              w2.defined() ? w2.shape_str() : std::string("undefined"));
  const int64_t k = w1.sizes()[0], q = w1.sizes()[1], p = w1.sizes()[2];
  const int64_t l = w2.sizes()[0], r = w2.sizes()[2];
  DIMIX_CHECK(x.sizes()[d] == k * p, op, ": x ", x.shape_str(), " has ", x.sizes()[d], " positions along dim ", dim,
              ", expected k * p = ", k * p, " for w1 ", w1.shape_str());
  DIMIX_CHECK(l * r == k * q, op, ": the factors do not chain: w1 ", w1.shape_str(), " gives k * q = ", k * q,
              " values, w2 ", w2.shape_str(), " takes l * r = ", l * r);
  return block_linear(block_linear(x, w1, Tensor(), d, 1, 1), w2, Tensor(), d, l, l);
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // n = 9 (m = 3), batch of 4.
    {"monarch_matrix/m3", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 9}, t), randn_input(g, {3, 3, 3}, t), randn_input(g, {3, 3, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return monarch_matrix(x[0], x[1], x[2]); }},
    // n = 4 (m = 2) along a middle dim of a non-contiguous x.
    {"monarch_matrix/middle_dim_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 4, 3}, t), randn_input(g, {2, 2, 2}, t), randn_input(g, {2, 2, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return monarch_matrix(x[0], x[1], x[2], 1); }},
    // Rectangular: n = 6 = 2 * 3 -> k q = 2 * 3 = 6 = l r (3 * 2) -> s l = 5 * 3 = 15.
    {"monarch_multiply/rect_6to15", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 6}, t), randn_input(g, {2, 3, 3}, t), randn_input(g, {3, 5, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return monarch_multiply(x[0], x[1], x[2]); }},
    // Shrinking (n = 8 -> 4) along dim 0, size-1 batch.
    {"monarch_multiply/shrink_dim0", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {8, 1}, t), randn_input(g, {2, 2, 4}, t), randn_input(g, {2, 2, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return monarch_multiply(x[0], x[1], x[2], 0); }},
});

}  // namespace dimix
