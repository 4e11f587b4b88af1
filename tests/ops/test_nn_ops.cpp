// The neural-network ops against hand-computed values and invariants:
// softmax / log_softmax, layer_norm, cross_entropy and mse_loss, embedding,
// dropout (Philox mask rule), unfold/fold patches, bilinear resize, and their
// error messages. Gradients of every op are also gradchecked through the op
// registry (tests/ops/test_registry.cpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <numeric>

#include "autograd/node.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "ops/dropout.h"
#include "ops/embedding.h"
#include "ops/layer_norm.h"
#include "ops/loss.h"
#include "ops/patches.h"
#include "ops/resize.h"
#include "ops/shape.h"
#include "ops/softmax.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}
}  // namespace

// ---- softmax ------------------------------------------------------------------------
TEST_CASE("softmax of a known vector matches the hand-computed values", "[nn][softmax]") {
  const Tensor x = from_vector<float>({1.0f, 2.0f, 3.0f, -1.0f}, {4});
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(-1.0);
  const auto y = softmax(x, 0).to_vector<double>();
  CHECK(y[0] == Approx(std::exp(1.0) / z).epsilon(1e-6));
  CHECK(y[1] == Approx(std::exp(2.0) / z).epsilon(1e-6));
  CHECK(y[2] == Approx(std::exp(3.0) / z).epsilon(1e-6));
  CHECK(y[3] == Approx(std::exp(-1.0) / z).epsilon(1e-6));
  const auto ly = log_softmax(x, -1).to_vector<double>();
  CHECK(ly[2] == Approx(3.0 - std::log(z)).epsilon(1e-6));
  CHECK(ly[3] == Approx(-1.0 - std::log(z)).epsilon(1e-6));
}

TEST_CASE("softmax rows sum to 1 along the last and a middle dim", "[nn][softmax]") {
  Generator g(5);
  const Tensor x = randn({5, 37}, DType::f32, &g, 0.0, 3.0);
  const auto y = softmax(x, -1).to_vector<double>();
  for (int r = 0; r < 5; ++r) {
    double s = 0;
    for (int c = 0; c < 37; ++c) s += y[r * 37 + c];
    CHECK(s == Approx(1.0).epsilon(1e-5));
  }
  const Tensor x3 = randn({3, 4, 5}, DType::f64, &g);
  const Tensor y3 = softmax(x3, 1);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t c = 0; c < 5; ++c) {
      double s = 0;
      for (int64_t b = 0; b < 4; ++b) s += y3.at({a, b, c});
      CHECK(s == Approx(1.0).epsilon(1e-12));
    }
  // The middle-dim path agrees with moving the dim last and taking rows.
  const Tensor moved = contiguous(transpose(x3, 1, 2));
  const Tensor ym = softmax(moved, -1);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t c = 0; c < 5; ++c) CHECK(y3.at({a, b, c}) == Approx(ym.at({a, c, b})).epsilon(1e-12));
}

TEST_CASE("softmax of large inputs does not overflow", "[nn][softmax]") {
  const Tensor x = from_vector<float>({1000.0f, 1001.0f, 1002.0f}, {1, 3});
  const auto y = softmax(x, 1).to_vector<double>();
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  CHECK(y[0] == Approx(1 / z).epsilon(1e-6));
  CHECK(y[2] == Approx(std::exp(2.0) / z).epsilon(1e-6));
  const auto ly = log_softmax(from_vector<float>({1000.0f, 0.0f}, {2}), 0).to_vector<double>();
  CHECK(std::isfinite(ly[0]));
  CHECK(ly[0] == Approx(0.0).margin(1e-6));
  CHECK(ly[1] == Approx(-1000.0).epsilon(1e-6));
}

TEST_CASE("log_softmax equals log(softmax), f32 agrees with f64", "[nn][softmax]") {
  Generator g(9);
  const Tensor x = randn({64, 1000}, DType::f64, &g, 0.0, 4.0);
  const auto sm = softmax(x, -1).to_vector<double>();
  const auto lsm = log_softmax(x, -1).to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < sm.size(); ++i) worst = std::max(worst, std::abs(std::log(sm[i]) - lsm[i]));
  CHECK(worst < 1e-10);
  // f32 (vectorised exp) against the f64 reference.
  const Tensor xf = cast_raw(x, DType::f32);
  // (f32 sums of 1000 terms: ~1e-6 with SIMD lanes, a few e-6 in serial -O0 order.)
  CHECK(max_abs_diff(softmax(xf, -1).to_vector<double>(), sm) < 2e-5);
  CHECK(max_abs_diff(log_softmax(xf, -1).to_vector<double>(), lsm) < 1e-4);
  CHECK(max_abs_diff(softmax(xf, 0).to_vector<double>(), softmax(x, 0).to_vector<double>()) < 2e-5);
}

