// Tests of the GELU array kernel (ops/gelu_kernel.h): f32 values and
// derivatives against f64 erf over the whole useful range, the far tails,
// +inf (value and slope), NaN, every tail length of the 16-lane loop, and in place.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/gelu_kernel.h"

using namespace dimix;

namespace {
double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_deriv_ref(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
}  // namespace

TEST_CASE("gelu_erf_array f32 matches f64 erf, values and derivatives", "[gelu]") {
  std::vector<float> x;
  for (int i = -4000; i <= 4000; ++i) x.push_back(i * 0.0025f);  // [-10, 10]
  for (float v : {-1e30f, -50.f, -13.f, 13.f, 50.f, 1e30f, 1e-30f, -1e-30f, 0.f}) x.push_back(v);
  std::vector<float> y(x.size()), d(x.size());
  gelu_erf_array<float>(x.data(), y.data(), d.data(), static_cast<int64_t>(x.size()));
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = gelu_ref(x[i]), want_d = gelu_deriv_ref(x[i]);
    // A&S 7.1.26 is within 1.5e-7 in erf; f32 rounding adds an ulp of y.
    const double tol = 2e-7 * std::fabs(x[i]) + 2e-7 * std::fabs(want) + 1e-37;
    if (!(std::fabs(y[i] - want) <= tol) || !(std::fabs(d[i] - want_d) <= 1e-6)) {
      if (++bad < 5) UNSCOPED_INFO("x " << x[i] << ": y " << y[i] << " want " << want << ", d " << d[i] << " want " << want_d);
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("gelu_erf_array: infinities, NaN, every tail length and in place", "[gelu]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {inf, -inf, nan}, y(3), d(3);
  gelu_erf_array<float>(x.data(), y.data(), d.data(), 3);
  CHECK(y[0] == inf);
  CHECK(d[0] == 1.f);
  CHECK(d[1] == 0.f);
  CHECK(std::isnan(y[2]));
  CHECK(std::isnan(d[2]));
  // Lengths 1..40 in place (covers masked tails of 1..15 lanes) against the
  // out-of-place result of one long call; the element after n is untouched.
  std::vector<float> base(41);
  for (size_t i = 0; i < base.size(); ++i) base[i] = -3.f + 0.37f * static_cast<float>(i);
  std::vector<float> ref(41);
  gelu_erf_array<float>(base.data(), ref.data(), nullptr, 41);
  for (int64_t n = 1; n <= 40; ++n) {
    std::vector<float> v = base;
    gelu_erf_array<float>(v.data(), v.data(), nullptr, n);
    for (int64_t i = 0; i < n; ++i) CHECK(v[i] == ref[i]);
    CHECK(v[n] == base[n]);
  }
}
