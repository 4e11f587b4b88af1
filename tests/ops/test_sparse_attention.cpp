// sparse_attention and topk_indices (Sparsifiner, PAPERS.md 3):
// topk against hand-picked rows (ties, NaN, dims); sparse attention against
// the dense oracle the authors run (scores masked with -inf outside the mask,
// softmax, @ v, built from matmul / masked_fill / softmax) for outputs and
// all three gradients, hand-computed small cases, deterministic backward,
// memory release and error messages. Gradcheck runs through the registry.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numeric>

#include "autograd/node.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/storage.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/sparse_attention.h"
#include "ops/topk.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// [B, H, M, K] rows of K distinct keys of N, in a seeded random order.
Tensor random_rows(uint64_t seed, int64_t B, int64_t H, int64_t M, int64_t K, int64_t N) {
  Generator g(seed);
  Tensor t = empty({B, H, M, K}, DType::i64);
  int64_t* p = t.data<int64_t>();
  std::vector<int64_t> perm(static_cast<size_t>(N));
  for (int64_t r = 0; r < B * H * M; ++r) {
    std::iota(perm.begin(), perm.end(), int64_t{0});
    for (int64_t j = 0; j < K; ++j) {
      std::swap(perm[j], perm[j + static_cast<int64_t>(g.randint(static_cast<uint64_t>(N - j)))]);
      p[r * K + j] = perm[j];
    }
  }
  return t;
}

// The {0,1} [B, H, N, N] mask of the sparse pattern: rows < dense_rows all
// ones, row dense_rows + r ones at indices[.., r, :].
Tensor mask_of(const Tensor& indices, int64_t N, int64_t dense_rows) {
  const int64_t B = indices.size(0), H = indices.size(1), M = indices.size(2), K = indices.size(3);
  Tensor m = zeros({B, H, N, N}, DType::u8);
  uint8_t* pm = m.data<uint8_t>();
  const int64_t* pi = indices.data<int64_t>();
  for (int64_t bh = 0; bh < B * H; ++bh) {
    for (int64_t i = 0; i < dense_rows; ++i)
      for (int64_t j = 0; j < N; ++j) pm[(bh * N + i) * N + j] = 1;
    for (int64_t r = 0; r < M; ++r)
      for (int64_t j = 0; j < K; ++j) pm[(bh * N + dense_rows + r) * N + pi[(bh * M + r) * K + j]] = 1;
  }
  return m;
}

// The authors' computation: dense scores, -inf outside the mask, softmax, @ v;
// masked keys of key_mask lose 1e6 first (the LRA convention).
Tensor masked_dense_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                              const Tensor& key_mask = Tensor()) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  Tensor scores = matmul(q, transpose(k, -2, -1)) * scale;
  if (key_mask.defined()) {
    const Tensor pad = rsub(cast_raw(key_mask, q.dtype()), 1.0);  // 1 at padding
    scores = scores - reshape(pad, {q.size(0), 1, 1, q.size(2)}) * 1e6;
  }
  const Tensor dropped = rsub(cast_raw(mask, q.dtype()), 1.0);
  return matmul(softmax(masked_fill(scores, dropped, -std::numeric_limits<double>::infinity()), -1), v);
}

}  // namespace

// ---- topk_indices ----------------------------------------------------------------------
TEST_CASE("topk_indices: largest first, ties by lower index, NaN above all", "[sparse][topk]") {
  const Tensor x = from_vector<float>({0.5f, 2.0f, -1.0f, 2.0f, 0.5f, 3.0f,   //
                                       1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f,    //
                                       0.0f, NAN, 5.0f, -2.0f, NAN, 4.0f},
                                      {3, 6});
  CHECK(topk_indices(x, 4).to_vector<int64_t>() ==
        std::vector<int64_t>{5, 1, 3, 0,  //
                             0, 1, 2, 3,  //
                             1, 4, 2, 5});
  // Smallest first; NaN comes last.
  CHECK(topk_indices(x, 3, -1, false).to_vector<int64_t>() ==
        std::vector<int64_t>{2, 0, 4,  //
                             0, 1, 2,  //
                             3, 0, 5});
  CHECK(topk_indices(x, 0).sizes() == Shape{3, 0});
}

TEST_CASE("topk_indices: along a middle dim and on a non-contiguous view", "[sparse][topk]") {
  // [2, 3, 2]: dim 1 rows are (1, 7, 4), (9, 8, 2), (3, 3, 0), (-1, 6, 6).
  const Tensor x = from_vector<double>({1, 9, 7, 8, 4, 2,  //
                                        3, -1, 3, 6, 0, 6},
                                       {2, 3, 2});
  const Tensor top = topk_indices(x, 2, 1);
  REQUIRE(top.sizes() == Shape{2, 2, 2});
  CHECK(top.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 2, 1,  //
                                                         0, 1, 1, 2});
  // The transposed view ([2, 2, 3]) gives the same rows along its last dim.
  const Tensor t = transpose(x, 1, 2);
  CHECK(topk_indices(t, 2).to_vector<int64_t>() == std::vector<int64_t>{1, 2, 0, 1,  //
                                                                        0, 1, 1, 2});
}

