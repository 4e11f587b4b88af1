// Tests of PreNormResidual (ops/prenorm_residual.h): block_mlp and
// block_chain with a layer norm before and a residual after, in one pass,
// against the composite x + op(layer_norm(x)) (prenorm_residual_composite,
// the op itself without `around` as f). Forward values and every gradient
// (x, the op's parameters, the norm's weight and bias) in f64 and f32: both
// slab layouts (a middle dim with the norm over runs of the slab's lanes, the
// last dim with the norm across a tile's positions), several tiles and
// gradient chunks, ragged tiles, non-contiguous x, norm only, residual only,
// a norm without weight or bias. Plus: bitwise the same on 1 and 2 threads,
// and the errors.
#include <catch2/catch.hpp>

#include "ops/block_chain.h"
#include "ops/block_mlp.h"
#include "ops/layer_norm.h"
#include "tests/ops/block_linear_oracle.h"

using namespace dimix;
using namespace dimix::test;
using Catch::Matchers::Contains;

namespace {

Tensor leaf(const Tensor& t) {
  Tensor d = t.detach();
  d.set_requires_grad(true);
  return d;
}

// Random Butterfly MLP levels for n = b^L (strides 1, b, ..., hidden h).
std::vector<BlockMlpLevel> mlp_levels(int64_t n, int64_t b, int64_t h, DType t, Generator& g,
                                      std::vector<Tensor>& leaves) {
  std::vector<BlockMlpLevel> levels;
  for (int64_t stride = 1; stride < n; stride *= b) {
    const int64_t G = n / b;
    BlockMlpLevel l{leaf(mul(randn({G, h, b}, t, &g), 1.0 / std::sqrt(double(b)))), leaf(randn({G, h}, t, &g)),
                    leaf(mul(randn({G, b, h}, t, &g), 1.0 / std::sqrt(double(h)))), leaf(randn({G, b}, t, &g)),
                    stride};
    leaves.insert(leaves.end(), {l.w1, l.b1, l.w2, l.b2});
    levels.push_back(l);
  }
  return levels;
}

// The norm (weight and bias around 1 and 0 unless left out) and residual.
PreNormResidual around_for(int64_t C, bool norm, bool affine, bool residual, DType t, Generator& g,
                           std::vector<Tensor>& leaves) {
  PreNormResidual a;
  a.norm = norm;
  a.residual = residual;
  if (norm && affine) {
    a.weight = leaf(add(mul(randn({C}, t, &g), 0.3), 1.0));
    a.bias = leaf(mul(randn({C}, t, &g), 0.3));
    leaves.insert(leaves.end(), {a.weight, a.bias});
  }
  return a;
}

struct Case {
  Shape x;
  int64_t dim, b, h;
  bool noncontig, norm, affine, residual;
};

void check_mlp(const Case& c, DType t, double tol) {
  INFO("block_mlp x " << shape_str(c.x) << " dim " << c.dim << " b " << c.b << " h " << c.h
                      << (c.noncontig ? " noncontig" : "") << (c.norm ? " norm" : "") << (c.affine ? " affine" : "")
                      << (c.residual ? " residual" : "") << " " << dtype_name(t));
  Generator g(static_cast<uint64_t>(shape_numel(c.x) + c.b * 7 + c.h));
  const Tensor x = random_input(c.x, c.noncontig, t, g);
  std::vector<Tensor> leaves = {x};
  const int64_t dim = c.dim < 0 ? c.dim + static_cast<int64_t>(c.x.size()) : c.dim;
  const auto levels = mlp_levels(c.x[dim], c.b, c.h, t, g, leaves);
  const PreNormResidual a = around_for(c.x.back(), c.norm, c.affine, c.residual, t, g, leaves);
  const Tensor y = block_mlp(x, levels, c.dim, a);
  const Tensor ref = prenorm_residual_composite(x, a, [&](const Tensor& z) { return block_mlp(z, levels, c.dim); });
  check_values_and_grads(y, ref, leaves, tol, g);
}

// The Butterfly-Linear chain (n = b^2, hidden b h, ELU after the second step).
std::vector<BlockChainStep> chain_steps(int64_t b, int64_t bh, DType t, Generator& g, std::vector<Tensor>& leaves) {
  auto w = [&](int64_t G, int64_t bo, int64_t bi) {
    Tensor v = leaf(mul(randn({G, bo, bi}, t, &g), 1.0 / std::sqrt(double(bi))));
    leaves.push_back(v);
    return v;
  };
  auto bias = [&](int64_t G, int64_t bo) {
    Tensor v = leaf(mul(randn({G, bo}, t, &g), 0.5));
    leaves.push_back(v);
    return v;
  };
  std::vector<BlockChainStep> s;
  s.push_back({w(b, bh, b), Tensor(), 1, 1, ""});
  s.push_back({w(bh, b, b), bias(bh, b), bh, 1, "elu"});
  s.push_back({w(bh, b, b), Tensor(), 1, 1, ""});
  s.push_back({w(b, b, bh), bias(b, b), b, 1, ""});
  return s;
}

void check_chain(const Case& c, DType t, double tol) {
  INFO("block_chain x " << shape_str(c.x) << " dim " << c.dim << " b " << c.b << " h " << c.h
                        << (c.noncontig ? " noncontig" : "") << (c.norm ? " norm" : "")
                        << (c.affine ? " affine" : "") << (c.residual ? " residual" : "") << " " << dtype_name(t));
  Generator g(static_cast<uint64_t>(shape_numel(c.x) + c.b * 5 + c.h));
  const Tensor x = random_input(c.x, c.noncontig, t, g);
  std::vector<Tensor> leaves = {x};
  const auto steps = chain_steps(c.b, c.b * c.h, t, g, leaves);
  const PreNormResidual a = around_for(c.x.back(), c.norm, c.affine, c.residual, t, g, leaves);
  const Tensor y = block_chain(x, steps, c.dim, a);
  const Tensor ref = prenorm_residual_composite(x, a, [&](const Tensor& z) { return block_chain(z, steps, c.dim); });
  check_values_and_grads(y, ref, leaves, tol, g);
}

// Both layouts: tokens (a middle dim, the norm over each token's channels,
// and over runs of 4 lanes when inner is 3 x 4), channels (the last dim:
// the norm across each tile's positions; 300 rows = 2 full tiles and a
// ragged one, several gradient chunks).
const std::vector<Case> kMlpCases = {
    {{3, 16, 12}, 1, 4, 2, false, true, true, true},    // T2-like tokens: n = 16, inner = C = 12
    {{2, 9, 3, 4}, 1, 3, 1, false, true, true, true},   // inner 12 = three norms of C = 4
    {{300, 16}, -1, 4, 2, false, true, true, true},     // channels, tiled, ragged last tile
    {{5, 60, 16}, 2, 4, 1, true, true, true, true},     // channels of a non-contiguous x
    {{4, 16, 8}, 1, 4, 2, true, true, true, true},      // tokens of a non-contiguous x
    {{3, 16, 12}, 1, 4, 1, false, true, false, true},   // a norm without weight and bias
    {{200, 9}, -1, 3, 2, false, true, true, false},     // norm only
    {{3, 16, 12}, 1, 4, 2, false, false, false, true},  // residual only
    {{200, 9}, -1, 3, 1, false, false, false, true},    // residual only, tiled
};

}  // namespace