TEST_CASE("softmax backward: rows of the input gradient sum to 0", "[nn][softmax]") {
  Generator g(2);
  const Tensor x = randn({3, 6}, DType::f64, &g).set_requires_grad(true);
  const Tensor w = randn({3, 6}, DType::f64, &g);
  const Tensor gx = grad(softmax(x, 1), {x}, w)[0];
  for (int64_t r = 0; r < 3; ++r) {
    double s = 0;
    for (int64_t c = 0; c < 6; ++c) s += gx.at({r, c});
    CHECK(s == Approx(0.0).margin(1e-12));
  }
}

// ---- layer_norm -----------------------------------------------------------------------
TEST_CASE("layer_norm normalises each row (mean 0, var 1 up to eps)", "[nn][layer_norm]") {
  // Row [1, 2, 3, 4]: mean 2.5, biased var 1.25.
  const Tensor x = from_vector<double>({1, 2, 3, 4, 10, 10, 10, 14}, {2, 4});
  const double eps = 0.1;
  const auto y = layer_norm(x, Tensor(), Tensor(), eps).to_vector<double>();
  const double rs0 = 1 / std::sqrt(1.25 + eps);
  CHECK(y[0] == Approx(-1.5 * rs0).epsilon(1e-12));
  CHECK(y[3] == Approx(1.5 * rs0).epsilon(1e-12));
  // Row 2: mean 11, var (1+1+1+9)/4 = 3.
  CHECK(y[7] == Approx(3 / std::sqrt(3 + eps)).epsilon(1e-12));
  // Weight and bias: y * w + b.
  const Tensor w = from_vector<double>({1, 2, 3, 4}, {4}), b = from_vector<double>({0, 0, 1, -1}, {4});
  const auto ywb = layer_norm(x, w, b, eps).to_vector<double>();
  CHECK(ywb[1] == Approx(-0.5 * rs0 * 2).epsilon(1e-12));
  CHECK(ywb[2] == Approx(0.5 * rs0 * 3 + 1).epsilon(1e-12));

  Generator g(3);
  const int64_t R = 7, D = 301;
  const Tensor big = randn({R, D}, DType::f32, &g, 5.0, 3.0);
  const Tensor yb = layer_norm(big, Tensor(), Tensor(), 1e-5);
  const auto v = yb.to_vector<double>();
  for (int64_t r = 0; r < R; ++r) {
    double m = 0, q = 0;
    for (int64_t i = 0; i < D; ++i) m += v[r * D + i];
    m /= D;
    for (int64_t i = 0; i < D; ++i) q += (v[r * D + i] - m) * (v[r * D + i] - m);
    CHECK(m == Approx(0.0).margin(1e-5));
    CHECK(q / D == Approx(1.0).epsilon(1e-4));  // var 9 / (9 + 1e-5)
  }
}

TEST_CASE("layer_norm f32 agrees with f64 on long rows", "[nn][layer_norm]") {
  Generator g(4);
  const Tensor x = randn({5, 3675}, DType::f64, &g, 2.0, 1.5);
  const Tensor w = randn({3675}, DType::f64, &g), b = randn({3675}, DType::f64, &g);
  const auto ref = layer_norm(x, w, b).to_vector<double>();
  const auto got =
      layer_norm(cast_raw(x, DType::f32), cast_raw(w, DType::f32), cast_raw(b, DType::f32)).to_vector<double>();
  CHECK(max_abs_diff(got, ref) < 1e-4);
}

