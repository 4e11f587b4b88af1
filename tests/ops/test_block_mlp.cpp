// Tests of block_mlp (ops/block_mlp.h), Butterfly MLP levels as one op,
// against its definition: per level block_linear(gelu(block_linear(x, w1, b1,
// dim, stride, 1)), w2, b2, dim, 1, stride), each product through the
// authors' permute / matmul composite (block_linear_oracle). Forward values
// and every gradient (x and each level's w1, b1, w2, b2) in f64 and f32, for
// one, two and three levels, on both kernel layouts (last
// dim: transposed tiles of 128, 64 and 32 rows with a ragged last tile; middle dim: panels in
// place), the Table II shapes, more rows than one weight-gradient chunk,
// non-contiguous x and no biases. Plus: the gradients are bitwise the same on
// 1 and 2 threads, the Butterfly MLP mixer equals its composite form, and bad
// shapes are errors naming what was expected.
#include <catch2/catch.hpp>

#include "ops/block_mlp.h"
#include "tests/ops/block_linear_oracle.h"

using namespace dimix;
using namespace dimix::test;
using Catch::Matchers::Contains;

namespace {

struct MlpCase {
  Shape x;
  int64_t dim, G, b, h;
  std::vector<int64_t> strides;  // one level per stride
  bool bias, noncontig;
};

void check_case(const MlpCase& c, DType t, double tol) {
  INFO("x " << shape_str(c.x) << " dim " << c.dim << " G " << c.G << " b " << c.b << " h " << c.h << " levels "
            << c.strides.size() << " last stride " << c.strides.back() << (c.bias ? " bias" : "")
            << (c.noncontig ? " noncontig" : "") << " " << dtype_name(t));
  Generator g(static_cast<uint64_t>(c.G * 1000 + c.b * 10 + c.h));
  const Tensor x = random_input(c.x, c.noncontig, t, g);
  auto param = [&](const Shape& s, double scale) {
    Tensor p = mul(randn(s, t, &g), scale).detach();
    p.set_requires_grad(true);
    return p;
  };
  std::vector<BlockMlpLevel> levels;
  std::vector<Tensor> leaves = {x};
  for (int64_t stride : c.strides) {
    BlockMlpLevel l{param({c.G, c.h, c.b}, 1.0 / std::sqrt(double(c.b))), Tensor(),
                    param({c.G, c.b, c.h}, 1.0 / std::sqrt(double(c.h))), Tensor(), stride};
    if (c.bias) {
      l.b1 = param({c.G, c.h}, 0.5);
      l.b2 = param({c.G, c.b}, 0.5);
    }
    for (const Tensor& p : {l.w1, l.b1, l.w2, l.b2})
      if (p.defined()) leaves.push_back(p);
    levels.push_back(l);
  }
  const Tensor y = block_mlp(x, levels, c.dim);
  Tensor ref = x;
  for (const BlockMlpLevel& l : levels)
    ref = block_linear_oracle(gelu(block_linear_oracle(ref, l.w1, l.b1, c.dim, l.stride, 1)), l.w2, l.b2, c.dim, 1,
                              l.stride);
  check_values_and_grads(y, ref, leaves, tol, g);
}

}  // namespace

TEST_CASE("block_mlp matches the composite on both layouts, f64 and f32", "[block_mlp]") {
  const std::vector<MlpCase> cases = {
      // last dim: Table II channel mixing (C 121, b 11, h 11 and 22), one level and both
      {{130, 121}, -1, 11, 11, 11, {11}, true, false},
      {{130, 121}, -1, 11, 11, 22, {1, 11}, true, false},
      // last dim: 12 tiles of 128 rows, the last ragged, in 3 gradient chunks (5 tiles each)
      {{1500, 48}, 1, 16, 3, 5, {4}, true, false},
      {{1500, 48}, 1, 16, 3, 5, {1, 4, 16}, true, false},
      // last dim: tiles of 64 rows (n > 512) and of 32 rows (n > 1024), noncontig, no bias
      {{70, 520}, -1, 40, 13, 3, {1, 8}, false, true},
      {{40, 1040}, -1, 80, 13, 2, {16}, true, false},
      {{3, 5, 16}, 2, 8, 2, 7, {1, 2, 4}, true, false},
      // middle dim: Table II token mixing (P 64, b 8, h 16, inner 121), one level and both;
      // 12 rows are 3 gradient chunks of 4
      {{3, 64, 121}, 1, 8, 8, 16, {1}, true, false},
      {{12, 64, 121}, 1, 8, 8, 16, {1, 8}, true, false},
      // middle dim, short inner, many rows, noncontig, no bias
      {{90, 9, 3}, 1, 3, 3, 4, {1, 3}, false, true},
      {{2, 6, 2, 5}, 1, 2, 3, 2, {2}, true, true},
  };
  for (const MlpCase& c : cases) {
    check_case(c, DType::f64, 1e-12);
    check_case(c, DType::f32, 3e-5);
  }
}

