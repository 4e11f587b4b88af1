// Tests of the FFT ops (ops/fft.h) against a direct O(n^2) DFT computed in
// long double, for powers of two, mixed radices (12, 15, 100), a generic
// radix (7 in 14) and Bluestein sizes (127, 17); round trips irfft(rfft(x));
// the n / norm semantics of numpy and torch.fft on hand-computed values; and
// the error messages. Gradients are gradchecked through the op registry.
#include <catch2/catch.hpp>

#include <cmath>
#include <complex>
#include <numbers>

#include "autograd/node.h"
#include "core/rng.h"
#include "ops/fft.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

using cld = std::complex<long double>;

// The DFT of each row of x [R, n] (complex rows), sign -1 forward / +1 inverse.
std::vector<cld> direct_dft(const std::vector<cld>& x, int64_t R, int64_t n, int sign) {
  std::vector<cld> y(R * n);
  const long double two_pi = 2 * std::numbers::pi_v<long double>;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < n; ++k) {
      cld s = 0;
      for (int64_t j = 0; j < n; ++j) {
        const long double a = sign * two_pi * static_cast<long double>((j * k) % n) / n;
        s += x[r * n + j] * cld(std::cos(a), std::sin(a));
      }
      y[r * n + k] = s;
    }
  return y;
}

// max |got - ref| / max |ref| over complex values (got as [..., 2]).
double rel_error(const Tensor& got, const std::vector<cld>& ref) {
  const auto g = got.to_vector<double>();
  REQUIRE(g.size() == 2 * ref.size());
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    num = std::max<double>(num, std::abs(cld(g[2 * i], g[2 * i + 1]) - ref[i]));
    den = std::max<double>(den, std::abs(ref[i]));
  }
  return num / den;
}

std::vector<cld> as_complex(const Tensor& x) {  // [..., 2]
  const auto v = x.to_vector<double>();
  std::vector<cld> c(v.size() / 2);
  for (size_t i = 0; i < c.size(); ++i) c[i] = cld(v[2 * i], v[2 * i + 1]);
  return c;
}

const std::vector<int64_t> kSizes = {1, 2, 8, 12, 14, 15, 17, 64, 100, 127, 1024};

double tol_for(DType t) { return t == DType::f64 ? 1e-12 : 2e-6; }

}  // namespace

TEST_CASE("fft: fft and ifft equal the direct DFT", "[fft]") {
  for (DType t : {DType::f32, DType::f64}) {
    for (int64_t n : kSizes) {
      INFO("n = " << n << ", " << dtype_name(t));
      Generator g(100 + n);
      const int64_t R = 3;
      const Tensor x = randn({R, n, 2}, t, &g);
      const auto xc = as_complex(x);
      const auto ref = direct_dft(xc, R, n, -1);
      CHECK(rel_error(fft(x), ref) <= tol_for(t) * std::log2(2.0 * n));
      // ifft (norm backward) is the inverse DFT over n.
      auto iref = direct_dft(xc, R, n, +1);
      for (auto& v : iref) v /= static_cast<long double>(n);
      CHECK(rel_error(ifft(x), iref) <= tol_for(t) * std::log2(2.0 * n));
    }
  }
}

TEST_CASE("fft: rfft equals the first n/2+1 bins of the direct DFT; irfft inverts it", "[fft]") {
  for (DType t : {DType::f32, DType::f64}) {
    for (int64_t n : kSizes) {
      INFO("n = " << n << ", " << dtype_name(t));
      Generator g(200 + n);
      const int64_t R = 4, bins = n / 2 + 1;
      const Tensor x = randn({2, 2, n}, t, &g);
      const auto xv = x.to_vector<double>();
      std::vector<cld> xc(xv.begin(), xv.end());
      const auto full = direct_dft(xc, R, n, -1);
      std::vector<cld> ref;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t k = 0; k < bins; ++k) ref.push_back(full[r * n + k]);
      const Tensor X = rfft(x);
      REQUIRE(X.sizes() == Shape{2, 2, bins, 2});
      CHECK(rel_error(X, ref) <= tol_for(t) * std::log2(2.0 * n));
      // Bins 0 and n/2 of a real signal are exactly real.
      CHECK(X.at({1, 1, 0, 1}) == 0.0);
      if (n % 2 == 0) CHECK(X.at({1, 1, bins - 1, 1}) == 0.0);
      const Tensor back = irfft(X, n);
      REQUIRE(back.sizes() == x.sizes());
      const auto bv = back.to_vector<double>();
      double err = 0, scale = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        err = std::max(err, std::abs(bv[i] - xv[i]));
        scale = std::max(scale, std::abs(xv[i]));
      }
      CHECK(err <= tol_for(t) * std::log2(2.0 * n) * scale);
    }
  }
}

