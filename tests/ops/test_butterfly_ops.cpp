// Tests of the butterfly ops block_linear and block_attention against their
// composite oracles: the authors' permutation x.view(N, -1, b, g, d)
// .transpose(2, 3) (PAPERS.md 1.1), per-block matmul / softmax attention built
// from existing ops, and the inverse permutation; forward values and every
// gradient, on each kernel path (lane kernels, broadcast kernels, BLAS blocks,
// strided and non-contiguous inputs), plus hand-computed cases and errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/node.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/block_attention.h"
#include "ops/block_linear.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "tests/ops/block_linear_oracle.h"

using namespace dimix;
using namespace dimix::test;
using Catch::Matchers::Contains;

TEST_CASE("butterfly_strides: the worked cases of PAPERS.md 1.1", "[butterfly]") {
  using V = std::vector<int64_t>;
  CHECK(butterfly_strides(64, 8) == V{1, 8});
  CHECK(butterfly_strides(121, 11) == V{1, 11});
  CHECK(butterfly_strides(1024, 32) == V{1, 32});
  CHECK(butterfly_strides(1024, 128) == V{1, 8});
  CHECK(butterfly_strides(2048, 64) == V{1, 32});
  CHECK(butterfly_strides(4096, 256) == V{1, 16});
  CHECK(butterfly_strides(4096, 128) == V{1, 32});
  CHECK(butterfly_strides(16384, 128) == V{1, 128});
  CHECK(butterfly_strides(1024, 2) == V{1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
  CHECK(butterfly_strides(1024, 16) == V{1, 16, 64});  // Butterfly-Linear at N=1024, b=16
  // Uncapped (the Table II BlockMLP rule): b^i even past n/b.
  CHECK(butterfly_strides(64, 8, false) == V{1, 8});
  CHECK(butterfly_strides(1024, 128, false) == V{1, 128});
  CHECK(butterfly_strides(1024, 16, false) == V{1, 16, 256});
  // The float log, as the authors' np.log: log(5832)/log(18) is 3.0000000000000004
  // in double precision, so 18^3 gets a fourth level.
  CHECK(butterfly_strides(5832, 18, false) == V{1, 18, 324, 5832});
  CHECK(butterfly_strides(5832, 18) == V{1, 18, 324, 324});
  CHECK_THROWS_WITH(butterfly_strides(16, 1), Contains("butterfly_strides") && Contains("b = 1"));
}

TEST_CASE("block_linear: a hand-computed stride-2 butterfly level", "[butterfly]") {
  // n = 4, b = 2, stride 2: group 0 holds positions {0, 2}, group 1 {1, 3}.
  const Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4});
  const Tensor w = from_vector<double>({1, 10, 100, 1000,  // group 0: [[1, 10], [100, 1000]]
                                        2, 0, 0, 3},       // group 1: [[2, 0], [0, 3]]
                                       {2, 2, 2});
  const Tensor b = from_vector<double>({0.5, 0.25, -1, -2}, {2, 2});
  const Tensor y = block_linear(x, w, b, 1, 2, 2);
  // y[0] = 1*1 + 10*3 + 0.5, y[2] = 100*1 + 1000*3 + 0.25,
  // y[1] = 2*2 - 1,           y[3] = 3*4 - 2.
  CHECK(y.to_vector<double>() == std::vector<double>{31.5, 3, 3100.25, 10});
  // Input stride 2, output stride 1: group k's outputs are contiguous.
  const Tensor y2 = block_linear(x, w, Tensor(), 1, 2, 1);
  CHECK(y2.to_vector<double>() == std::vector<double>{31, 3100, 4, 12});
  // b_in 2 -> b_out 1 with stride 1: pairwise dot products.
  const Tensor w3 = from_vector<double>({1, -1, 0.5, 0.5}, {2, 1, 2});
  CHECK(block_linear(x, w3, Tensor(), -1, 1, 1).to_vector<double>() == std::vector<double>{-1, 3.5});
}

