// conv2d (ops/conv2d.h) against hand-computed values, a direct-loop oracle
// (groups, stride, padding, a rectangular kernel), and, for patch-sized
// kernels, the composite unfold_patches + matmul with its own autograd
// (outputs and every gradient); its argument errors; and CUDA (cuDNN) parity
// when a GPU is present. The f64 gradcheck is in the op registry.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/node.h"
#include "core/rng.h"
#include "cuda/runtime.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/patches.h"
#include "ops/reduce.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Contains;

namespace {

// out[n, o, oh, ow] = b[o] + sum_{c in o's group, ki, kj} w[o, c', ki, kj] x[n, c, oh*s - p + ki, ow*s - p + kj].
std::vector<double> conv_oracle(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p, int64_t G) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3), Og = O / G;
  const int64_t Ho = (H + 2 * p - kh) / s + 1, Wo = (W + 2 * p - kw) / s + 1;
  std::vector<double> out;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double acc = b.defined() ? b.at({o}) : 0.0;
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t ih = oh * s - p + ki, iw = ow * s - p + kj;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += w.at({o, cg, ki, kj}) * x.at({n, (o / Og) * Cg + cg, ih, iw});
              }
          out.push_back(acc);
        }
  (void)C;
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("conv2d: hand-computed 3x3 image with a 2x2 kernel of ones", "[conv2d]") {
  const Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = ones({1, 1, 2, 2});
  const Tensor y = conv2d(x, w);
  CHECK(y.sizes() == Shape{1, 1, 2, 2});
  CHECK(y.to_vector<float>() == std::vector<float>{12, 16, 24, 28});
  CHECK(conv2d(x, w, from_vector<float>({1}, {1})).to_vector<float>() == std::vector<float>{13, 17, 25, 29});
  // padding 1, stride 2: windows [-1..0] and [1..2] in each direction.
  CHECK(conv2d(x, w, Tensor(), 2, 1).to_vector<float>() == std::vector<float>{1, 5, 11, 28});
}

TEST_CASE("conv2d: matches a direct-loop oracle with groups, stride, padding", "[conv2d]") {
  Generator g(3);
  struct Case { Shape x, w; int64_t s, p, G; bool bias; };
  for (const Case& c : {Case{{2, 4, 7, 5}, {6, 2, 3, 2}, 2, 1, 2, true}, Case{{1, 3, 6, 6}, {2, 3, 3, 3}, 1, 2, 1, false},
                        Case{{3, 2, 4, 5}, {2, 1, 1, 1}, 1, 0, 2, true}, Case{{1, 1, 9, 8}, {3, 1, 4, 4}, 3, 0, 1, true}}) {
    INFO("x " << shape_str(c.x) << " w " << shape_str(c.w) << " s " << c.s << " p " << c.p << " G " << c.G);
    const Tensor x = randn(c.x, DType::f64, &g), w = randn(c.w, DType::f64, &g);
    const Tensor b = c.bias ? randn({c.w[0]}, DType::f64, &g) : Tensor();
    const Tensor y = conv2d(x, w, b, c.s, c.p, c.G);
    CHECK(max_abs_diff(y.to_vector<double>(), conv_oracle(x, w, b, c.s, c.p, c.G)) < 1e-12);
  }
}

TEST_CASE("conv2d: a patch-sized kernel equals unfold_patches + matmul, gradients included", "[conv2d]") {
  Generator g(4);
  const int64_t N = 2, C = 3, H = 8, W = 12, O = 5, p = 4;
  const Tensor x0 = randn({N, C, H, W}, DType::f64, &g), w0 = randn({O, C, p, p}, DType::f64, &g),
               b0 = randn({O}, DType::f64, &g), up = randn({N, O, H / p, W / p}, DType::f64, &g);
  auto run = [&](bool composite) {
    const Tensor x = x0.detach(), w = w0.detach(), b = b0.detach();
    for (const Tensor& t : {x, w, b}) t.set_requires_grad(true);
    Tensor y;
    if (composite) {
      const Tensor cols = unfold_patches(x, p);                          // [N, C*p*p, L]
      const Tensor lin = matmul(reshape(w, {O, C * p * p}), cols);        // [N, O, L]
      y = reshape(add(lin, reshape(b, {O, 1})), {N, O, H / p, W / p});
    } else {
      y = conv2d(x, w, b, p, 0);
    }
    backward(sum(mul(y, up)));
    return std::vector<Tensor>{y, x.grad(), w.grad(), b.grad()};
  };
  const auto direct = run(false), composite = run(true);
  for (size_t i = 0; i < direct.size(); ++i) {
    INFO("tensor " << i << " (output, dx, dw, db)");
    CHECK(max_abs_diff(direct[i].to_vector<double>(), composite[i].to_vector<double>()) < 1e-11);
  }
}

TEST_CASE("conv2d: bad arguments name the op and the shapes", "[conv2d]") {
  const Tensor x = zeros({1, 3, 5, 5});
  CHECK_THROWS_WITH(conv2d(x, zeros({4, 1, 3, 3}), Tensor(), 1, 0, 2), Contains("must be divisible by groups = 2"));
  CHECK_THROWS_WITH(conv2d(zeros({1, 4, 5, 5}), zeros({2, 3, 3, 3})), Contains("expects 3 input channels"));
  CHECK_THROWS_WITH(conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3})), Contains("is larger than the padded input"));
  CHECK_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}), zeros({3})), Contains("expected bias [4]"));
  CHECK_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}), Tensor(), 0), Contains("stride must be >= 1"));
  CHECK_THROWS_WITH(conv2d(zeros({3, 5, 5}), zeros({4, 3, 3, 3})), Contains("expected x [N, C, H, W]"));
  CHECK_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}, DType::f64)), Contains("dtype mismatch"));
}

TEST_CASE("conv2d: cuDNN matches the CPU, gradients included", "[conv2d][cuda]") {
  if (!cuda::available()) {
    WARN("SKIPPED: no CUDA device; cuDNN conv2d not checked");
    SUCCEED();
    return;
  }
  Generator g(5);
  const Tensor x0 = randn({2, 4, 9, 7}, DType::f32, &g), w0 = randn({6, 2, 3, 3}, DType::f32, &g),
               b0 = randn({6}, DType::f32, &g);
  auto run = [&](Device dev) {
    const Tensor x = to_device_raw(x0, dev), w = to_device_raw(w0, dev), b = to_device_raw(b0, dev);
    for (const Tensor& t : {x, w, b}) t.set_requires_grad(true);
    const Tensor y = conv2d(x, w, b, 2, 1, 2);
    backward(sum(mul(y, y)));
    return std::vector<Tensor>{y, x.grad(), w.grad(), b.grad()};
  };
  const auto c = run(Device::cpu()), d = run(Device::cuda());
  for (size_t i = 0; i < c.size(); ++i) {
    INFO("tensor " << i << " (output, dx, dw, db)");
    const auto a = d[i].to_vector<double>(), r = c[i].to_vector<double>();
    double scale = 1e-6;
    for (double v : r) scale = std::max(scale, std::abs(v));
    CHECK(max_abs_diff(a, r) / scale < 1e-4);
  }
}
