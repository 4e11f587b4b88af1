// Tests of the register-tile helpers of ops/tile_gemm.h that the block ops
// build on: hsum_each (many lane sums in one shuffle tree) against hsum_tree
// bit for bit and against an f64 sum, and dot_tile / dot_block against f64
// dot products over every tile shape, tail length and accumulation mode.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "ops/tile_gemm.h"

using namespace dimix;

namespace {

template <class T, int K>
void check_hsum_each(Generator& gen) {
  constexpr int L = tile::kLanes<T>;
  using V = tile::Vec<T>;
  V v[L];
  for (int j = 0; j < L; ++j)
    for (int i = 0; i < L; ++i) v[j][i] = static_cast<T>((2 * gen.uniform() - 1) * std::pow(10.0, (i + j) % 5 - 2));
  T out[L];
  for (int j = 0; j < L; ++j) out[j] = T(-123);
  tile::hsum_each<T, L, K>(v, out);
  for (int j = 0; j < K; ++j) {
    INFO("K = " << K << ", vector " << j);
    // The same additions in the same order: the same bits.
    CHECK(out[j] == tile::hsum_tree<T, L>(v[j]));
    double want = 0;
    for (int i = 0; i < L; ++i) want += static_cast<double>(v[j][i]);
    CHECK(std::abs(out[j] - want) <= 1e-5 * 100 * L);
  }
  for (int j = K; j < L; ++j) CHECK(out[j] == T(-123));  // only K written
}

template <class T>
void check_hsum_each_all(Generator& gen) {
  [&]<int... K>(std::integer_sequence<int, K...>) {
    (check_hsum_each<T, K + 1>(gen), ...);
  }(std::make_integer_sequence<int, tile::kLanes<T>>{});
}

// dot_block over an M x N block of products of length n (O slices),
// added onto P, against f64.
template <class T>
void check_dot_block(Generator& gen, int64_t M, int64_t N, int64_t O, int64_t n) {
  const int64_t a_r = n + 3, a_o = M * a_r + 1, b_r = n + 5, b_o = N * b_r + 2;
  std::vector<T> A(O * a_o), B(O * b_o), P(M * N);
  for (T& x : A) x = static_cast<T>((2 * gen.uniform() - 1));
  for (T& x : B) x = static_cast<T>((2 * gen.uniform() - 1));
  for (T& x : P) x = static_cast<T>((2 * gen.uniform() - 1));
  const std::vector<T> P0 = P;
  tile::dot_block<T>(M, N, O, n, A.data(), a_o, a_r, B.data(), b_o, b_r, P.data(), N);
  int bad = 0;
  for (int64_t a = 0; a < M; ++a)
    for (int64_t b = 0; b < N; ++b) {
      double want = P0[a * N + b];
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < n; ++i)
          want += static_cast<double>(A[o * a_o + a * a_r + i]) * static_cast<double>(B[o * b_o + b * b_r + i]);
      const double tol = (sizeof(T) == 4 ? 2e-6 : 1e-13) * (1 + std::sqrt(double(O * n))) * 4;
      if (std::abs(P[a * N + b] - want) > tol) ++bad;
    }
  INFO("M " << M << " N " << N << " O " << O << " n " << n);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("hsum_each: K lane sums in one tree, the same bits as hsum_tree", "[tile]") {
  Generator gen(7);
  check_hsum_each_all<float>(gen);
  check_hsum_each_all<double>(gen);
}

TEST_CASE("dot_block: every tile shape and tail against f64", "[tile]") {
  Generator gen(11);
  // M, N of 1..9 cover every dot_tile shape up to 4 x 4 and the ragged
  // tiles; n covers a masked tail only, whole vectors, and both.
  for (int64_t M : {1, 3, 4, 5, 9})
    for (int64_t N : {1, 2, 4, 7, 8})
      for (int64_t n : {5, 16, 37, 128}) {
        check_dot_block<float>(gen, M, N, 1, n);
        check_dot_block<double>(gen, M, N, 2, n);
      }
  check_dot_block<float>(gen, 11, 22, 3, 121);  // a T2 channel level, h = 2
}