TEST_CASE("block_linear: equals the permute / bmm / un-permute composite, forward and gradients", "[butterfly]") {
  const std::vector<BlockLinearCase> cases = {
      // inner == 1 (last dim), block diagonal and strided levels
      {{7, 9}, 1, 3, 3, 3, 1, 1, true, false},
      {{7, 9}, 1, 3, 3, 3, 3, 3, true, false},
      {{5, 12}, -1, 4, 3, 5, 2, 4, false, false},   // 3 -> 5, in_stride != out_stride
      {{6, 12}, 1, 4, 3, 2, 4, 1, true, false},     // out stride 1, in stride 4
      {{70, 64}, 1, 8, 8, 8, 8, 8, true, false},    // T2 token-style level on the last dim
      {{37, 121}, 1, 11, 11, 11, 11, 11, true, false},  // T2 channel level: stride 11 (lane windows overlap in f32)
      {{37, 121}, 1, 11, 11, 22, 1, 1, true, false},    // 11 -> 22, stride 1
      {{37, 121}, 1, 11, 11, 22, 11, 11, false, false},
      {{45, 512}, 1, 16, 32, 48, 16, 16, true, false},  // 16 lanes (f32) stride, b_out not a multiple of the tiles
      {{45, 512}, 1, 16, 32, 48, 1, 16, true, false},   // scatter path
      {{45, 512}, 1, 16, 32, 48, 16, 1, true, false},   // broadcast-x path
      {{19, 64}, 1, 2, 32, 32, 2, 2, true, false},      // stride 2: below the lane width
      {{13, 256}, 1, 2, 128, 128, 1, 1, true, false},   // BLAS-sized blocks
      {{9, 130}, 1, 1, 130, 7, 1, 1, true, false},      // G = 1: dense 130 -> 7
      // non-contiguous x on the last dim (element stride 2)
      {{11, 24}, 1, 6, 4, 4, 3, 3, true, true},
      {{33, 48}, 1, 16, 3, 3, 16, 16, true, true},
      {{33, 48}, 1, 16, 3, 3, 1, 16, true, true},
      // inner > 1 (mixing a middle dim)
      {{3, 12, 5}, 1, 3, 4, 2, 3, 1, true, false},
      {{4, 64, 21}, 1, 8, 8, 8, 8, 8, true, false},     // MLP-Mixer token mixing shape (C cut to 21)
      {{4, 64, 21}, 1, 8, 8, 8, 1, 1, false, false},
      {{2, 16, 3, 7}, 1, 4, 4, 6, 2, 4, true, true},    // inner strides not unit: copied once
      {{2, 128, 3}, 1, 1, 128, 128, 1, 1, true, false}, // BLAS-sized dense block over a middle dim
      {{10, 4}, 0, 1, 10, 3, 1, 1, true, false},        // G = 1 along dim 0
      {{12, 3, 2}, 0, 4, 3, 3, 2, 2, true, true},       // dim 0, strided groups
  };
  check_block_linear_cases(cases, 2e-5);
}