TEST_CASE("topk_indices: bad arguments are named errors", "[sparse][topk][errors]") {
  const Tensor x = zeros({2, 5});
  CHECK_THROWS_WITH(topk_indices(x, 6), Contains("topk_indices") && Contains("k = 6") && Contains("[0, 5]"));
  CHECK_THROWS_WITH(topk_indices(x, -1), Contains("k = -1"));
  CHECK_THROWS_WITH(topk_indices(zeros({3}, DType::i64), 1), Contains("topk_indices") && Contains("floating"));
  CHECK_THROWS_WITH(topk_indices(x, 1, 2), Contains("topk_indices"));
}

// ---- sparse_attention ---------------------------------------------------------------------
TEST_CASE("sparse_attention: a hand-computed 3-token example", "[sparse][attention]") {
  // hd = 1, scale 1: q = (1, 2, 0), k = (0, 1, 2), v = (10, 20, 30).
  // Row 0 dense: scores (0, 1, 2). Row 1 keeps keys (2, 0): scores (4, 0).
  // Row 2 keeps keys (1, 2): q_2 = 0 makes both scores 0.
  const Tensor q = from_vector<double>({1, 2, 0}, {1, 1, 3, 1});
  const Tensor k = from_vector<double>({0, 1, 2}, {1, 1, 3, 1});
  const Tensor v = from_vector<double>({10, 20, 30}, {1, 1, 3, 1});
  const Tensor idx = from_vector<int64_t>({2, 0, 1, 2}, {1, 1, 2, 2});
  const auto out = sparse_attention(q, k, v, idx, 1, Tensor(), 1.0).to_vector<double>();
  const double z0 = 1 + std::exp(1.0) + std::exp(2.0);
  CHECK(out[0] == Approx((10 + 20 * std::exp(1.0) + 30 * std::exp(2.0)) / z0));
  const double z1 = std::exp(4.0) + 1;
  CHECK(out[1] == Approx((30 * std::exp(4.0) + 10) / z1));
  // Equal scores: the mean of 20 and 30.
  CHECK(out[2] == Approx(25.0));
  // One key per row: the output is that key's value.
  const Tensor one = from_vector<int64_t>({0, 1}, {1, 1, 2, 1});
  const auto single = sparse_attention(q, k, v, one, 1, Tensor(), 1.0).to_vector<double>();
  CHECK(single[1] == Approx(10.0));
  CHECK(single[2] == Approx(20.0));
}

TEST_CASE("sparse_attention equals masked dense attention: output and q, k, v gradients", "[sparse][attention]") {
  // Sizes of the Sparsifiner layout at a small scale: CLS row dense, the other
  // rows keep ceil(0.25 N) keys; plus a no-dense-row and an all-keys variant.
  struct Case {
    int64_t B, H, N, hd, K, dense_rows;
  };
  for (const Case c : {Case{2, 3, 17, 8, 5, 1}, Case{1, 2, 9, 3, 1, 0}, Case{3, 1, 6, 4, 6, 2}, Case{2, 2, 50, 16, 13, 1}}) {
    INFO("B " << c.B << " H " << c.H << " N " << c.N << " hd " << c.hd << " K " << c.K << " dense " << c.dense_rows);
    Generator g(c.N + c.K);
    const Shape s{c.B, c.H, c.N, c.hd};
    const Tensor q = randn(s, DType::f64, &g).set_requires_grad(true);
    const Tensor k = randn(s, DType::f64, &g).set_requires_grad(true);
    const Tensor v = randn(s, DType::f64, &g).set_requires_grad(true);
    const Tensor idx = random_rows(c.N, c.B, c.H, c.N - c.dense_rows, c.K, c.N);
    const Tensor w = randn(s, DType::f64, &g);

    const Tensor sparse = sparse_attention(q, k, v, idx, c.dense_rows);
    const auto gs = grad(sparse, {q, k, v}, w);
    const Tensor dense = masked_dense_attention(q, k, v, mask_of(idx, c.N, c.dense_rows));
    const auto gd = grad(dense, {q, k, v}, w);
    CHECK(max_abs_diff(sparse, dense) < 1e-12);
    for (int i = 0; i < 3; ++i) {
      INFO("gradient " << "qkv"[i]);
      CHECK(max_abs_diff(gs[i], gd[i]) < 1e-11);
    }
  }
}