TEST_CASE("layer_norm backward: dweight/dbias are column sums, dx rows sum to 0", "[nn][layer_norm]") {
  // Enough rows that the backward splits them into per-thread chunks.
  Generator g(6);
  const int64_t R = 16384, D = 8;
  const Tensor x = randn({R, D}, DType::f64, &g).set_requires_grad(true);
  const Tensor w = randn({D}, DType::f64, &g).set_requires_grad(true);
  const Tensor b = randn({D}, DType::f64, &g).set_requires_grad(true);
  const Tensor gy = randn({R, D}, DType::f64, &g);
  const auto grads = grad(layer_norm(x, w, b), {x, w, b}, gy);
  const Tensor xhat = layer_norm(x.detach(), Tensor(), Tensor());
  for (int64_t i = 0; i < D; ++i) {
    double dw = 0, db = 0;
    for (int64_t r = 0; r < R; ++r) {
      dw += gy.at({r, i}) * xhat.at({r, i});
      db += gy.at({r, i});
    }
    CHECK(grads[1].at({i}) == Approx(dw).epsilon(1e-10));
    CHECK(grads[2].at({i}) == Approx(db).epsilon(1e-10));
  }
  for (int64_t r = 0; r < R; r += 1021) {
    double s = 0;
    for (int64_t i = 0; i < D; ++i) s += grads[0].at({r, i});
    CHECK(s == Approx(0.0).margin(1e-10));
  }
  // The same bits with one thread (fixed-size chunks, summed in order).
  const Tensor xf = cast_raw(x.detach(), DType::f32).set_requires_grad(true);
  const Tensor wf = cast_raw(w.detach(), DType::f32).set_requires_grad(true);
  const Tensor gyf = cast_raw(gy, DType::f32);
  const auto many = grad(layer_norm(xf, wf, Tensor()), {wf}, gyf)[0].to_vector<float>();
  const int threads = get_num_threads();
  set_num_threads(1);
  const auto one = grad(layer_norm(xf, wf, Tensor()), {wf}, gyf)[0].to_vector<float>();
  set_num_threads(threads);
  CHECK(many == one);
}

// ---- losses ----------------------------------------------------------------------------
namespace {
// PyTorch's formula in double: (1 - s) * (lse - x_t) + s * (lse - mean_c x_c).
double ce_row(const std::vector<double>& x, int64_t t, double s) {
  double m = -INFINITY;
  for (double v : x) m = std::max(m, v);
  double z = 0, sx = 0;
  for (double v : x) { z += std::exp(v - m); sx += v; }
  const double lse = m + std::log(z);
  return (1 - s) * (lse - x[t]) + s * (lse - sx / x.size());
}
}  // namespace

TEST_CASE("cross_entropy equals the hand-computed value", "[nn][loss]") {
  const std::vector<double> r0 = {1.0, 2.0, 3.0}, r1 = {0.5, -1.0, 2.0}, r2 = {0.0, 0.0, -4.0};
  const Tensor logits = from_vector<float>({1, 2, 3, 0.5f, -1, 2, 0, 0, -4}, {3, 3});
  const Tensor target = from_vector<int64_t>({2, 0, 1}, {3});
  const double l0 = ce_row(r0, 2, 0), l1 = ce_row(r1, 0, 0), l2 = ce_row(r2, 1, 0);
  CHECK(cross_entropy(logits, target).item() == Approx((l0 + l1 + l2) / 3).epsilon(1e-6));
  CHECK(cross_entropy(logits, target, 0.0, "sum").item() == Approx(l0 + l1 + l2).epsilon(1e-6));
  const auto none = cross_entropy(logits, target, 0.0, "none").to_vector<double>();
  REQUIRE(none.size() == 3);
  CHECK(none[1] == Approx(l1).epsilon(1e-6));

  SECTION("label smoothing") {
    const double s = 0.1;
    const double e = (ce_row(r0, 2, s) + ce_row(r1, 0, s) + ce_row(r2, 1, s)) / 3;
    CHECK(cross_entropy(logits, target, s).item() == Approx(e).epsilon(1e-6));
    CHECK(e != Approx((l0 + l1 + l2) / 3).epsilon(1e-3));  // smoothing changes the value
  }
  SECTION("ignore_index rows are left out of the mean") {
    const Tensor t_ign = from_vector<int32_t>({2, -100, 1}, {3});
    CHECK(cross_entropy(logits, t_ign).item() == Approx((l0 + l2) / 2).epsilon(1e-6));
    const Tensor t_custom = from_vector<int64_t>({2, 0, 1}, {3});
    CHECK(cross_entropy(logits, t_custom, 0.0, "mean", 0).item() == Approx((l0 + l2) / 2).epsilon(1e-6));
    const auto n = cross_entropy(logits, t_ign, 0.0, "none").to_vector<double>();
    CHECK(n[1] == 0.0);
    CHECK(std::isnan(cross_entropy(logits, from_vector<int64_t>({-100, -100, -100}, {3})).item()));
  }
}