TEST_CASE("block_linear: the dense matrix it represents is the butterfly block pattern", "[butterfly]") {
  // Apply the op to the identity: column p of the result is the image of e_p.
  const int64_t G = 12, b_in = 4, b_out = 3, g_in = 3, g_out = 4;
  const int64_t n_in = G * b_in, n_out = G * b_out;
  Generator gen(5);
  const Tensor w = randn({G, b_out, b_in}, DType::f64, &gen);
  Tensor eye = zeros({n_in, n_in}, DType::f64);
  for (int64_t i = 0; i < n_in; ++i) eye.data<double>()[i * n_in + i] = 1;
  const Tensor m = block_linear(eye, w, Tensor(), 1, g_in, g_out);  // m[p][q] = M[q][p]
  REQUIRE(m.sizes() == Shape{n_in, n_out});
  const auto mv = m.to_vector<double>();
  const auto wv = w.to_vector<double>();
  std::vector<double> expected(n_in * n_out, 0.0);
  for (int64_t k = 0; k < G; ++k) {
    const int64_t in_base = (k / g_in) * b_in * g_in + k % g_in, out_base = (k / g_out) * b_out * g_out + k % g_out;
    for (int64_t jo = 0; jo < b_out; ++jo)
      for (int64_t j = 0; j < b_in; ++j)
        expected[(in_base + j * g_in) * n_out + out_base + jo * g_out] = wv[(k * b_out + jo) * b_in + j];
  }
  int64_t nonzero = 0;
  for (double v : mv) nonzero += v != 0;
  CHECK(nonzero == G * b_out * b_in);  // each output sees exactly b_in inputs
  CHECK(mv == expected);
  // Every input position belongs to exactly one group: each row of m has b_out entries.
  for (int64_t p = 0; p < n_in; ++p) {
    int64_t row = 0;
    for (int64_t q = 0; q < n_out; ++q) row += mv[p * n_out + q] != 0;
    CHECK(row == b_out);
  }
}

TEST_CASE("block_linear: two butterfly levels mix every input into every output", "[butterfly]") {
  // n = 64, b = 8, strides [1, 8] (PAPERS.md 1.1): the product is dense.
  const int64_t n = 64, b = 8;
  Generator gen(9);
  Tensor eye = zeros({n, n}, DType::f64);
  for (int64_t i = 0; i < n; ++i) eye.data<double>()[i * n + i] = 1;
  Tensor y = eye;
  for (int64_t g : butterfly_strides(n, b))
    y = block_linear(y, rand({n / b, b, b}, DType::f64, &gen, 0.5, 1.0), Tensor(), 1, g, g);
  for (double v : y.to_vector<double>()) CHECK(v > 0);
  // One level alone is block-sparse: 1/8 of the entries.
  const Tensor one = block_linear(eye, rand({n / b, b, b}, DType::f64, &gen, 0.5, 1.0), Tensor(), 1, 8, 8);
  int64_t nonzero = 0;
  for (double v : one.to_vector<double>()) nonzero += v != 0;
  CHECK(nonzero == n * b);
}

TEST_CASE("block_linear: bad inputs are errors naming the op and the shapes", "[butterfly]") {
  const Tensor x = zeros({4, 12});
  const Tensor w = zeros({4, 3, 3});
  CHECK_THROWS_WITH(block_linear(x, zeros({5, 3, 3}), Tensor(), 1, 1, 1),
                    Contains("block_linear") && Contains("[4, 12]") && Contains("G * b_in = 5 * 3 = 15"));
  CHECK_THROWS_WITH(block_linear(x, w, Tensor(), 1, 3, 1), Contains("block_linear") && Contains("G = 4") &&
                                                              Contains("divisible by in_stride 3"));
  CHECK_THROWS_WITH(block_linear(x, w, Tensor(), 1, 1, 8), Contains("out_stride 8"));
  CHECK_THROWS_WITH(block_linear(x, w, Tensor(), 1, 0, 1), Contains("strides must be >= 1"));
  CHECK_THROWS_WITH(block_linear(x, w, zeros({4, 2}), 1, 1, 1),
                    Contains("block_linear") && Contains("bias [G, b_out] = [4, 3]") && Contains("[4, 2]"));
  CHECK_THROWS_WITH(block_linear(x, zeros({4, 3, 3}, DType::f64), Tensor(), 1, 1, 1),
                    Contains("block_linear") && Contains("dtype mismatch") && Contains("f64"));
  CHECK_THROWS_WITH(block_linear(x, w, zeros({4, 3}, DType::f64), 1, 1, 1), Contains("block_linear: dtype mismatch"));
  CHECK_THROWS_WITH(block_linear(x, zeros({12, 3}), Tensor(), 1, 1, 1),
                    Contains("block_linear") && Contains("weight [G, b_out, b_in]") && Contains("[12, 3]"));
  CHECK_THROWS_WITH(block_linear(x, w, Tensor(), 2, 1, 1), Contains("block_linear: dim 2 out of range"));
  CHECK_THROWS_WITH(block_linear(zeros({4, 12}, DType::i64), w, Tensor(), 1, 1, 1),
                    Contains("block_linear") && Contains("floating"));
}