TEST_CASE("block_mlp gradients are bitwise the same on 1 and 2 threads", "[block_mlp]") {
  for (const MlpCase& c : {MlpCase{{600, 24}, -1, 6, 4, 8, {1, 2}, true, false},
                           MlpCase{{40, 16, 10}, 1, 4, 4, 8, {1, 4}, true, false}}) {
    INFO("x " << shape_str(c.x));
    Generator g(9);
    Tensor x = randn(c.x, DType::f32, &g);
    std::vector<Tensor> leaves = {x};
    std::vector<BlockMlpLevel> levels;
    for (int64_t stride : c.strides) {
      levels.push_back({randn({c.G, c.h, c.b}, DType::f32, &g), randn({c.G, c.h}, DType::f32, &g),
                        randn({c.G, c.b, c.h}, DType::f32, &g), randn({c.G, c.b}, DType::f32, &g), stride});
      leaves.insert(leaves.end(), {levels.back().w1, levels.back().b1, levels.back().w2, levels.back().b2});
    }
    for (const Tensor& t : leaves) t.set_requires_grad(true);
    const Tensor weighting = randn(c.x, DType::f32, &g);
    auto grads = [&](int threads) {
      return on_threads(threads, [&] { return leaf_grads(block_mlp(x, levels, c.dim), weighting, leaves); });
    };
    const auto one = grads(1), two = grads(2);
    for (size_t i = 0; i < leaves.size(); ++i) CHECK(one[i].to_vector<float>() == two[i].to_vector<float>());
  }
}

TEST_CASE("block_mlp rejects bad shapes with the expected and the given", "[block_mlp]") {
  const Tensor x = zeros({4, 12});
  const Tensor w1 = zeros({4, 5, 3}), w2 = zeros({4, 3, 5}), b1 = zeros({4, 5}), b2 = zeros({4, 3});
  CHECK_THROWS_WITH(block_mlp(x, w1, b1, zeros({4, 5, 3}), b2, -1, 1),
                    Contains("block_mlp") && Contains("expected w2 [G, b, h] = [4, 3, 5]") && Contains("[4, 5, 3]"));
  CHECK_THROWS_WITH(block_mlp(zeros({4, 10}), w1, b1, w2, b2, -1, 1),
                    Contains("10 positions along dim 1") && Contains("G * b = 4 * 3 = 12"));
  CHECK_THROWS_WITH(block_mlp(x, w1, b1, w2, b2, -1, 3), Contains("G = 4 must be divisible by stride 3"));
  CHECK_THROWS_WITH(block_mlp(x, w1, zeros({4, 3}), w2, b2, -1, 1), Contains("expected b1 [4, 5], got [4, 3]"));
  CHECK_THROWS_WITH(block_mlp(x, w1, b1, w2, b2, 2, 1), Contains("dim 2 out of range"));
  CHECK_THROWS_WITH(block_mlp(x, zeros({4, 5}), b1, w2, b2, -1, 1), Contains("expected w1 [G, h, b] (level 0)"));
  CHECK_THROWS_WITH(block_mlp(x, {}, -1), Contains("expected at least one level"));
  // A second level whose groups do not tile n = 12.
  CHECK_THROWS_WITH(block_mlp(x, {{w1, b1, w2, b2, 1}, {zeros({5, 2, 2}), Tensor(), zeros({5, 2, 2}), Tensor(), 1}}, -1),
                    Contains("G * b = 5 * 2 = 10") && Contains("(level 1)"));
}
