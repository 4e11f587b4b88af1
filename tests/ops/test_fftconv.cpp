// Tests of the M2 convolution ops: fftconv (ops/fftconv.h) against a direct
// O(L^2) convolution, causal and bidirectional (PAPERS.md 2.3), the fused op
// against its composite fftconv_ref (outputs and every gradient), and
// causal_conv1d_depthwise (ops/conv1d_depthwise.h) against the Conv1d
// definition on hand-computed values. Gradchecks run through the registry.
#include <catch2/catch.hpp>

#include "autograd/node.h"
#include "core/rng.h"
#include "ops/conv1d_depthwise.h"
#include "ops/fftconv.h"
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

// y[b, c, t] = sum_{s<L} u[b,c,s] kern(c, t, s) + D[c] u[b,c,t].
template <class Kern>
Tensor direct_conv(const Tensor& u, const Tensor& D, Kern kern) {
  const int64_t B = u.size(0), d = u.size(1), L = u.size(2);
  Tensor y = zeros({B, d, L}, DType::f64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < d; ++c)
      for (int64_t t = 0; t < L; ++t) {
        double s = D.defined() ? D.at({c}) * u.at({b, c, t}) : 0.0;
        for (int64_t j = 0; j < L; ++j) s += u.at({b, c, j}) * kern(c, t, j);
        y.data<double>()[(b * d + c) * L + t] = s;
      }
  return y;
}

}  // namespace

TEST_CASE("fftconv: causal kernel equals the direct convolution", "[fftconv]") {
  for (int64_t L : {1, 5, 8, 49, 64}) {
    INFO("L = " << L);
    Generator g(L);
    const Tensor u = randn({2, 3, L}, DType::f64, &g), k = randn({3, L}, DType::f64, &g), D = randn({3}, DType::f64, &g);
    const Tensor ref = direct_conv(u, D, [&](int64_t c, int64_t t, int64_t s) { return s <= t ? k.at({c, t - s}) : 0.0; });
    CHECK(max_abs_diff(fftconv(u, k, D), ref) < 1e-11);
    CHECK(max_abs_diff(fftconv_ref(u, k, D), ref) < 1e-11);
    // Causality: changing u after t leaves output t alone.
    const Tensor y0 = fftconv(u, k, D);
    if (L > 1) {
      Tensor u3 = empty(u.sizes(), DType::f64);
      copy_(u3, u);
      u3.data<double>()[L - 1] += 10;  // (b 0, c 0, last t)
      const Tensor y1 = fftconv(u3, k, D);
      for (int64_t t = 0; t < L - 1; ++t) CHECK(y1.at({0, 0, t}) == Approx(y0.at({0, 0, t})).margin(1e-12));
      CHECK(std::abs(y1.at({0, 0, L - 1}) - y0.at({0, 0, L - 1})) > 1e-6);
    }
  }
  // Float: the same within float rounding.
  Generator g(3);
  const Tensor u = randn({4, 8, 64}, DType::f32, &g), k = randn({8, 64}, DType::f32, &g);
  CHECK(max_abs_diff(fftconv(u, k), fftconv_ref(cast_raw(u, DType::f64), cast_raw(k, DType::f64))) < 1e-4);
}

TEST_CASE("fftconv: bidirectional kernel reaches the future with k_rev[s - t - 1]", "[fftconv]") {
  for (int64_t L : {1, 4, 7, 32}) {
    INFO("L = " << L);
    Generator g(50 + L);
    const Tensor u = randn({2, 2, L}, DType::f64, &g), kf = randn({2, L}, DType::f64, &g),
                 kr = randn({2, L}, DType::f64, &g), D = randn({2}, DType::f64, &g);
    const Tensor ref = direct_conv(u, D, [&](int64_t c, int64_t t, int64_t s) {
      return s <= t ? kf.at({c, t - s}) : kr.at({c, s - t - 1});
    });
    CHECK(max_abs_diff(fftconv_bidirectional(u, kf, kr, D), ref) < 1e-11);
  }
}

TEST_CASE("fftconv: a kernel between L and 2L reads lags from the future like the 2L circular convolution", "[fftconv]") {
  // L = 7, Lk = 11: entries 7..10 are the lags -7..-4 (j - 2L); the fused op's FFT has length 16.
  Generator g(12);
  const int64_t L = 7;
  const Tensor u = randn({2, 3, L}, DType::f64, &g), k = randn({3, 11}, DType::f64, &g);
  const Tensor ref = direct_conv(u, Tensor(), [&](int64_t c, int64_t t, int64_t s) {
    const int64_t j = s <= t ? t - s : 2 * L + t - s;
    return j < 11 ? k.at({c, j}) : 0.0;
  });
  CHECK(max_abs_diff(fftconv(u, k), ref) < 1e-11);
  CHECK(max_abs_diff(fftconv_ref(u, k), ref) < 1e-11);
}