// ---- block_attention ----------------------------------------------------------------------

namespace {

// Slice i of dim 2 of a fused [B, S, 3, H, hd] tensor: a non-contiguous view.
Tensor select_view(const Tensor& all, int64_t i) {
  const Shape& st = all.strides();
  const Shape& sz = all.sizes();
  return all.as_strided({sz[0], sz[1], sz[3], sz[4]}, {st[0], st[1], st[3], st[4]}, all.offset() + i * st[2]);
}

// [B, S, ...] -> [B, G, block, ...] in butterfly group order (group c = a*stride + s).
Tensor permute_tokens(const Tensor& x, int64_t block, int64_t stride) {
  Shape s = x.sizes();
  const int64_t B = s[0], S = s[1];
  Shape v{B, S / (block * stride), block, stride};
  Shape out{B, S / block, block};
  for (size_t i = 2; i < s.size(); ++i) {
    v.push_back(s[i]);
    out.push_back(s[i]);
  }
  return reshape(contiguous(transpose(reshape(x, v), 2, 3)), out);
}
// The inverse: [B, G, block, ...] -> [B, S, ...].
Tensor unpermute_tokens(const Tensor& x, int64_t stride) {
  const Shape s = x.sizes();
  const int64_t B = s[0], G = s[1], block = s[2];
  Shape v{B, G / stride, stride, block};
  Shape out{B, G * block};
  for (size_t i = 3; i < s.size(); ++i) {
    v.push_back(s[i]);
    out.push_back(s[i]);
  }
  return reshape(contiguous(transpose(reshape(x, v), 2, 3)), out);
}

// The composite: permute tokens, matmul, masked softmax from exp/sum/div,
// (dropout as a constant Philox mask), matmul, un-permute.
Tensor block_attention_oracle(const Tensor& q, const Tensor& k, const Tensor& v, int64_t block, int64_t stride,
                              const Tensor& key_mask, double p, uint64_t seed, uint64_t offset) {
  const int64_t B = q.sizes()[0], S = q.sizes()[1], H = q.sizes()[2], hd = q.sizes()[3], G = S / block;
  auto heads_first = [&](const Tensor& x) { return permute(permute_tokens(x, block, stride), {0, 3, 1, 2, 4}); };
  const Tensor qp = heads_first(q), kp = heads_first(k), vp = heads_first(v);  // [B, H, G, block, hd]
  Tensor scores = mul(matmul(qp, transpose(kp, -1, -2)), 1.0 / std::sqrt(static_cast<double>(hd)));
  if (key_mask.defined()) {
    const auto kv = key_mask.to_vector<double>();
    std::vector<double> masked(kv.size());
    for (size_t i = 0; i < kv.size(); ++i) masked[i] = kv[i] != 0 ? 0.0 : 1.0;
    const Tensor m = cast_raw(from_vector<double>(masked, {B, S}), q.dtype());
    // scores - 1e6 * (1 - keep), keys permuted like the tokens.
    scores = sub(scores, mul(reshape(permute_tokens(m, block, stride), {B, 1, G, 1, block}), 1e6));
  }
  const Tensor e = exp(sub(scores, max(scores, -1, true).detach()));
  Tensor probs = div(e, sum(e, {-1}, true));
  if (p > 0) {
    std::vector<double> drop(B * H * G * block * block);
    for (size_t i = 0; i < drop.size(); ++i) {
      const bool dropped = q.dtype() == DType::f32 ? philox_uniform<float>(seed, offset, i) < static_cast<float>(p)
                                                   : philox_uniform<double>(seed, offset, i) < p;
      drop[i] = dropped ? 0.0 : 1.0 / (1.0 - p);
    }
    probs = mul(probs, cast_raw(from_vector<double>(drop, {B, H, G, block, block}), q.dtype()));
  }
  const Tensor out = matmul(probs, vp);  // [B, H, G, block, hd]
  return unpermute_tokens(permute(out, {0, 2, 3, 1, 4}), stride);
}

struct AttentionCase {
  int64_t B, S, H, hd, block, stride;
  bool mask, fused;
  double p;
};

void check_block_attention(const AttentionCase& c, DType t, double tol) {
  Generator gen(100 + c.S * 3 + c.block + c.stride);
  std::vector<Tensor> qkv;
  if (c.fused) {
    const Tensor all = randn({c.B, c.S, 3, c.H, c.hd}, t, &gen);
    for (int64_t i = 0; i < 3; ++i) qkv.push_back(select_view(all, i));
  } else {
    for (int i = 0; i < 3; ++i) qkv.push_back(randn({c.B, c.S, c.H, c.hd}, t, &gen));
  }
  for (Tensor& x : qkv) x.set_requires_grad(true);
  Tensor mask;
  if (c.mask) {
    std::vector<int64_t> m(c.B * c.S);
    for (size_t i = 0; i < m.size(); ++i) m[i] = (i * 7 + 3) % 5 != 0;  // every fifth key masked
    mask = from_vector<int64_t>(m, {c.B, c.S});
  }
  Generator drop_gen(77);
  drop_gen.reserve(13);
  const uint64_t seed = drop_gen.seed(), offset = drop_gen.offset();
  const Tensor y = block_attention(qkv[0], qkv[1], qkv[2], c.block, c.stride, mask, c.p, &drop_gen);
  if (c.p > 0) CHECK(drop_gen.offset() == offset + static_cast<uint64_t>(c.B * c.H * c.S * c.block));
  REQUIRE(y.is_contiguous());
  const Tensor y_ref = block_attention_oracle(qkv[0], qkv[1], qkv[2], c.block, c.stride, mask, c.p, seed, offset);
  check_close(y, y_ref, tol, "forward");
  const Tensor weighting = randn(y.sizes(), t, &gen);
  const auto grads = leaf_grads(y, weighting, qkv);
  const auto grads_ref = leaf_grads(y_ref, weighting, qkv);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(grads[i].defined());
    check_close(grads[i], grads_ref[i], tol, std::string("gradient of ") + "qkv"[i]);
  }
}

}  // namespace