TEST_CASE("fft: hand-computed values and norm modes", "[fft]") {
  const Tensor x = from_vector<double>({1, 2, 3, 4}, {4});
  // DFT of [1, 2, 3, 4]: 10, -2 + 2i, -2.
  CHECK(rfft(x).to_vector<double>() == std::vector<double>{10, 0, -2, 2, -2, 0});
  CHECK(rfft(x, -1, "forward").to_vector<double>() == std::vector<double>{2.5, 0, -0.5, 0.5, -0.5, 0});
  CHECK(rfft(x, -1, "ortho").to_vector<double>() == std::vector<double>{5, 0, -1, 1, -1, 0});
  // n = 6 pads with zeros: X_1 = sum_j x_j e^{-i pi j / 3}.
  const auto X6 = rfft(x, 6).to_vector<double>();
  REQUIRE(X6.size() == 8);
  CHECK(X6[2] == Approx(1 + 2 * 0.5 + 3 * -0.5 + 4 * -1.0));
  CHECK(X6[3] == Approx(-(2 * std::sqrt(3.0) / 2 + 3 * std::sqrt(3.0) / 2)));
  // n = 2 truncates: [1 + 2, 1 - 2].
  CHECK(rfft(x, 2).to_vector<double>() == std::vector<double>{3, 0, -1, 0});
  // irfft: default n = 2 (M - 1); the imaginary parts of bins 0 and n/2 are ignored.
  const Tensor X = from_vector<double>({10, 7, -2, 2, -2, -5}, {3, 2});
  CHECK(irfft(X).to_vector<double>() == std::vector<double>{1, 2, 3, 4});
  const auto unscaled = irfft(X, -1, "forward").to_vector<double>();
  CHECK(unscaled == std::vector<double>{4, 8, 12, 16});
  const auto ortho = irfft(X, -1, "ortho").to_vector<double>();
  CHECK(ortho == std::vector<double>{2, 4, 6, 8});
  // Odd n = 3 from 2 bins: x_j = (X_0 + 2 Re(X_1 e^{2 pi i j / 3})) / 3.
  const auto odd = irfft(from_vector<double>({3, 9, 0, 3}, {2, 2}), 3).to_vector<double>();
  CHECK(odd[0] == Approx(1.0));
  CHECK(odd[1] == Approx((3 + 2 * (-3 * std::sqrt(3.0) / 2)) / 3));
  // fft of [1, i]: [1 + i, 1 - i].
  CHECK(fft(from_vector<double>({1, 0, 0, 1}, {2, 2})).to_vector<double>() == std::vector<double>{1, 1, 1, -1});
}

TEST_CASE("fft: n pads and truncates like numpy", "[fft]") {
  Generator g(5);
  const Tensor x = randn({3, 5}, DType::f64, &g);
  const Tensor padded = cat({x, zeros({3, 3}, DType::f64)}, 1);
  const auto a = rfft(x, 8).to_vector<double>(), b = rfft(padded).to_vector<double>();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-12));
  const auto c = rfft(x, 3).to_vector<double>(), d = rfft(narrow(x, 1, 0, 3)).to_vector<double>();
  REQUIRE(c.size() == d.size());
  for (size_t i = 0; i < c.size(); ++i) CHECK(c[i] == Approx(d[i]).margin(1e-12));
  // irfft with n = 8 from 3 bins pads the spectrum with zero bins.
  const Tensor X = randn({2, 3, 2}, DType::f64, &g);
  const Tensor Xp = cat({X, zeros({2, 2, 2}, DType::f64)}, 1);
  const auto e = irfft(X, 8).to_vector<double>(), f = irfft(Xp, 8).to_vector<double>();
  for (size_t i = 0; i < e.size(); ++i) CHECK(e[i] == Approx(f[i]).margin(1e-12));
}