TEST_CASE("fftconv: fused gradients equal the composite's", "[fftconv][grad]") {
  Generator g(7);
  // u a channels-last view, kernel of length 2L, skip D; d = 20 is a full
  // group of 16 channels and a partial one of 4.
  const int64_t B = 3, d = 20, L = 10;
  const Tensor ucl = randn({B, L, d}, DType::f64, &g);
  const Tensor u = transpose(ucl, 1, 2).detach().set_requires_grad(true);
  const Tensor k = randn({d, 2 * L}, DType::f64, &g).set_requires_grad(true);
  const Tensor D = randn({d}, DType::f64, &g).set_requires_grad(true);
  const Tensor w = randn({B, d, L}, DType::f64, &g);
  const auto ga = grad(fftconv(u, k, D), {u, k, D}, w);
  const auto gb = grad(fftconv_ref(u, k, D), {u, k, D}, w);
  for (int i = 0; i < 3; ++i) {
    INFO("input " << i);
    CHECK(max_abs_diff(ga[i], gb[i]) < 1e-11);
  }
}

TEST_CASE("fftconv: bad shapes are clear errors", "[fftconv][errors]") {
  CHECK_THROWS_WITH(fftconv(zeros({2, 3}), zeros({3, 3})), Contains("fftconv: expected u [B, d, L]"));
  CHECK_THROWS_WITH(fftconv(zeros({2, 3, 4}), zeros({2, 4})), Contains("has 2 channels") && Contains("d = 3"));
  CHECK_THROWS_WITH(fftconv(zeros({2, 3, 4}), zeros({3, 9})), Contains("kernel length must be in [1, 2L] = [1, 8]"));
  CHECK_THROWS_WITH(fftconv(zeros({2, 3, 4}), zeros({3, 4}), zeros({4})), Contains("expected skip D [3]"));
  CHECK_THROWS_WITH(fftconv_bidirectional(zeros({2, 3, 4}), zeros({3, 4}), zeros({3, 5})),
                    Contains("k_fwd and k_rev [d, L] = [3, 4]") && Contains("[3, 5]"));
}

TEST_CASE("causal_conv1d_depthwise: Conv1d(groups=C, padding=K-1)[..., :L] on hand values", "[conv1d]") {
  // x = [1, 2, 3, 4] (one channel), w = [a, b, c] = [1, 10, 100], bias 0.5:
  // y[t] = 0.5 + 1 x[t-2] + 10 x[t-1] + 100 x[t].
  const Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 1, 4});
  const Tensor w = from_vector<double>({1, 10, 100}, {1, 3});
  const Tensor b = from_vector<double>({0.5}, {1});
  CHECK(causal_conv1d_depthwise(x, w, b).to_vector<double>() ==
        std::vector<double>{100.5, 210.5, 321.5, 432.5});
  // Channels-last input gives the same values (and a channels-last output).
  Generator g(2);
  const Tensor xcl = randn({2, 6, 5}, DType::f64, &g);  // [B, L, C]
  const Tensor xv = transpose(xcl, 1, 2);             // [B, C, L] view
  const Tensor wk = randn({5, 3}, DType::f64, &g), bk = randn({5}, DType::f64, &g);
  const Tensor y_cl = causal_conv1d_depthwise(xv, wk, bk);
  const Tensor y_rows = causal_conv1d_depthwise(contiguous(xv), wk, bk);
  CHECK(y_cl.stride(1) == 1);
  CHECK(max_abs_diff(y_cl, y_rows) < 1e-14);
  // And the definition, element by element.
  for (int64_t c = 0; c < 5; ++c)
    for (int64_t t = 0; t < 6; ++t) {
      double s = bk.at({c});
      for (int64_t j = 0; j < 3; ++j)
        if (t + j - 2 >= 0) s += wk.at({c, j}) * xv.at({1, c, t + j - 2});
      CHECK(y_cl.at({1, c, t}) == Approx(s));
    }
  // Gradients of both layouts agree.
  const Tensor a = xv.detach().set_requires_grad(true), bb = contiguous(xv).detach().set_requires_grad(true);
  const Tensor w1 = wk.detach().set_requires_grad(true), w2 = wk.detach().set_requires_grad(true);
  const Tensor gw = randn({2, 5, 6}, DType::f64, &g);
  const auto g1 = grad(causal_conv1d_depthwise(a, w1, bk), {a, w1}, gw);
  const auto g2 = grad(causal_conv1d_depthwise(bb, w2, bk), {bb, w2}, gw);
  CHECK(max_abs_diff(g1[0], g2[0]) < 1e-13);
  CHECK(max_abs_diff(g1[1], g2[1]) < 1e-12);
  CHECK_THROWS_WITH(causal_conv1d_depthwise(zeros({2, 3, 4}), zeros({4, 3})),
                    Contains("causal_conv1d_depthwise: expected weight [C, K] with C = 3"));
}
