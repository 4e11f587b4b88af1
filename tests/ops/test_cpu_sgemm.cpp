// Tests of the AVX-512 f32 GEMM (ops/cpu_sgemm.h) against a double-precision
// triple loop: every op(A)/op(B) combination, leading dims wider than the
// matrix, alpha and beta (beta 0 over a C full of NaN must not read it), and
// sizes that cross the kernel's internal edges: 1..14-row tiles (MR 14), 1..32
// columns with the one-vector sliver at <= 16 (NR 32), K blocks of 256 (KC),
// row blocks of 168 (MC) and column blocks of 1024 (NC). gemm<float>, which
// cuts products over threads, is checked on the same oracle.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "ops/cpu_sgemm.h"
#include "ops/linalg.h"

using namespace dimix;

namespace {

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;  // extra elements per row of A, B and C
};

// Runs fn(C) on a GEMM case and checks C against the f64 oracle to within
// f32 rounding of the sum of |terms| (the error bound of any summation order).
template <class Fn>
void check_gemm(const GemmCase& c, Fn&& fn) {
  INFO("ta " << c.ta << " tb " << c.tb << " M " << c.M << " N " << c.N << " K " << c.K << " alpha " << c.alpha
             << " beta " << c.beta << " pad " << c.pad);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  Generator g(static_cast<uint64_t>(c.M * 131 + c.N * 7 + c.K));
  auto fill = [&](std::vector<float>& v) {
    for (float& x : v) x = static_cast<float>(g.uniform() * 2 - 1);
  };
  std::vector<float> A(static_cast<size_t>(std::max<int64_t>(a_rows * lda, 1)));
  std::vector<float> B(static_cast<size_t>(std::max<int64_t>(b_rows * ldb, 1)));
  std::vector<float> C(static_cast<size_t>(c.M * ldc));
  fill(A);
  fill(B);
  fill(C);
  if (c.beta == 0.f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  const std::vector<float> C0 = C;
  auto a_at = [&](int64_t m, int64_t k) { return double(c.ta ? A[k * lda + m] : A[m * lda + k]); };
  auto b_at = [&](int64_t k, int64_t n) { return double(c.tb ? B[n * ldb + k] : B[k * ldb + n]); };
  fn(A.data(), lda, B.data(), ldb, C.data(), ldc);
  int64_t bad = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < ldc; ++n) {
      const float got = C[m * ldc + n];
      if (n >= c.N) {  // padding is never written
        if (!(got == C0[m * ldc + n] || (std::isnan(got) && std::isnan(C0[m * ldc + n])))) ++bad;
        continue;
      }
      double sum = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        sum += a_at(m, k) * b_at(k, n);
        mag += std::fabs(a_at(m, k) * b_at(k, n));
      }
      double want = c.alpha * sum, bound = std::fabs(c.alpha) * mag;
      if (c.beta != 0.f) {
        want += c.beta * double(C0[m * ldc + n]);
        bound += std::fabs(c.beta * double(C0[m * ldc + n]));
      }
      const double tol = 4 * (c.K + 2) * 6e-8 * bound + 1e-30;
      if (!(std::fabs(got - want) <= tol)) {
        if (bad < 5) UNSCOPED_INFO("C[" << m << ", " << n << "] = " << got << ", want " << want << " +- " << tol);
        ++bad;
      }
    }
  CHECK(bad == 0);
}

std::vector<GemmCase> edge_cases() {
  std::vector<GemmCase> cases;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      // every row-tile height and both sliver widths, with ragged columns
      for (int64_t M = 1; M <= 15; ++M) cases.push_back({bool(ta), bool(tb), M, 33, 7, 1.f, 0.f});
      for (int64_t N : {1, 5, 15, 16, 17, 31, 32, 33, 48, 63, 65})
        cases.push_back({bool(ta), bool(tb), 29, N, 19, 1.f, 0.f});
      // K blocks (256), row blocks (168), column blocks (1024); alpha, beta, pads
      cases.push_back({bool(ta), bool(tb), 170, 40, 257, -0.5f, 0.f, 3});
      cases.push_back({bool(ta), bool(tb), 37, 70, 600, 1.f, 1.f, 1});
      cases.push_back({bool(ta), bool(tb), 200, 1030, 20, 2.f, 0.25f, 5});
      cases.push_back({bool(ta), bool(tb), 3, 1100, 513, 1.f, -1.f});
    }
  return cases;
}

}  // namespace

TEST_CASE("cpu sgemm matches a double-precision oracle on every edge", "[sgemm]") {
  if (!cpu::kHaveSgemm) {
    WARN("SKIPPED: this build has no AVX-512 sgemm kernel");
    return;
  }
  for (const GemmCase& c : edge_cases())
    check_gemm(c, [&](const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
      cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
    });
}

TEST_CASE("cpu sgemm: K = 0 or alpha = 0 only scales C and never reads A or B", "[sgemm]") {
  if (!cpu::kHaveSgemm) {
    WARN("SKIPPED: this build has no AVX-512 sgemm kernel");
    return;
  }
  std::vector<float> C = {1, 2, 3, 4, 5, 6};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> A(6, nan), B(6, nan);
  cpu::sgemm(false, false, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 0.5f, C.data(), 3);
  CHECK(C == std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3});
  cpu::sgemm(false, false, 2, 3, 2, 0.f, A.data(), 2, B.data(), 3, 2.f, C.data(), 3);
  CHECK(C == std::vector<float>{1, 2, 3, 4, 5, 6});
  std::vector<float> D(6, nan);
  cpu::sgemm(true, true, 2, 3, 0, 1.f, nullptr, 2, nullptr, 1, 0.f, D.data(), 3);
  CHECK(D == std::vector<float>(6, 0.f));
}

TEST_CASE("gemm<float> cut over threads matches the oracle", "[sgemm]") {
  // Products past the threading threshold (2^20 multiply-adds), cut by rows
  // (M >= N) and by columns, every transpose combination.
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (const GemmCase& c : {GemmCase{bool(ta), bool(tb), 301, 77, 90, 1.f, 0.f, 2},
                                GemmCase{bool(ta), bool(tb), 45, 530, 70, 1.f, 1.f}})
        check_gemm(c, [&](const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
          gemm<float>(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
        });
}