TEST_CASE("cross_entropy gradient is (softmax - smoothed one-hot) / count", "[nn][loss]") {
  const Tensor logits = from_vector<double>({1, 2, 3, 0.5, -1, 2}, {2, 3}).set_requires_grad(true);
  const Tensor target = from_vector<int64_t>({2, -100}, {2});
  const double s = 0.3;
  const Tensor gx = grad(cross_entropy(logits, target, s), {logits})[0];
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  // One counted row: divide by 1. Ignored row: 0.
  CHECK(gx.at({0, 0}) == Approx(std::exp(1.0) / z - s / 3).epsilon(1e-12));
  CHECK(gx.at({0, 2}) == Approx(std::exp(3.0) / z - s / 3 - (1 - s)).epsilon(1e-12));
  CHECK(gx.at({1, 1}) == 0.0);
}

TEST_CASE("mse_loss equals the mean / sum of squared differences", "[nn][loss]") {
  const Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2}), b = from_vector<float>({0, 2, 5, 1}, {2, 2});
  CHECK(mse_loss(a, b).item() == Approx((1 + 0 + 4 + 9) / 4.0));
  CHECK(mse_loss(a, b, "sum").item() == Approx(14.0));
  CHECK(mse_loss(a, b, "none").to_vector<double>() == std::vector<double>{1, 0, 4, 9});
}

// ---- embedding -----------------------------------------------------------------------------
TEST_CASE("embedding picks rows and accumulates repeated ids in backward", "[nn][embedding]") {
  const Tensor weight = arange(0, 12, 1, DType::f64).as_strided({4, 3}, {3, 1}, 0);
  weight.set_requires_grad(true);
  const Tensor ids = from_vector<int32_t>({1, 3, 1, 0}, {2, 2});
  const Tensor out = embedding(ids, weight);
  REQUIRE(out.sizes() == Shape{2, 2, 3});
  CHECK(out.to_vector<double>() == std::vector<double>{3, 4, 5, 9, 10, 11, 3, 4, 5, 0, 1, 2});
  const Tensor gout = arange(0, 12, 1, DType::f64).as_strided({2, 2, 3}, {6, 3, 1}, 0);
  const Tensor dw = grad(out, {weight}, gout)[0];
  // Row 1 gets tokens 0 and 2: [0,1,2] + [6,7,8]; row 3 token 1; row 0 token 3; row 2 nothing.
  CHECK(dw.to_vector<double>() == std::vector<double>{9, 10, 11, 6, 8, 10, 0, 0, 0, 3, 4, 5});
}

// ---- dropout -----------------------------------------------------------------------------------
TEST_CASE("dropout: Philox mask rule, reproducible, kept fraction and scale", "[nn][dropout]") {
  const int64_t n = 100000;
  const double p = 0.3;
  const Tensor x = ones({n}, DType::f32);
  Generator g1(42), g2(42), g3(43);
  const auto a = dropout(x, p, true, &g1).to_vector<float>();
  const auto b = dropout(x, p, true, &g2).to_vector<float>();
  const auto c = dropout(x, p, true, &g3).to_vector<float>();
  CHECK(a == b);
  CHECK(a != c);
  CHECK(g1.offset() == static_cast<uint64_t>(n));  // the draw reserved numel offsets
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t kept = 0, rule_mismatch = 0, bad_value = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool dropped = philox_uniform<float>(42, 0, i) < static_cast<float>(p);
    if (dropped != (a[i] == 0.0f)) ++rule_mismatch;
    if (a[i] != 0.0f) {
      ++kept;
      if (a[i] != scale) ++bad_value;
    }
  }
  CHECK(rule_mismatch == 0);
  CHECK(bad_value == 0);
  CHECK(static_cast<double>(kept) / n == Approx(1 - p).margin(0.01));
  // A second draw from the same generator uses fresh offsets: a different mask.
  CHECK(dropout(x, p, true, &g1).to_vector<float>() != a);
}

TEST_CASE("dropout: eval mode and p = 0 are the identity; backward reuses the mask", "[nn][dropout]") {
  Generator g(7);
  const Tensor x = randn({6, 5}, DType::f64, &g).set_requires_grad(true);
  CHECK(dropout(x, 0.5, false).to_vector<double>() == x.to_vector<double>());
  CHECK(dropout(x, 0.0, true, &g).to_vector<double>() == x.to_vector<double>());
  Generator dg(1);
  const Tensor y = dropout(x, 0.4, true, &dg);
  const auto gx = grad(y, {x}, ones({6, 5}, DType::f64))[0].to_vector<double>();
  const auto yv = y.to_vector<double>(), xv = x.to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) CHECK(gx[i] == Approx(yv[i] == 0.0 ? 0.0 : 1 / 0.6));
  for (size_t i = 0; i < yv.size(); ++i) CHECK(yv[i] == Approx(gx[i] * xv[i]));
}