TEST_CASE("block_attention: a hand-computed dense case", "[butterfly]") {
  // hd = 1, S = 2: query 0 sees scores [0, ln 3] -> softmax [1/4, 3/4];
  // query 1 (q = 0) sees [0, 0] -> [1/2, 1/2].
  const Tensor q = from_vector<double>({1, 0}, {1, 2, 1, 1});
  const Tensor k = from_vector<double>({0, std::log(3.0)}, {1, 2, 1, 1});
  const Tensor v = from_vector<double>({4, 8}, {1, 2, 1, 1});
  const auto y = block_attention(q, k, v, 2, 1).to_vector<double>();
  CHECK(y[0] == Approx(7.0).epsilon(1e-14));
  CHECK(y[1] == Approx(6.0).epsilon(1e-14));
  // Blocks of 1: every token attends only to itself.
  CHECK(block_attention(q, k, v, 1, 1).to_vector<double>() == std::vector<double>{4, 8});
}

TEST_CASE("block_attention: equals the permute / matmul / softmax / un-permute composite", "[butterfly]") {
  const std::vector<AttentionCase> cases = {
      {2, 16, 2, 8, 16, 1, false, false, 0.0},  // dense
      {2, 16, 2, 8, 4, 1, false, false, 0.0},   // butterfly level 0
      {2, 16, 2, 8, 4, 4, false, false, 0.0},   // butterfly level 1
      {1, 24, 3, 5, 4, 2, true, false, 0.0},    // G = 6, stride 2, masked keys, odd hd
      {2, 18, 2, 4, 3, 3, false, true, 0.0},    // fused QKV slices (non-contiguous)
      {2, 16, 2, 8, 4, 2, true, true, 0.25},    // dropout + mask + fused
      {1, 12, 1, 3, 12, 1, false, false, 0.5},  // dense with dropout
      {1, 256, 1, 8, 256, 1, true, false, 0.0}, // query tiles (block > 128)
      {1, 384, 2, 4, 192, 2, false, false, 0.1},// query tiles with a ragged last tile, stride 2
      {2, 64, 2, 16, 8, 8, true, false, 0.1},   // the compile-time row lengths 8, 16, 32 of the
      {1, 64, 2, 8, 16, 4, false, true, 0.0},   // softmax (the paper's blocks), with mask,
      {1, 64, 1, 8, 32, 2, true, true, 0.2},    // dropout and fused QKV slices
      // The ViTs' 8 heads, which the CPU kernel takes together (one task per
      // group for all heads side by side in a token row):
      {2, 256, 8, 8, 16, 16, true, true, 0.1},  // hd 8, 16 groups of 16 at stride 16 (patch 2)
      {1, 128, 8, 8, 32, 1, false, true, 0.0},  // hd 8, block 32: hd-wide results with lanes over queries
      {2, 64, 8, 16, 8, 8, true, true, 0.2},    // hd 16, block 8 (patch 4): 8-wide score tiles
      {2, 64, 8, 16, 64, 1, true, false, 0.1},  // dense 64 at hd 16: the heads split over 4 tasks
      {1, 48, 6, 5, 4, 3, true, true, 0.3},     // odd hd: a 30-wide head chunk
      {1, 40, 12, 3, 8, 5, false, true, 0.0},   // 12 heads of 3, 5 groups at stride 5
  };
  for (const AttentionCase& c : cases) {
    INFO("B " << c.B << " S " << c.S << " H " << c.H << " hd " << c.hd << " block " << c.block << " stride "
              << c.stride << (c.mask ? " mask" : "") << (c.fused ? " fused" : "") << " p " << c.p);
    {
      INFO("f64");
      check_block_attention(c, DType::f64, 1e-11);
    }
    {
      INFO("f32");
      check_block_attention(c, DType::f32, 3e-5);
    }
  }
}

