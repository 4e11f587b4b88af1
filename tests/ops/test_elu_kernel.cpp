// Tests of the ELU array kernel (ops/elu_kernel.h): f32 and f64 values and
// slopes against long-double expm1 over the useful range, relative accuracy
// near 0 (where e^x - 1 would cancel), alpha != 1, infinities, NaN, every
// tail length of the 16-lane loop, and in place; and the elu op on strided
// and contiguous tensors, which both go through it.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "core/tensor.h"
#include "ops/elementwise.h"
#include "ops/elu_kernel.h"
#include "ops/shape.h"

using namespace dimix;

namespace {

template <class T>
void check_against_expm1(T alpha, double rel) {
  std::vector<T> x;
  for (int i = -3000; i <= 3000; ++i) x.push_back(static_cast<T>(i * 0.005));  // [-15, 15]
  for (int e = -30; e <= -1; ++e) x.push_back(static_cast<T>(-std::ldexp(1.3, e)));  // tiny negatives
  for (T v : {T(-0.25), T(-0.2500001), T(-0.2499999), T(-90), T(-200), T(-1e30), T(0), T(-0.0), T(1e30)}) x.push_back(v);
  std::vector<T> y(x.size()), d(x.size());
  elu_array<T>(x.data(), y.data(), d.data(), static_cast<int64_t>(x.size()), alpha);
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const long double v = x[i];
    const long double want = v > 0 ? v : alpha * std::expm1(v);
    const long double want_d = v > 0 ? 1.0L : alpha * std::exp(v);
    // Relative error in both: the point of expm1 near 0. The f32 kernel
    // rounds x log2(e) before taking 2^, which adds |x| 2^-24 of relative
    // error to e^x far out (1e-6 at x = -15, where e^x is 3e-7).
    const long double tol = rel + (sizeof(T) == 4 ? 1e-7L * std::fabs(v) : 0.0L);
    const bool ok_y = std::fabs(static_cast<long double>(y[i]) - want) <= tol * std::fabs(want) + std::numeric_limits<T>::min();
    const bool ok_d = std::fabs(static_cast<long double>(d[i]) - want_d) <= tol * std::fabs(want_d) + std::numeric_limits<T>::min();
    if (!ok_y || !ok_d) {
      if (++bad < 5)
        UNSCOPED_INFO("x " << x[i] << ": y " << y[i] << " want " << static_cast<double>(want) << ", d " << d[i]
                           << " want " << static_cast<double>(want_d));
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("elu_array matches expm1 in relative terms, values and slopes", "[elu]") {
  // f32: a few ulp (2^x's polynomial 8e-8, e^x - 1 past |x| = 1/4 up to
  // 4 ulp of the result); f64 is std::expm1.
  check_against_expm1<float>(1.0f, 5e-7);
  check_against_expm1<float>(0.7f, 5e-7);
  check_against_expm1<double>(1.0, 1e-15);
  check_against_expm1<double>(1.7, 1e-15);
}

TEST_CASE("elu_array: infinities, NaN, every tail length and in place", "[elu]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {inf, -inf, nan}, y(3), d(3);
  elu_array<float>(x.data(), y.data(), d.data(), 3, 2.0f);
  CHECK(y[0] == inf);
  CHECK(d[0] == 1.f);
  CHECK(y[1] == -2.f);
  CHECK(d[1] == 0.f);
  CHECK(std::isnan(y[2]));
  CHECK(std::isnan(d[2]));
  std::vector<double> xd = {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}, yd(2);
  elu_array<double>(xd.data(), yd.data(), nullptr, 2);
  CHECK(yd[0] == -1.0);
  CHECK(std::isnan(yd[1]));
  // Lengths 1..40 in place (masked tails of 1..15 lanes) against one long
  // out-of-place call; the element after n is untouched.
  std::vector<float> base(41);
  for (size_t i = 0; i < base.size(); ++i) base[i] = -3.f + 0.17f * static_cast<float>(i);
  std::vector<float> ref(41), ref_d(41);
  elu_array<float>(base.data(), ref.data(), ref_d.data(), 41);
  for (int64_t n = 1; n <= 40; ++n) {
    std::vector<float> v = base, dv(41, -7.f);
    elu_array<float>(v.data(), v.data(), dv.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      CHECK(v[i] == ref[i]);
      CHECK(dv[i] == ref_d[i]);
    }
    CHECK(v[n] == base[n]);
    CHECK(dv[n] == -7.f);
  }
}

TEST_CASE("elu op: strided and contiguous inputs give the kernel's values", "[elu]") {
  const Tensor x = reshape(arange(-24, 24, 1, DType::f32) * 0.0625, {6, 8});
  const Tensor xt = transpose(x, 0, 1);  // strided
  const Tensor y = elu(xt, 0.5);
  const Tensor yc = elu(contiguous(xt), 0.5);
  std::vector<float> v(48), want(48);
  const Tensor xc = contiguous(xt);
  for (int i = 0; i < 48; ++i) v[i] = xc.data<float>()[i];
  elu_array<float>(v.data(), want.data(), nullptr, 48, 0.5f);
  const Tensor yy = contiguous(y);
  for (int i = 0; i < 48; ++i) {
    CHECK(yy.data<float>()[i] == want[i]);
    CHECK(yc.data<float>()[i] == want[i]);
  }
}
