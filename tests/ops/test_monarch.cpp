// Tests of the Monarch ops (ops/monarch.h) against the authors' code written
// with reshape / transpose / contiguous / matmul: the paper's MonarchMatrix
// listing (PAPERS.md 2.1) and fly's blockdiag_butterfly_multiply, forward and
// every gradient; and against the dense matrix P blockdiag(R) P blockdiag(L) P
// built element by element.
#include <catch2/catch.hpp>

#include "autograd/node.h"
#include "core/rng.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/monarch.h"
#include "ops/reduce.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto u = a.to_vector<double>(), v = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < u.size(); ++i) m = std::max(m, std::abs(u[i] - v[i]));
  return m;
}

// rearrange(x, "... (m n) -> ... (n m)", n=s) on the last dim.
Tensor rearrange_mn(const Tensor& x, int64_t s) {
  Shape split(x.sizes().begin(), x.sizes().end() - 1);
  const int64_t n = x.sizes().back();
  split.push_back(n / s);
  split.push_back(s);
  return reshape(contiguous(transpose(reshape(x, split), -1, -2)), x.sizes());
}

// blockdiag_matmul(x, w) = einsum("bnm,...bm->...bn", w, x.view(..., nb, in)).
Tensor blockdiag_matmul(const Tensor& x, const Tensor& w) {
  Shape blocks(x.sizes().begin(), x.sizes().end() - 1);
  blocks.push_back(w.sizes()[0]);
  blocks.push_back(w.sizes()[2]);
  blocks.push_back(1);
  const Tensor y = matmul(w, reshape(x, blocks));  // [..., nb, out, 1]
  return reshape(y, x.sizes());
}

// The paper's MonarchMatrix.forward, line by line.
Tensor monarch_listing(const Tensor& x, const Tensor& L, const Tensor& R) {
  const int64_t s = L.sizes()[0];
  Tensor y = rearrange_mn(x, s);
  y = blockdiag_matmul(y, L);
  y = rearrange_mn(y, s);
  y = blockdiag_matmul(y, R);
  return rearrange_mn(y, s);
}

// fly's blockdiag_butterfly_multiply forward, line by line (x [B, n]).
Tensor butterfly_listing(const Tensor& x, const Tensor& w1, const Tensor& w2) {
  const int64_t B = x.sizes()[0];
  const int64_t k = w1.sizes()[0], q = w1.sizes()[1], p = w1.sizes()[2];
  const int64_t l = w2.sizes()[0], s = w2.sizes()[1], r = w2.sizes()[2];
  (void)q;
  const Tensor x_reshaped = transpose(reshape(x, {B, k, p}), 0, 1);
  Tensor out1 = matmul(x_reshaped, transpose(w1, -1, -2));  // (k, B, q)
  out1 = transpose(contiguous(transpose(reshape(transpose(out1, 0, 1), {B, r, l}), -1, -2)), 0, 1);  // (l, B, r)
  const Tensor out2 = matmul(out1, transpose(w2, -1, -2));   // (l, B, s)
  return reshape(permute(out2, {1, 2, 0}), {B, s * l});
}

// Forward and gradients of f and g agree on inputs xs (f64).
void check_same(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                const std::function<Tensor(const std::vector<Tensor>&)>& g, const std::vector<Tensor>& xs) {
  const Tensor a = f(xs), b = g(xs);
  CHECK(max_abs_diff(a, b) < 1e-11);
  Generator wg(9);
  const Tensor w = randn(a.sizes(), DType::f64, &wg);
  const auto ga = grad(a, xs, w), gb = grad(b, xs, w);
  for (size_t i = 0; i < xs.size(); ++i) {
    INFO("gradient of input " << i);
    CHECK(max_abs_diff(ga[i], gb[i]) < 1e-11);
  }
}

}  // namespace

TEST_CASE("monarch_matrix equals the paper's MonarchMatrix listing, forward and gradients", "[monarch]") {
  for (int64_t m : {2, 3, 4, 8}) {
    INFO("m = " << m);
    Generator g(m);
    const int64_t n = m * m;
    std::vector<Tensor> xs = {randn({5, n}, DType::f64, &g).set_requires_grad(true),
                              randn({m, m, m}, DType::f64, &g).set_requires_grad(true),
                              randn({m, m, m}, DType::f64, &g).set_requires_grad(true)};
    check_same([](const std::vector<Tensor>& v) { return monarch_matrix(v[0], v[1], v[2]); },
               [](const std::vector<Tensor>& v) { return monarch_listing(v[0], v[1], v[2]); }, xs);
  }
  // Along a middle dim: the same as moving that dim last.
  Generator g(11);
  const Tensor x = randn({2, 16, 3}, DType::f64, &g);
  const Tensor L = randn({4, 4, 4}, DType::f64, &g), R = randn({4, 4, 4}, DType::f64, &g);
  CHECK(max_abs_diff(monarch_matrix(x, L, R, 1), transpose(monarch_listing(transpose(x, 1, 2), L, R), 1, 2)) < 1e-12);
}