TEST_CASE("block_attention: masked keys are ignored, exactly as scores - 1e6", "[butterfly]") {
  Generator gen(8);
  const int64_t B = 2, S = 8, H = 2, hd = 3;
  const Tensor q = randn({B, S, H, hd}, DType::f64, &gen), k = randn({B, S, H, hd}, DType::f64, &gen);
  Tensor v = randn({B, S, H, hd}, DType::f64, &gen);
  // Batch 0 masks tokens 1 and 6; batch 1 masks its whole first stride-2 group {0, 2, 4, 6}.
  const Tensor mask = from_vector<float>({1, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, {B, S});
  const Tensor y = block_attention(q, k, v, 4, 2, mask);
  // Changing the values of masked keys changes nothing (exp(-1e6) underflows to 0)...
  Tensor v2 = v.contiguous_raw();
  fill_(v2.as_strided({H, hd}, {hd, 1}, (0 * S + 1) * H * hd), 100.0);
  fill_(v2.as_strided({H, hd}, {hd, 1}, (0 * S + 6) * H * hd), -100.0);
  CHECK(max_abs_diff(block_attention(q, k, v2, 4, 2, mask), y) == 0.0);
  // ... unless the whole group is masked: then every score is shifted by the same
  // -1e6 and the softmax is the unmasked one (the LRA code's behaviour).
  const Tensor y_nomask = block_attention(q, k, v, 4, 2);
  const Tensor group = y.as_strided({4, H, hd}, {2 * H * hd, hd, 1}, S * H * hd);
  const Tensor group_nomask = y_nomask.as_strided({4, H, hd}, {2 * H * hd, hd, 1}, S * H * hd);
  CHECK(max_abs_diff(group, group_nomask) < 1e-9);
  // Any nonzero value keeps: a float mask of 0.5s is the same as no mask.
  CHECK(max_abs_diff(block_attention(q, k, v, 4, 2, full({B, S}, 0.5)), y_nomask) == 0.0);
  // f32 (its own exponential) also gives masked keys exactly zero weight.
  const Tensor qf = cast_raw(q, DType::f32), kf = cast_raw(k, DType::f32);
  CHECK(max_abs_diff(block_attention(qf, kf, cast_raw(v2, DType::f32), 4, 2, mask),
                     block_attention(qf, kf, cast_raw(v, DType::f32), 4, 2, mask)) == 0.0);
}

TEST_CASE("block_attention: heads that are not side by side in a token row", "[butterfly]") {
  // q, k, v slices of a per-head interleaved [B, S, H, 3, hd] tensor: head
  // stride 3 * hd, so the kernel packs each head's piece of a row separately.
  for (DType t : {DType::f64, DType::f32}) {
    INFO((t == DType::f64 ? "f64" : "f32"));
    Generator gen(31);
    const int64_t B = 2, S = 32, H = 4, hd = 6, block = 8, stride = 2;
    const Tensor all = randn({B, S, H, 3, hd}, t, &gen);
    const Shape& st = all.strides();
    std::vector<Tensor> qkv;
    for (int64_t i = 0; i < 3; ++i) {
      qkv.push_back(all.as_strided({B, S, H, hd}, {st[0], st[1], st[2], st[4]}, all.offset() + i * st[3]));
      qkv.back().set_requires_grad(true);
    }
    std::vector<int64_t> m(B * S);
    for (size_t i = 0; i < m.size(); ++i) m[i] = i % 3 != 1;
    const Tensor mask = from_vector<int64_t>(m, {B, S});
    Generator drop(5);
    const uint64_t seed = drop.seed(), offset = drop.offset();
    const Tensor y = block_attention(qkv[0], qkv[1], qkv[2], block, stride, mask, 0.2, &drop);
    const Tensor y_ref = block_attention_oracle(qkv[0], qkv[1], qkv[2], block, stride, mask, 0.2, seed, offset);
    const double tol = t == DType::f64 ? 1e-11 : 3e-5;
    check_close(y, y_ref, tol, "forward");
    const Tensor weighting = randn(y.sizes(), t, &gen);
    const auto grads = leaf_grads(y, weighting, qkv), grads_ref = leaf_grads(y_ref, weighting, qkv);
    for (size_t i = 0; i < 3; ++i) check_close(grads[i], grads_ref[i], tol, std::string("gradient of ") + "qkv"[i]);
  }
}

TEST_CASE("block_attention: outputs and gradients are bit-identical across thread counts", "[butterfly]") {
  // Every (batch, group, heads) task computes the same numbers on any thread
  // and dK / dV sum query tiles in a fixed order (block 192: three tiles of 64).
  for (const int64_t block : {int64_t(32), int64_t(192)}) {
    INFO("block " << block);
    Generator gen(12);
    const int64_t B = 2, S = 384, H = 8, hd = 8;
    const Tensor all = randn({B, S, 3, H, hd}, DType::f32, &gen);
    std::vector<Tensor> qkv;
    for (int64_t i = 0; i < 3; ++i) {
      qkv.push_back(select_view(all, i));
      qkv.back().set_requires_grad(true);
    }
    const Tensor weighting = randn({B, S, H, hd}, DType::f32, &gen);
    auto run = [&] {
      Generator drop(9);
      const Tensor y = block_attention(qkv[0], qkv[1], qkv[2], block, 2, Tensor(), 0.1, &drop);
      std::vector<std::vector<float>> r{y.to_vector<float>()};
      for (const Tensor& g : leaf_grads(y, weighting, qkv)) r.push_back(g.to_vector<float>());
      return r;
    };
    const auto a = run();
    const auto b = on_threads(1, run);
    const auto c = run();
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i] == b[i]);
      CHECK(a[i] == c[i]);
    }
  }
}

