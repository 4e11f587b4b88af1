// block_linear's test oracle, shared by tests/ops/test_butterfly_ops.cpp and
// tests/ops/test_block_linear_kernels.cpp: the authors' composite
// (PAPERS.md 1.1: x.view(N, -1, b, g, d).transpose(2, 3), one matmul per
// group, bias, the inverse permutation), random cases, and the check that
// block_linear's forward and every gradient equal the composite's.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/block_linear.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/shape.h"

namespace dimix::test {

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto u = a.to_vector<double>(), v = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < u.size(); ++i) m = std::max(m, std::abs(u[i] - v[i]));
  return m;
}
inline double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// |a - b| <= tol * max(1, max |b|), elementwise over the whole tensor.
inline void check_close(const Tensor& got, const Tensor& ref, double tol, const std::string& what) {
  INFO(what << ": max |diff| " << max_abs_diff(got, ref) << ", scale " << max_abs(ref));
  CHECK(max_abs_diff(got, ref) <= tol * std::max(1.0, max_abs(ref)));
}

// fn() run with the pool at `threads` threads, the previous count restored
// afterwards (also when fn throws).
template <class F>
auto on_threads(int threads, F&& fn) {
  struct Restore {
    int before = get_num_threads();
    ~Restore() { set_num_threads(before); }
  } restore;
  set_num_threads(threads);
  return fn();
}

// The leaves' gradients after backward(out, weighting), then cleared.
inline std::vector<Tensor> leaf_grads(const Tensor& out, const Tensor& weighting, const std::vector<Tensor>& leaves) {
  for (const Tensor& t : leaves) t.zero_grad();
  backward(out, weighting);
  std::vector<Tensor> g;
  for (const Tensor& t : leaves) {
    g.push_back(t.grad());
    t.zero_grad();
  }
  return g;
}

// The authors' composite: x around dim as [N, G/g_in, b_in, g_in, d],
// transposed to groups [N, G, b_in, d] (group k = a*g_in + s), one matmul per
// group, bias, and the inverse permutation of the output.
inline Tensor block_linear_oracle(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t dim,
                                  int64_t g_in, int64_t g_out) {
  const int64_t nd = x.dim();
  if (dim < 0) dim += nd;
  const int64_t G = weight.sizes()[0], b_out = weight.sizes()[1], b_in = weight.sizes()[2];
  int64_t N = 1, d = 1;
  for (int64_t i = 0; i < dim; ++i) N *= x.sizes()[i];
  for (int64_t i = dim + 1; i < nd; ++i) d *= x.sizes()[i];
  const Tensor x5 = reshape(contiguous(x), {N, G / g_in, b_in, g_in, d});
  const Tensor xp = reshape(contiguous(transpose(x5, 2, 3)), {N, G, b_in, d});
  Tensor yp = matmul(weight, xp);  // [N, G, b_out, d]
  if (bias.defined()) yp = add(yp, reshape(bias, {G, b_out, 1}));
  const Tensor y5 = reshape(yp, {N, G / g_out, g_out, b_out, d});
  Shape out_shape = x.sizes();
  out_shape[dim] = G * b_out;
  return reshape(contiguous(transpose(y5, 2, 3)), out_shape);
}

// A random x of `shape` requiring grad; with noncontig, every other element
// of a twice-as-wide last dim.
inline Tensor random_input(const Shape& shape, bool noncontig, DType t, Generator& gen) {
  Tensor x;
  if (noncontig) {
    Shape wide = shape;
    wide.back() *= 2;
    x = slice(randn(wide, t, &gen), -1, 0, wide.back(), 2).detach();
    REQUIRE(!x.is_contiguous());
  } else {
    x = randn(shape, t, &gen);
  }
  x.set_requires_grad(true);
  return x;
}

// y equals its reference ref: the values, then every leaf's gradient under
// one random weighting of the output.
inline void check_values_and_grads(const Tensor& y, const Tensor& ref, const std::vector<Tensor>& leaves,
                                   double tol, Generator& gen) {
  check_close(y, ref, tol, "forward");
  const Tensor weighting = randn(ref.sizes(), ref.dtype(), &gen);
  const auto got = leaf_grads(y, weighting, leaves), want = leaf_grads(ref, weighting, leaves);
  for (size_t i = 0; i < leaves.size(); ++i) {
    REQUIRE(got[i].defined());
    check_close(got[i], want[i], tol, "gradient of leaf " + std::to_string(i) + " (0: the input)");
  }
}

// x of shape `x`, weight [G, b_out, b_in], bias [G, b_out] (or none);
// noncontig makes x every other element of a twice-as-wide last dim.
struct BlockLinearCase {
  Shape x;
  int64_t dim, G, b_in, b_out, g_in, g_out;
  bool bias, noncontig;
};

// x, weight, bias (maybe undefined) for a case, all requiring grad.
inline std::vector<Tensor> block_linear_inputs(const BlockLinearCase& c, DType t) {
  Generator gen(17 + c.G * 31 + c.b_in * 7 + c.b_out * 3 + c.g_in * 5 + c.g_out);
  const Tensor x = random_input(c.x, c.noncontig, t, gen);
  const Tensor w = randn({c.G, c.b_out, c.b_in}, t, &gen).set_requires_grad(true);
  const Tensor b = c.bias ? randn({c.G, c.b_out}, t, &gen).set_requires_grad(true) : Tensor();
  return {x, w, b};
}

// Forward, dX, dW and db of block_linear equal the composite's.
inline void check_block_linear(const BlockLinearCase& c, DType t, double tol) {
  const auto in = block_linear_inputs(c, t);
  const Tensor y = block_linear(in[0], in[1], in[2], c.dim, c.g_in, c.g_out);
  const Tensor y_ref = block_linear_oracle(in[0], in[1], in[2], c.dim, c.g_in, c.g_out);
  Generator gen(7);
  std::vector<Tensor> leaves{in[0], in[1]};
  if (c.bias) leaves.push_back(in[2]);
  check_values_and_grads(y, y_ref, leaves, tol, gen);
}

// check_block_linear for every case, in f64 (1e-12) and f32 (f32_tol).
inline void check_block_linear_cases(const std::vector<BlockLinearCase>& cases, double f32_tol) {
  for (const BlockLinearCase& c : cases) {
    INFO("x " << shape_str(c.x) << " dim " << c.dim << " G " << c.G << " b " << c.b_in << "->" << c.b_out
              << " strides " << c.g_in << "->" << c.g_out << (c.bias ? " bias" : "")
              << (c.noncontig ? " noncontig" : ""));
    {
      INFO("f64");
      check_block_linear(c, DType::f64, 1e-12);
    }
    {
      INFO("f32");
      check_block_linear(c, DType::f32, f32_tol);
    }
  }
}

}  // namespace dimix::test