TEST_CASE("monarch_matrix is the dense matrix P blockdiag(R) P blockdiag(L) P", "[monarch]") {
  const int64_t m = 3, n = 9;
  Generator g(4);
  const Tensor L = randn({m, m, m}, DType::f64, &g), R = randn({m, m, m}, DType::f64, &g);
  // Column i of M is M e_i: apply to the identity's rows and transpose.
  Tensor eye = zeros({n, n}, DType::f64);
  for (int64_t i = 0; i < n; ++i) eye.data<double>()[i * n + i] = 1;
  const Tensor M = transpose(monarch_matrix(eye, L, R), 0, 1);
  // Explicit factors: P[i][j] = 1 when i = (j % m) * m + j / m; blockdiag(W)[b m + o][b m + i] = W[b][o][i].
  auto perm = [&] {
    Tensor P = zeros({n, n}, DType::f64);
    for (int64_t j = 0; j < n; ++j) P.data<double>()[((j % m) * m + j / m) * n + j] = 1;
    return P;
  };
  auto blockdiag = [&](const Tensor& W) {
    Tensor D = zeros({n, n}, DType::f64);
    const auto w = W.to_vector<double>();
    for (int64_t b = 0; b < m; ++b)
      for (int64_t o = 0; o < m; ++o)
        for (int64_t i = 0; i < m; ++i) D.data<double>()[(b * m + o) * n + b * m + i] = w[(b * m + o) * m + i];
    return D;
  };
  const Tensor P = perm();
  const Tensor dense = matmul(P, matmul(blockdiag(R), matmul(P, matmul(blockdiag(L), P))));
  CHECK(max_abs_diff(M, dense) < 1e-12);
  // A hand-checked entry: e_0 passes P unchanged, meets L[0][:, 0] (now at
  // positions o m after P), and only o = 0 lands in R's block 0 at index 0.
  CHECK(M.at({0, 0}) == Approx(R.at({0, 0, 0}) * L.at({0, 0, 0})));
  // Not symmetric: the two factors really differ.
  CHECK(max_abs_diff(M, transpose(M, 0, 1)) > 1e-3);
}

TEST_CASE("monarch_multiply equals fly's blockdiag_butterfly_multiply, forward and gradients", "[monarch]") {
  struct Case { int64_t k, q, p, l, s, r; };
  // Square 16 -> 16 (4 blocks), expanding 768-like 8 -> 32 (in_ext < out_ext), shrinking 32 -> 8, odd 6 -> 15.
  for (const Case& c : {Case{4, 4, 4, 4, 4, 4}, Case{4, 2, 2, 4, 8, 2}, Case{4, 2, 8, 4, 2, 2}, Case{2, 3, 3, 3, 5, 2}}) {
    INFO("w1 [" << c.k << ", " << c.q << ", " << c.p << "], w2 [" << c.l << ", " << c.s << ", " << c.r << "]");
    Generator g(c.k * 100 + c.s);
    std::vector<Tensor> xs = {randn({3, c.k * c.p}, DType::f64, &g).set_requires_grad(true),
                              randn({c.k, c.q, c.p}, DType::f64, &g).set_requires_grad(true),
                              randn({c.l, c.s, c.r}, DType::f64, &g).set_requires_grad(true)};
    check_same([](const std::vector<Tensor>& v) { return monarch_multiply(v[0], v[1], v[2]); },
               [](const std::vector<Tensor>& v) { return butterfly_listing(v[0], v[1], v[2]); }, xs);
  }
}

TEST_CASE("monarch ops: bad shapes are clear errors", "[monarch][errors]") {
  const Tensor f = zeros({3, 3, 3});
  CHECK_THROWS_WITH(monarch_matrix(zeros({2, 8}), f, f), Contains("monarch_matrix") && Contains("n = m^2 = 9"));
  CHECK_THROWS_WITH(monarch_matrix(zeros({2, 9}), f, zeros({3, 3, 2})),
                    Contains("expected factors L and R [m, m, m]") && Contains("[3, 3, 2]"));
  CHECK_THROWS_WITH(monarch_multiply(zeros({2, 6}), zeros({2, 3, 3}), zeros({4, 5, 2})),
                    Contains("do not chain") && Contains("k * q = 6") && Contains("l * r = 8"));
  CHECK_THROWS_WITH(monarch_multiply(zeros({2, 7}), zeros({2, 3, 3}), zeros({3, 5, 2})), Contains("k * p = 6"));
}