TEST_CASE("block_attention: dropout is a deterministic Philox mask", "[butterfly]") {
  // q = k = 0: uniform attention, so with v = 1 each output is
  // (kept keys) / block / (1 - p), a multiple of 1 / (block (1 - p)).
  const int64_t B = 4, S = 64, H = 2, hd = 1, block = 16;
  const double p = 0.25;
  const Tensor q = zeros({B, S, H, hd}), v = ones({B, S, H, hd});
  Generator g1(42), g2(42);
  const Tensor y1 = block_attention(q, q, v, block, 4, Tensor(), p, &g1);
  const Tensor y2 = block_attention(q, q, v, block, 4, Tensor(), p, &g2);
  CHECK(max_abs_diff(y1, y2) == 0.0);  // same (seed, offset): same mask
  CHECK(g1.offset() == static_cast<uint64_t>(B * H * S * block));
  const Tensor y3 = block_attention(q, q, v, block, 4, Tensor(), p, &g1);  // the offset moved on
  CHECK(max_abs_diff(y1, y3) > 0.0);
  double mean = 0;
  const double unit = 1.0 / (block * (1.0 - p));
  for (double e : y1.to_vector<double>()) {
    const double kept = e / unit;
    CHECK(std::abs(kept - std::round(kept)) < 1e-4);
    mean += e;
  }
  mean /= static_cast<double>(y1.numel());
  CHECK(mean == Approx(1.0).margin(0.05));  // E[kept] / block / (1 - p) = 1
  // p = 0 draws nothing.
  Generator g3(42);
  block_attention(q, q, v, block, 4, Tensor(), 0.0, &g3);
  CHECK(g3.offset() == 0);
}