TEST_CASE("sparse_attention: f32 agrees with the f64 oracle; key_mask as the LRA convention", "[sparse][attention]") {
  Generator g(21);
  const Shape s{2, 2, 11, 6};
  const Tensor q = randn(s, DType::f64, &g), k = randn(s, DType::f64, &g), v = randn(s, DType::f64, &g);
  const Tensor idx = random_rows(3, 2, 2, 10, 4, 11);
  Tensor keep = ones({2, 11}, DType::f32);
  for (int64_t j : {3, 7, 8}) keep.data<float>()[11 + j] = 0;  // padding in the second example
  const Tensor ref = masked_dense_attention(q, k, v, mask_of(idx, 11, 1), keep);
  CHECK(max_abs_diff(sparse_attention(q, k, v, idx, 1, keep), ref) < 1e-12);
  const Tensor out32 = sparse_attention(cast_raw(q, DType::f32), cast_raw(k, DType::f32), cast_raw(v, DType::f32), idx, 1, keep);
  CHECK(out32.dtype() == DType::f32);
  CHECK(max_abs_diff(out32, ref) < 2e-5);
  // Strided inputs (views of a fused [B, N, 3, H, hd] projection) give the same result.
  const Tensor fused = randn({2, 11, 3, 2, 6}, DType::f64, &g);
  auto part = [&](int64_t i) { return permute(squeeze(narrow(fused, 2, i, 1), 2), {0, 2, 1, 3}); };
  CHECK(max_abs_diff(sparse_attention(part(0), part(1), part(2), idx, 1),
                     sparse_attention(contiguous(part(0)), contiguous(part(1)), contiguous(part(2)), idx, 1)) == 0.0);
}

TEST_CASE("sparse_attention: the backward is deterministic across runs and thread counts", "[sparse][attention]") {
  Generator g(5);
  const Shape s{3, 2, 40, 8};
  const Tensor q = randn(s, DType::f32, &g).set_requires_grad(true);
  const Tensor k = randn(s, DType::f32, &g).set_requires_grad(true);
  const Tensor v = randn(s, DType::f32, &g).set_requires_grad(true);
  const Tensor idx = random_rows(9, 3, 2, 39, 10, 40);
  const Tensor w = randn(s, DType::f32, &g);
  auto run = [&] { return grad(sparse_attention(q, k, v, idx, 1), {q, k, v}, w); };
  const int threads = get_num_threads();
  const auto a = run();
  set_num_threads(1);
  const auto b = run();
  set_num_threads(threads);
  const auto c = run();
  for (int i = 0; i < 3; ++i) {
    CHECK(a[i].to_vector<float>() == b[i].to_vector<float>());
    CHECK(a[i].to_vector<float>() == c[i].to_vector<float>());
  }
}

TEST_CASE("sparse_attention frees its saved buffers", "[sparse][attention][memory]") {
  Generator g(6);
  const Tensor q = randn({1, 2, 8, 4}, DType::f64, &g).set_requires_grad(true);
  const Tensor idx = random_rows(1, 1, 2, 7, 3, 8);
  auto in_use = [] { return allocator_for(DeviceKind::CPU).stats().current_bytes; };
  const size_t before = in_use();
  { const Tensor y = sparse_attention(q, q, q, idx, 1); }
  CHECK(in_use() == before);
  {
    const Tensor y = sparse_attention(q, q, q, idx, 1);
    backward(y, ones(y.sizes(), DType::f64));
  }
  q.zero_grad();
  CHECK(in_use() == before);
}

TEST_CASE("sparse_attention: bad inputs are named errors", "[sparse][attention][errors]") {
  const Tensor q = zeros({1, 2, 5, 4});
  const Tensor good = from_vector<int64_t>(std::vector<int64_t>(2 * 4 * 2, 0), {1, 2, 4, 2});
  CHECK_THROWS_WITH(sparse_attention(q, q, zeros({1, 2, 5, 3}), good, 1), Contains("sparse_attention") && Contains("[1, 2, 5, 3]"));
  CHECK_THROWS_WITH(sparse_attention(q, q, q, good, 0), Contains("indices [B, H, N - dense_rows, K] = [1, 2, 5, K]"));
  CHECK_THROWS_WITH(sparse_attention(q, q, q, cast_raw(good, DType::i32), 1), Contains("int64 indices") && Contains("i32"));
  CHECK_THROWS_WITH(sparse_attention(q, q, q, good, 6), Contains("dense_rows = 6"));
  CHECK_THROWS_WITH(sparse_attention(q, q, q, zeros({1, 2, 4, 6}, DType::i64), 1), Contains("6 keys per row"));
  CHECK_THROWS_WITH(sparse_attention(q, q, q, good, 1, zeros({1, 4})), Contains("key_mask [B, N] = [1, 5]"));
  // The all-zero table repeats key 0 in every row.
  CHECK_THROWS_WITH(sparse_attention(q, q, q, good, 1), Contains("key 0 appears twice") && Contains("[0, 0, 0]"));
  Tensor bad = from_vector<int64_t>({0, 1, 2, 3, 4, 1, 1, 2,  //
                                     0, 1, 2, 3, 4, 0, 7, 2},
                                    {1, 2, 4, 2});
  CHECK_THROWS_WITH(sparse_attention(q, q, q, bad, 1), Contains("index 7 at [0, 1, 3, 0]") && Contains("outside [0, 5)"));
  CHECK_THROWS_WITH(sparse_attention(zeros({2, 5, 4}), q, q, good, 1), Contains("q [B, H, N, hd]"));
}