TEST_CASE("fft: gradients of rfft and irfft on a hand-checked case", "[fft][grad]") {
  // L = sum_k w_k . rfft(x)_k with w = 1 on every real part: dL/dx_j = sum_{k<=n/2} cos(2 pi jk/n).
  const int64_t n = 6;
  Tensor x = zeros({n}, DType::f64).set_requires_grad(true);
  Tensor w = zeros({n / 2 + 1, 2}, DType::f64);
  for (int64_t k = 0; k <= n / 2; ++k) w.data<double>()[2 * k] = 1;
  backward(rfft(x), w);
  const auto dx = x.grad().to_vector<double>();
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t k = 0; k <= n / 2; ++k) s += std::cos(2 * std::numbers::pi * j * k / n);
    CHECK(dx[j] == Approx(s).margin(1e-12));
  }
  // irfft (norm backward) of X: d x_0 / d Re X_k = c_k / n, zero for Im of bins 0 and n/2.
  Tensor X = zeros({n / 2 + 1, 2}, DType::f64).set_requires_grad(true);
  Tensor sel = zeros({n}, DType::f64);
  sel.data<double>()[0] = 1;
  backward(irfft(X, n), sel);
  CHECK(X.grad().to_vector<double>() ==
        std::vector<double>{1.0 / 6, 0, 2.0 / 6, 0, 2.0 / 6, 0, 1.0 / 6, 0});
}

TEST_CASE("fft: plans invert themselves up to n", "[fft]") {
  for (int64_t n : {6, 49, 98, 127, 128}) {
    INFO("n = " << n);
    const auto plan = complex_fft_plan<double>(n);
    CHECK(plan.get() == complex_fft_plan<double>(n).get());  // cached
    std::vector<double> re(n), im(n), scratch(plan->scratch_size(1));
    for (int64_t j = 0; j < n; ++j) { re[j] = std::sin(0.3 * j) + 1; im[j] = std::cos(1.7 * j); }
    const auto re0 = re, im0 = im;
    plan->transform(re.data(), im.data(), false, scratch.data());
    plan->transform(re.data(), im.data(), true, scratch.data());
    for (int64_t j = 0; j < n; ++j) {
      CHECK(re[j] / n == Approx(re0[j]).margin(1e-12));
      CHECK(im[j] / n == Approx(im0[j]).margin(1e-12));
    }
  }
}

TEST_CASE("fft: batch transforms of V rows equal the row transforms", "[fft]") {
  for (int64_t n : {1, 6, 9, 16, 34, 98}) {  // odd (complex path), packed, Bluestein half (17), radix 7
    INFO("n = " << n);
    const int64_t V = 5;
    const auto plan = real_fft_plan<double>(n);
    const int64_t bins = plan->bins();
    std::vector<double> x(n * V), sre(bins * V), sim(bins * V), back(n * V), scratch(plan->scratch_size(V));
    for (int64_t i = 0; i < n * V; ++i) x[i] = std::sin(0.37 * i + 1) + 0.1 * i;
    plan->forward_batch(x.data(), sre.data(), sim.data(), V, scratch.data());
    std::vector<double> row(n), spec(2 * bins), row_scratch(plan->row_scratch_size());
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t j = 0; j < n; ++j) row[j] = x[j * V + v];
      plan->forward(row.data(), spec.data(), row_scratch.data());
      for (int64_t k = 0; k < bins; ++k) {
        CHECK(sre[k * V + v] == Approx(spec[2 * k]).margin(1e-12));
        CHECK(sim[k * V + v] == Approx(spec[2 * k + 1]).margin(1e-12));
      }
    }
    plan->inverse_batch(sre.data(), sim.data(), back.data(), V, scratch.data());
    for (int64_t i = 0; i < n * V; ++i) CHECK(back[i] / n == Approx(x[i]).margin(1e-12));
  }
}

TEST_CASE("fft: bad arguments are clear errors", "[fft][errors]") {
  const Tensor x = zeros({2, 4});
  CHECK_THROWS_WITH(rfft(x, -1, "sideways"), Contains("rfft: norm must be") && Contains("sideways"));
  CHECK_THROWS_WITH(rfft(x, 0), Contains("rfft: expected n >= 1"));
  CHECK_THROWS_WITH(irfft(zeros({2, 4})), Contains("irfft: expected a complex tensor [..., N, 2]") && Contains("[2, 4]"));
  CHECK_THROWS_WITH(irfft(zeros({1, 2})), Contains("irfft: expected n >= 1") && Contains("2 (M - 1)"));
  CHECK_THROWS_WITH(fft(zeros({3, 3})), Contains("fft: expected a complex tensor"));
  CHECK_THROWS_WITH(rfft(zeros({4}, DType::i64)), Contains("rfft: expected a floating tensor"));
  CHECK_THROWS_WITH(complex_mul(zeros({3, 2}), zeros({3})), Contains("complex_mul"));
}