TEST_CASE("block_attention: bad inputs are errors naming the op and the shapes", "[butterfly]") {
  const Tensor q = zeros({2, 12, 2, 4});
  CHECK_THROWS_WITH(block_attention(q, q, q, 5, 1),
                    Contains("block_attention") && Contains("S = 12") && Contains("not divisible by block 5"));
  CHECK_THROWS_WITH(block_attention(q, q, q, 3, 3),
                    Contains("block_attention") && Contains("12 / 3 = 4") && Contains("divisible by stride 3"));
  CHECK_THROWS_WITH(block_attention(q, zeros({2, 12, 2, 5}), q, 3, 1),
                    Contains("block_attention") && Contains("same shape") && Contains("[2, 12, 2, 5]"));
  CHECK_THROWS_WITH(block_attention(q, q, zeros({2, 12, 2, 4}, DType::f64), 3, 1),
                    Contains("block_attention: dtype mismatch"));
  CHECK_THROWS_WITH(block_attention(zeros({2, 12, 8}), zeros({2, 12, 8}), zeros({2, 12, 8}), 3, 1),
                    Contains("block_attention") && Contains("4-d") && Contains("[2, 12, 8]"));
  CHECK_THROWS_WITH(block_attention(q, q, q, 3, 1, zeros({2, 11})),
                    Contains("block_attention") && Contains("key_mask [B, S] = [2, 12]") && Contains("[2, 11]"));
  CHECK_THROWS_WITH(block_attention(q, q, q, 3, 1, Tensor(), 1.0), Contains("dropout_p must be in [0, 1)"));
}