// ---- patches -----------------------------------------------------------------------------------
TEST_CASE("unfold_patches orders patches like torch.nn.Unfold", "[nn][patches]") {
  const Tensor x = arange(0, 16, 1, DType::f32).as_strided({1, 1, 4, 4}, {16, 16, 4, 1}, 0);
  const Tensor cols = unfold_patches(x, 2);
  REQUIRE(cols.sizes() == Shape{1, 4, 4});
  // Feature ki*2 + kj, patch ph*2 + pw.
  CHECK(cols.to_vector<float>() ==
        std::vector<float>{0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15});
  // Channels come first in the feature index: c*p*p + ki*p + kj.
  const Tensor x2 = arange(0, 8, 1, DType::f32).as_strided({1, 2, 2, 2}, {8, 4, 2, 1}, 0);
  CHECK(unfold_patches(x2, 2).to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("fold_patches inverts unfold_patches", "[nn][patches]") {
  Generator g(8);
  const Tensor x = randn({2, 3, 6, 4}, DType::f32, &g);
  CHECK(fold_patches(unfold_patches(x, 2), 6, 4, 2).to_vector<float>() == x.to_vector<float>());
  const Tensor xt = transpose(randn({2, 3, 4, 6}, DType::f32, &g), 2, 3);  // non-contiguous [2, 3, 6, 4]
  CHECK(fold_patches(unfold_patches(xt, 2), 6, 4, 2).to_vector<float>() == xt.to_vector<float>());
  const Tensor cols = randn({1, 9, 4}, DType::f32, &g);
  CHECK(unfold_patches(fold_patches(cols, 6, 6, 3), 3).to_vector<float>() == cols.to_vector<float>());
}

// ---- resize ------------------------------------------------------------------------------------
TEST_CASE("resize_bilinear (align_corners) known values", "[nn][resize]") {
  const Tensor x = from_vector<double>({0, 1, 2, 3}, {1, 1, 2, 2});
  const auto y = resize_bilinear(x, 3, 3).to_vector<double>();
  const std::vector<double> expected = {0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3};
  CHECK(max_abs_diff(y, expected) < 1e-12);
  CHECK(y[4] == Approx((0 + 1 + 2 + 3) / 4.0));  // the centre is the mean of the 4 corners
  // Same size: the identity.
  Generator g(1);
  const Tensor z = randn({2, 3, 4, 5}, DType::f32, &g);
  CHECK(resize_bilinear(z, 4, 5).to_vector<float>() == z.to_vector<float>());
  // Down to 1x1 picks the top-left pixel (source coordinate 0).
  CHECK(resize_bilinear(z, 1, 1).to_vector<float>()[0] == z.to_vector<float>()[0]);
}

TEST_CASE("resize_bilinear backward scatters with the forward taps", "[nn][resize]") {
  const Tensor x = zeros({1, 1, 2, 2}, DType::f64).set_requires_grad(true);
  // Gradient 1 at the centre of the 3x3 output spreads 1/4 to each corner.
  Tensor gout = zeros({1, 1, 3, 3}, DType::f64);
  gout.data<double>()[4] = 1.0;
  CHECK(grad(resize_bilinear(x, 3, 3), {x}, gout)[0].to_vector<double>() ==
        std::vector<double>{0.25, 0.25, 0.25, 0.25});
  // Interpolation weights sum to 1: total gradient is preserved.
  Generator g(2);
  const Tensor x2 = randn({2, 2, 4, 5}, DType::f64, &g).set_requires_grad(true);
  const Tensor g2 = randn({2, 2, 7, 3}, DType::f64, &g);
  const auto gx = grad(resize_bilinear(x2, 7, 3), {x2}, g2)[0].to_vector<double>();
  const auto gv = g2.to_vector<double>();
  CHECK(std::accumulate(gx.begin(), gx.end(), 0.0) == Approx(std::accumulate(gv.begin(), gv.end(), 0.0)));
}

// ---- errors ------------------------------------------------------------------------------------
TEST_CASE("nn ops reject bad input with a named Error", "[nn][errors]") {
  const Tensor logits = zeros({4, 3});
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 5, 1, 2}, {4})),
                    Contains("target 5") && Contains("C = 3"));
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, -1, 1, 2}, {4})), Contains("target -1"));
  CHECK_THROWS_WITH(cross_entropy(zeros({4, 3, 2}), from_vector<int64_t>({0, 1, 1, 2}, {4})),
                    Contains("expected logits [N, C]"));
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1}, {2})), Contains("expected target [4]"));
  CHECK_THROWS_WITH(cross_entropy(logits, zeros({4})), Contains("integer targets"));
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1, 1, 2}, {4}), 0.0, "avg"),
                    Contains("reduction must be"));
  CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1, 1, 2}, {4}), 1.5),
                    Contains("label_smoothing must be in [0, 1]"));
  CHECK_THROWS_WITH(mse_loss(zeros({2, 3}), zeros({3, 2})), Contains("must have the same shape"));
  CHECK_THROWS_WITH(dropout(zeros({3}), 1.0, true), Contains("p must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(dropout(zeros({3}), -0.1, false), Contains("p must be in [0, 1)"));
  CHECK_THROWS_WITH(unfold_patches(zeros({1, 1, 5, 4}), 2), Contains("H = 5") && Contains("multiples of p = 2"));
  CHECK_THROWS_WITH(unfold_patches(zeros({1, 5, 4}), 2), Contains("expected x [N, C, H, W]"));
  CHECK_THROWS_WITH(fold_patches(zeros({1, 4, 3}), 4, 4, 2), Contains("L = 3"));
  CHECK_THROWS_WITH(fold_patches(zeros({1, 5, 4}), 4, 4, 2), Contains("not a multiple of p*p = 4"));
  CHECK_THROWS_WITH(embedding(from_vector<int64_t>({1, 7}, {2}), zeros({5, 2})),
                    Contains("id 7") && Contains("V = 5"));
  CHECK_THROWS_WITH(embedding(zeros({2}), zeros({5, 2})), Contains("integer ids"));
  CHECK_THROWS_WITH(layer_norm(zeros({2, 4}), zeros({3}), Tensor()), Contains("weight of shape [4]"));
  CHECK_THROWS_WITH(softmax(zeros({2, 4}), 2), Contains("softmax"));
  CHECK_THROWS_WITH(resize_bilinear(zeros({2, 4}), 3, 3), Contains("expected x [N, C, H, W]"));
  CHECK_THROWS_WITH(resize_bilinear(zeros({1, 1, 2, 2}), 0, 3), Contains("at least 1x1"));
}

// ---- graph lifetime ----------------------------------------------------------------------------
TEST_CASE("nn ops free their outputs and saved tensors (no reference cycles)", "[nn][memory]") {
  Generator g(12);
  const Tensor x = randn({8, 16}, DType::f64, &g).set_requires_grad(true);
  const Tensor w = randn({16}, DType::f64, &g).set_requires_grad(true);
  const Tensor img = randn({1, 2, 4, 4}, DType::f64, &g).set_requires_grad(true);
  const Tensor ids = from_vector<int64_t>({1, 0, 3}, {3});
  const Tensor target = from_vector<int64_t>({1, 0, 3, 2, 5, 7, 9, 15}, {8});
  auto in_use = [] { return allocator_for(DeviceKind::CPU).stats().current_bytes; };
  const std::vector<std::function<Tensor()>> ops = {
      [&] { return softmax(x, 0); },
      [&] { return log_softmax(x, -1); },
      [&] { return layer_norm(x, w, w); },
      [&] { return cross_entropy(x, target, 0.1); },
      [&] { return embedding(ids, x); },
      [&] { Generator dg(1); return dropout(x, 0.2, true, &dg); },
      [&] { return fold_patches(unfold_patches(img, 2), 4, 4, 2); },
      [&] { return resize_bilinear(img, 3, 5); },
  };
  for (size_t k = 0; k < ops.size(); ++k) {
    INFO("op " << k);
    const size_t before = in_use();
    { const Tensor y = ops[k](); }  // dropped without backward
    CHECK(in_use() == before);
    {
      const Tensor y = ops[k]();
      backward(y, ones(y.sizes(), DType::f64));
    }
    // Leaves now hold .grad; clear them and everything else must be gone.
    x.zero_grad();
    w.zero_grad();
    img.zero_grad();
    CHECK(in_use() == before);
  }
}