TEST_CASE("block_mlp with a pre-norm and residual equals x + block_mlp(layer_norm(x))", "[prenorm_residual]") {
  for (const Case& c : kMlpCases) {
    check_mlp(c, DType::f64, 1e-11);
    check_mlp(c, DType::f32, 2e-4);
  }
}

TEST_CASE("block_chain with a pre-norm and residual equals x + block_chain(layer_norm(x))", "[prenorm_residual]") {
  // The Table II channel mixer (n = 121, b = 11) and token mixer (64 tokens of 121 channels).
  const std::vector<Case> cases = {
      {{2, 64, 121}, 2, 11, 1, false, true, true, true}, {{2, 64, 121}, 1, 8, 2, false, true, true, true},
      {{150, 16}, -1, 4, 2, true, true, true, true},     {{3, 16, 12}, 1, 4, 1, true, true, false, true},
      {{150, 16}, -1, 4, 1, false, true, true, false},   {{3, 16, 12}, 1, 4, 1, false, false, false, true},
  };
  for (const Case& c : cases) {
    check_chain(c, DType::f64, 1e-11);
    check_chain(c, DType::f32, 2e-4);
  }
}

TEST_CASE("pre-norm residual block ops are bitwise the same on 1 and 2 threads", "[prenorm_residual]") {
  for (const Case& c : {Case{{600, 16}, -1, 4, 2, false, true, true, true},
                        Case{{40, 16, 12}, 1, 4, 2, false, true, true, true}}) {
    Generator g(5);
    const Tensor x = random_input(c.x, false, DType::f32, g);
    std::vector<Tensor> leaves = {x};
    const auto levels = mlp_levels(16, 4, 2, DType::f32, g, leaves);
    const PreNormResidual a = around_for(c.x.back(), true, true, true, DType::f32, g, leaves);
    const Tensor weighting = randn(c.x, DType::f32, &g);
    auto run = [&](int threads) {
      return on_threads(threads, [&] {
        std::vector<Tensor> out = {block_mlp(x, levels, c.dim, a).detach()};
        for (const Tensor& t : leaf_grads(block_mlp(x, levels, c.dim, a), weighting, leaves)) out.push_back(t);
        return out;
      });
    };
    const auto one = run(1), two = run(2);
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("x " << shape_str(c.x) << " output " << i);
      CHECK(max_abs_diff(one[i], two[i]) == 0.0);
    }
  }
}

TEST_CASE("pre-norm residual arguments are checked", "[prenorm_residual]") {
  Generator g(3);
  std::vector<Tensor> leaves;
  const Tensor x = randn({2, 16, 12}, DType::f32, &g);
  const auto levels = mlp_levels(16, 4, 1, DType::f32, g, leaves);
  PreNormResidual a;
  a.norm = true;
  a.weight = randn({16}, DType::f32, &g);
  CHECK_THROWS_WITH(block_mlp(x, levels, 1, a),
                    Contains("block_mlp") && Contains("weight [12] (x's last dim), got [16]"));
  a.weight = Tensor();
  a.bias = randn({12}, DType::f64, &g);
  CHECK_THROWS_WITH(block_mlp(x, levels, 1, a), Contains("block_mlp") && Contains("dtype"));
  PreNormResidual off;
  off.weight = randn({12}, DType::f32, &g);
  CHECK_THROWS_WITH(block_mlp(x, levels, 1, off), Contains("norm is off"));
  PreNormResidual eps;
  eps.norm = true;
  eps.eps = 0;
  CHECK_THROWS_WITH(block_mlp(x, levels, 1, eps), Contains("eps > 0, got 0"));
  // A chain that changes the length cannot have a residual.
  const Tensor w = randn({4, 2, 4}, DType::f32, &g);
  PreNormResidual res;
  res.residual = true;
  CHECK_THROWS_WITH(block_chain(x, {{w, Tensor(), 1, 1, ""}}, 1, res),
                    Contains("block_chain") && Contains("residual") && Contains("input's 16, got 8"));
}
