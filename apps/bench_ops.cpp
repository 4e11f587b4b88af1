// bench_ops: CPU throughput of the core ops, each against a peer measured in
// the same run (DESIGN.md 10: figures are ratios, not absolute claims).
//
//   GEMM            matmul / gemm<float> vs a direct cblas_sgemm call
//   elementwise     add, mul, gelu on [32768, 128] (GB/s of tensor traffic)
//   softmax         [256, 64, 64], [64, 1024, 1024]; layer_norm [8192, 64], [32768, 64], [8192, 121]
//   block_linear    vs its composite (permute + batched matmul + un-permute) at
//                   the paper's shapes (PAPERS.md 1.1-1.4): T2 token and channel
//                   levels, butterfly-mixer-s levels, n = 1024 with b = 32; plus
//                   the weight and input gradients alone
//   block_mlp       a Butterfly MLP mixer's levels as one op vs one op per level
//                   vs block_linear + gelu + block_linear, T2 and mixer-s shapes
//   block_attention butterfly (block 32, strides 1 and 32) vs dense, B8 H8 S1024 hd64;
//                   and the butterfly ViTs' own shapes (batch 32, hd 8 and 16, blocks 8-64)
//
// Each figure is the median of at least --reps runs (more for fast ops, up to
// 0.3 s) after one warm-up run.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "apps/app_common.h"
#include "autograd/node.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/block_attention.h"
#include "ops/block_linear.h"
#include "ops/block_mlp.h"
#include "ops/elementwise.h"
#include "ops/layer_norm.h"
#include "ops/linalg.h"
#include "ops/shape.h"
#include "ops/softmax.h"

using namespace dimix;

namespace {

int g_reps = 7;            // at least this many timed runs
double g_min_seconds = 0.3;  // and, for fast ops, at least this long (at most 201 runs)

// Median wall time of fn in milliseconds, after one warm-up run. Fast ops run
// more often: on a shared machine a median of many runs shrugs off the
// scheduler's hiccups that a median of 7 sub-millisecond runs does not.
double time_ms(const std::function<void()>& fn) {
  fn();  // warm-up: caches, allocator, thread pool
  std::vector<double> t;
  double total = 0;
  while (static_cast<int>(t.size()) < g_reps || (total < g_min_seconds * 1e3 && t.size() < 201)) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    total += t.back();
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// fwd (no graph) and fwd+bwd (graph, backward with a fixed upstream gradient)
// times of fn(inputs); returns {fwd_ms, fwd_bwd_ms}.
std::pair<double, double> time_fwd_bwd(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                       const std::vector<Tensor>& inputs) {
  const double fwd = time_ms([&] {
    NoGradGuard ng;
    fn(inputs);
  });
  Tensor gy;
  {
    NoGradGuard ng;
    Generator g(3);
    gy = randn(fn(inputs).sizes(), DType::f32, &g);
  }
  const double both = time_ms([&] {
    for (const Tensor& t : inputs)
      if (t.defined()) t.zero_grad();
    backward(fn(inputs), gy);
  });
  return {fwd, both};
}

void rule() { std::printf("%s\n", std::string(100, '-').c_str()); }

// ---- GEMM ------------------------------------------------------------------------------
void bench_gemm() {
  std::printf("\nGEMM (f32), GFLOP/s: our matmul (allocates the output), gemm<float>, direct cblas_sgemm\n");
  rule();
  std::printf("%-24s %12s %12s %12s %14s\n", "M x N x K", "matmul", "gemm<float>", "cblas_sgemm", "gemm / cblas");
  rule();
  // Square and skinny big products, then the networks' own at batch 32: the
  // patch-1 ViT's QKV Linear ([32768 tokens, 64] x [64, 192]), the patch-4
  // ViT's QKV and MLP Linears ([2048, 128] x [128, 384], [2048, 128] x
  // [128, 256]) and the Table II dense mixer's token and channel Linears
  // ([3872, 64] x [64, 64], [2048, 121] x [121, 121]). A Linear's forward is
  // x @ W^T (NT), its input gradient g @ W (NN), its weight gradient g^T @ x
  // (TN, a long K); those three forms of the patch-4 MLP Linear close the table.
  struct Shape3 {
    int64_t M, N, K;
    bool ta, tb;
  };
  const Shape3 sizes[] = {{1024, 1024, 1024, false, false}, {4096, 4096, 128, false, false},
                          {4096, 128, 4096, false, false},  {32768, 192, 64, false, true},
                          {2048, 384, 128, false, true},    {2048, 256, 128, false, true},
                          {3872, 64, 64, false, true},      {2048, 121, 121, false, true},
                          {2048, 128, 256, false, false},   {256, 128, 2048, true, false}};
  for (const Shape3& s : sizes) {
    const int64_t M = s.M, N = s.N, K = s.K;
    Generator g(1);
    const Tensor a = randn({M, K}, DType::f32, &g), b = randn({K, N}, DType::f32, &g);
    const int64_t lda = s.ta ? M : K, ldb = s.tb ? K : N;
    Tensor c = empty({M, N});
    const double flop = 2.0 * M * N * K;
    const Tensor a_op = s.ta ? a.as_strided({M, K}, {1, M}, 0) : a, b_op = s.tb ? b.as_strided({K, N}, {1, K}, 0) : b;
    const double t_mm = time_ms([&] { matmul(a_op, b_op); });
    const double t_gemm = time_ms([&] {
      gemm<float>(s.ta, s.tb, M, N, K, 1.f, a.data<float>(), lda, b.data<float>(), ldb, 0.f, c.data<float>(), N);
    });
    // The peer is OpenBLAS threading the product itself, as a program
    // calling it directly would (dimix keeps BLAS at one thread per call and
    // cuts products over its own pool).
    openblas_set_num_threads(get_num_threads());
    const double t_blas = time_ms([&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, M, N, K, 1.f,
                  a.data<float>(), lda, b.data<float>(), ldb, 0.f, c.data<float>(), N);
    });
    openblas_set_num_threads(1);
    char name[64];
    std::snprintf(name, sizeof name, "%ld x %ld x %ld %s%s", (long)M, (long)N, (long)K, s.ta ? "T" : "N",
                  s.tb ? "T" : "N");
    std::printf("%-24s %12.1f %12.1f %12.1f %14.2f\n", name, flop / t_mm / 1e6, flop / t_gemm / 1e6,
                flop / t_blas / 1e6, t_blas / t_gemm);
  }
}

// ---- elementwise, softmax, layer_norm ------------------------------------------------------
void bench_memory_bound() {
  std::printf("\nMemory-bound ops (f32), GB/s of tensor traffic (fwd: inputs + output; bwd adds grad in/out)\n");
  rule();
  std::printf("%-34s %12s %12s %12s %12s\n", "op [shape]", "fwd ms", "fwd GB/s", "fwd+bwd ms", "fwd+bwd GB/s");
  rule();
  Generator g(2);
  auto row = [](const std::string& name, double bytes_fwd, double bytes_both, std::pair<double, double> t) {
    std::printf("%-34s %12.3f %12.1f %12.3f %12.1f\n", name.c_str(), t.first, bytes_fwd / t.first / 1e6, t.second,
                bytes_both / t.second / 1e6);
  };
  {
    const Tensor a = randn({32768, 128}, DType::f32, &g).set_requires_grad(true);
    const Tensor b = randn({32768, 128}, DType::f32, &g).set_requires_grad(true);
    const double e = 4.0 * a.numel();
    // add: fwd reads 2 writes 1; bwd passes the gradient through to both (read 1, write 2).
    row("add [32768, 128]", 3 * e, 6 * e, time_fwd_bwd([](const auto& x) { return add(x[0], x[1]); }, {a, b}));
    row("mul [32768, 128]", 3 * e, 8 * e, time_fwd_bwd([](const auto& x) { return mul(x[0], x[1]); }, {a, b}));
    row("gelu [32768, 128]", 2 * e, 5 * e, time_fwd_bwd([](const auto& x) { return gelu(x[0]); }, {a}));
  }
  for (const Shape& s : {Shape{256, 64, 64}, Shape{64, 1024, 1024}}) {
    const Tensor x = randn(s, DType::f32, &g).set_requires_grad(true);
    const double e = 4.0 * x.numel();
    row("softmax " + shape_str(s), 2 * e, 5 * e, time_fwd_bwd([](const auto& v) { return softmax(v[0], -1); }, {x}));
  }
  // ... and the T2 mixers' rows of 121 channels (a ragged vector tail).
  for (const Shape& s : {Shape{8192, 64}, Shape{32768, 64}, Shape{8192, 121}}) {
    const Tensor x = randn(s, DType::f32, &g).set_requires_grad(true);
    const Tensor w = randn({s[1]}, DType::f32, &g).set_requires_grad(true);
    const Tensor b = randn({s[1]}, DType::f32, &g).set_requires_grad(true);
    const double e = 4.0 * x.numel();
    row("layer_norm " + shape_str(s), 2 * e, 5 * e,
        time_fwd_bwd([](const auto& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b}));
  }
}

// ---- block_linear -------------------------------------------------------------------------
// The authors' composite: permute (view + transpose + contiguous), one batched
// matmul over the groups, bias, un-permute.
Tensor block_linear_composite(const Tensor& x, const Tensor& w, const Tensor& b, int64_t dim, int64_t g_in,
                              int64_t g_out) {
  const int64_t G = w.sizes()[0], b_out = w.sizes()[1], b_in = w.sizes()[2];
  int64_t N = 1, d = 1;
  for (int64_t i = 0; i < dim; ++i) N *= x.sizes()[i];
  for (int64_t i = dim + 1; i < x.dim(); ++i) d *= x.sizes()[i];
  const Tensor xp = reshape(contiguous(transpose(reshape(x, {N, G / g_in, b_in, g_in, d}), 2, 3)), {N, G, b_in, d});
  Tensor yp;
  if (d == 1) {
    // [G, N, b_in] @ W^T: one GEMM per group over all rows, as nn.Linear/bmm would.
    const Tensor xg = contiguous(transpose(reshape(xp, {N, G, b_in}), 0, 1));
    yp = transpose(matmul(xg, transpose(w, 1, 2)), 0, 1);  // [N, G, b_out]
    yp = reshape(add(yp, b), {N, G, b_out, 1});
  } else {
    yp = add(matmul(w, xp), reshape(b, {G, b_out, 1}));
  }
  Shape out_shape = x.sizes();
  out_shape[dim] = G * b_out;
  return reshape(contiguous(transpose(reshape(yp, {N, G / g_out, g_out, b_out, d}), 2, 3)), out_shape);
}

void bench_block_linear() {
  std::printf("\nblock_linear (f32) vs its composite (permute + batched matmul + un-permute); dW and dX: one\n"
              "gradient alone (the backward of a graph where only that input requires grad)\n");
  rule();
  std::printf("%-38s %7s %6s %5s %7s %6s %5s %6s %6s %6s %6s %6s %7s\n", "case", "fwd ms", "GF/s", "xcomp",
              "f+b ms", "GF/s", "xcomp", "dW ms", "GF/s", "dX ms", "GF/s", "comp f", "comp fb");
  rule();
  struct Case {
    const char* name;
    Shape x;
    int64_t dim, b_in, b_out, g_in, g_out;
  };
  // The T2 and mixer rows are the levels of t2-butterfly-mlp-h1 (batch 32:
  // 32 images x 64 tokens x 121 channels) and butterfly-mixer-s (batch 32:
  // 49 patches x 64 channels), with the strides their layers use.
  const std::vector<Case> cases = {
      {"T2 token  [32,64,121] d1 b8 g1", {32, 64, 121}, 1, 8, 8, 1, 1},
      {"T2 token  [32,64,121] d1 b8 g1->8", {32, 64, 121}, 1, 8, 8, 1, 8},
      {"T2 token  [32,64,121] d1 b8 g8->1", {32, 64, 121}, 1, 8, 8, 8, 1},
      {"T2 token  [32,64,121] d1 b8 g8", {32, 64, 121}, 1, 8, 8, 8, 8},
      {"T2 chan   [2048,121] b11 g1", {2048, 121}, 1, 11, 11, 1, 1},
      {"T2 chan   [2048,121] b11 g1->11", {2048, 121}, 1, 11, 11, 1, 11},
      {"T2 chan   [2048,121] b11 g11->1", {2048, 121}, 1, 11, 11, 11, 1},
      {"T2 chan   [2048,121] b11 g11", {2048, 121}, 1, 11, 11, 11, 11},
      {"T2 chan   [2048,121] b11->22 g1", {2048, 121}, 1, 11, 22, 1, 1},
      {"T2 chan   [2048,121] b11->22 g11", {2048, 121}, 1, 11, 22, 11, 11},
      {"mixer tok [32,49,64] d1 b7->14 g1", {32, 49, 64}, 1, 7, 14, 1, 1},
      {"mixer tok [32,98,64] d1 b14->7 g1->7", {32, 98, 64}, 1, 14, 7, 1, 7},
      {"mixer ch  [1568,64] b8->16 g8->1", {1568, 64}, 1, 8, 16, 8, 1},
      {"mixer ch  [1568,128] b16->8 g1->8", {1568, 128}, 1, 16, 8, 1, 8},
      {"n1024     [4096,1024] b32->64 g1", {4096, 1024}, 1, 32, 64, 1, 1},
      {"n1024     [4096,1024] b32->64 g32", {4096, 1024}, 1, 32, 64, 32, 32},
  };
  for (const Case& c : cases) {
    Generator g(4);
    const int64_t n = c.x[c.dim], G = n / c.b_in;
    const Tensor x = randn(c.x, DType::f32, &g).set_requires_grad(true);
    const Tensor w = randn({G, c.b_out, c.b_in}, DType::f32, &g).set_requires_grad(true);
    const Tensor b = randn({G, c.b_out}, DType::f32, &g).set_requires_grad(true);
    const double flop = 2.0 * (x.numel() / n) * G * c.b_out * c.b_in;
    auto ours_fn = [&](const auto& v) { return block_linear(v[0], v[1], v[2], c.dim, c.g_in, c.g_out); };
    const auto ours = time_fwd_bwd(ours_fn, {x, w, b});
    const auto comp = time_fwd_bwd(
        [&](const auto& v) { return block_linear_composite(v[0], v[1], v[2], c.dim, c.g_in, c.g_out); }, {x, w, b});
    // One gradient alone: the backward of a kept graph in which only that
    // input requires grad.
    auto backward_ms = [&](const Tensor& xi, const Tensor& wi, const Tensor& leaf) {
      const Tensor y = ours_fn(std::vector<Tensor>{xi, wi, Tensor()});
      Generator gg(5);
      const Tensor gy = randn(y.sizes(), DType::f32, &gg);
      return time_ms([&] {
        leaf.zero_grad();
        backward(y, gy, /*retain_graph=*/true);
      });
    };
    const double dw = backward_ms(x.detach(), w, w);
    const double dx = backward_ms(x, w.detach(), x);
    std::printf("%-38s %7.3f %6.1f %5.1f %7.3f %6.1f %5.1f %6.3f %6.1f %6.3f %6.1f %6.2f %7.2f\n", c.name, ours.first,
                flop / ours.first / 1e6, comp.first / ours.first, ours.second, 3 * flop / ours.second / 1e6,
                comp.second / ours.second, dw, flop / dw / 1e6, dx, flop / dx / 1e6, comp.first, comp.second);
  }
  std::printf("(fwd+bwd GF/s counts 3x the forward flops; 'comp' columns are the composite's ms)\n");
}

// ---- block_mlp ------------------------------------------------------------------------------
void bench_block_mlp() {
  std::printf("\nblock_mlp (f32): the levels of a Butterfly MLP mixer (b -> h -> b, GELU) as one op, against one\n"
              "block_mlp per level and against block_linear + gelu + block_linear per level\n");
  rule();
  std::printf("%-40s %8s %8s %8s %8s %8s %8s %7s %7s\n", "case", "fwd ms", "f+b ms", "lvl fwd", "lvl f+b",
              "cmp fwd", "cmp f+b", "x lvl", "x cmp");
  rule();
  struct Case {
    const char* name;
    Shape x;
    int64_t dim, b, h;
    std::vector<int64_t> strides;
  };
  // The mixers of t2-butterfly-mlp-h1/h2 and butterfly-mixer-s at batch 32.
  const std::vector<Case> cases = {
      {"T2 token [32,64,121] d1 b8 h8 g1,8", {32, 64, 121}, 1, 8, 8, {1, 8}},
      {"T2 token [32,64,121] d1 b8 h16 g1,8", {32, 64, 121}, 1, 8, 16, {1, 8}},
      {"T2 chan  [2048,121] b11 h11 g1,11", {2048, 121}, 1, 11, 11, {1, 11}},
      {"T2 chan  [2048,121] b11 h22 g1,11", {2048, 121}, 1, 11, 22, {1, 11}},
      {"mixer ch [1568,64] b8 h16 g1,8", {1568, 64}, 1, 8, 16, {1, 8}},
  };
  for (const Case& c : cases) {
    Generator g(4);
    const int64_t G = c.x[c.dim] / c.b;
    const Tensor x = randn(c.x, DType::f32, &g).set_requires_grad(true);
    auto param = [&](const Shape& s) { return mul(randn(s, DType::f32, &g), 0.3).detach().set_requires_grad(true); };
    std::vector<Tensor> inputs = {x};
    for (size_t l = 0; l < c.strides.size(); ++l)
      for (const Shape& s : {Shape{G, c.h, c.b}, Shape{G, c.h}, Shape{G, c.b, c.h}, Shape{G, c.b}})
        inputs.push_back(param(s));
    auto levels = [&](const std::vector<Tensor>& v) {
      std::vector<BlockMlpLevel> ls;
      for (size_t l = 0; l < c.strides.size(); ++l)
        ls.push_back({v[1 + 4 * l], v[2 + 4 * l], v[3 + 4 * l], v[4 + 4 * l], c.strides[l]});
      return ls;
    };
    const auto ours = time_fwd_bwd([&](const auto& v) { return block_mlp(v[0], levels(v), c.dim); }, inputs);
    const auto per_level = time_fwd_bwd(
        [&](const auto& v) {
          Tensor y = v[0];
          for (const BlockMlpLevel& l : levels(v)) y = block_mlp(y, {l}, c.dim);
          return y;
        },
        inputs);
    const auto comp = time_fwd_bwd(
        [&](const auto& v) {
          Tensor y = v[0];
          for (const BlockMlpLevel& l : levels(v))
            y = block_linear(gelu(block_linear(y, l.w1, l.b1, c.dim, l.stride, 1)), l.w2, l.b2, c.dim, 1, l.stride);
          return y;
        },
        inputs);
    std::printf("%-40s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %7.2f %7.2f\n", c.name, ours.first, ours.second,
                per_level.first, per_level.second, comp.first, comp.second, per_level.second / ours.second,
                comp.second / ours.second);
  }
}

// ---- block_attention ------------------------------------------------------------------------
// The composite: permute tokens into groups, matmul, softmax, matmul, un-permute.
Tensor block_attention_composite(const Tensor& q, const Tensor& k, const Tensor& v, int64_t block, int64_t stride) {
  const int64_t B = q.sizes()[0], S = q.sizes()[1], H = q.sizes()[2], hd = q.sizes()[3], G = S / block;
  auto grouped = [&](const Tensor& x) {  // [B, H, G, block, hd]
    const Tensor p = reshape(contiguous(transpose(reshape(x, {B, G / stride, block, stride, H, hd}), 2, 3)),
                             {B, G, block, H, hd});
    return permute(p, {0, 3, 1, 2, 4});
  };
  const Tensor scores = mul(matmul(grouped(q), transpose(grouped(k), -1, -2)), 1.0 / std::sqrt(double(hd)));
  const Tensor out = matmul(softmax(scores, -1), grouped(v));  // [B, H, G, block, hd]
  const Tensor o = reshape(contiguous(permute(out, {0, 2, 3, 1, 4})), {B, G / stride, stride, block, H, hd});
  return reshape(contiguous(transpose(o, 2, 3)), {B, S, H, hd});
}

void bench_block_attention() {
  std::printf("\nblock_attention (f32), B8 H8 S1024 hd64: butterfly block 32 vs dense (block = S), and vs the\n"
              "composite (permute + matmul + softmax + matmul + un-permute)\n");
  rule();
  std::printf("%-32s %8s %8s %7s %9s %8s %7s %9s\n", "case", "fwd ms", "GFLOP/s", "x comp", "f+b ms", "GFLOP/s",
              "x comp", "x dense");
  rule();
  const int64_t B = 8, H = 8, S = 1024, hd = 64;
  Generator g(6);
  const Tensor q = randn({B, S, H, hd}, DType::f32, &g).set_requires_grad(true);
  const Tensor k = randn({B, S, H, hd}, DType::f32, &g).set_requires_grad(true);
  const Tensor v = randn({B, S, H, hd}, DType::f32, &g).set_requires_grad(true);
  struct Case {
    const char* name;
    int64_t block, stride;
  };
  double dense_both = 0;
  for (const Case& c : {Case{"dense (block 1024, stride 1)", S, 1}, Case{"butterfly block 32, stride 1", 32, 1},
                        Case{"butterfly block 32, stride 32", 32, 32}}) {
    // QK^T and PV: 2 * 2 * B*H*S*block*hd flops.
    const double flop = 4.0 * B * H * S * c.block * hd;
    const auto t = time_fwd_bwd(
        [&](const auto& x) { return block_attention(x[0], x[1], x[2], c.block, c.stride); }, {q, k, v});
    const auto comp = time_fwd_bwd(
        [&](const auto& x) { return block_attention_composite(x[0], x[1], x[2], c.block, c.stride); }, {q, k, v});
    if (c.block == S) dense_both = t.second;
    std::printf("%-32s %8.2f %8.1f %7.1f %9.2f %8.1f %7.1f %9.1f\n", c.name, t.first, flop / t.first / 1e6,
                comp.first / t.first, t.second, 3.5 * flop / t.second / 1e6, comp.second / t.second,
                dense_both / t.second);
  }
  std::printf("(fwd+bwd GFLOP/s counts 3.5x the forward flops: forward, recomputed scores, dP, dS K, dS^T Q, "
              "P^T dO)\n");

  // The Table III ViTs' attention at batch 32, 8 heads: tiny heads and
  // score tiles, where per-group overhead rather than flops sets the time.
  // q, k, v are slices of one fused QKV output, as MultiHeadAttention makes them.
  std::printf("\nblock_attention (f32) at the butterfly ViTs' shapes, batch 32, 8 heads, q/k/v slices of a fused "
              "QKV\n");
  rule();
  std::printf("%-40s %8s %8s %9s %8s\n", "case", "fwd ms", "GFLOP/s", "f+b ms", "GFLOP/s");
  rule();
  struct VitCase {
    const char* name;
    int64_t S, hd, block, stride;
  };
  for (const VitCase& c : {VitCase{"p1 S1024 hd8 block 32, stride 1", 1024, 8, 32, 1},
                           VitCase{"p1 S1024 hd8 block 32, stride 32", 1024, 8, 32, 32},
                           VitCase{"p2 S256 hd8 block 16, stride 1", 256, 8, 16, 1},
                           VitCase{"p2 S256 hd8 block 16, stride 16", 256, 8, 16, 16},
                           VitCase{"p4 S64 hd16 block 8, stride 1", 64, 16, 8, 1},
                           VitCase{"p4 S64 hd16 block 8, stride 8", 64, 16, 8, 8},
                           VitCase{"p4 S64 hd16 dense (block 64)", 64, 16, 64, 1}}) {
    const int64_t Bv = 32, Hv = 8;
    const Tensor qkv = randn({Bv, c.S, 3, Hv, c.hd}, DType::f32, &g);
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < 3; ++i) {
      const Shape st = qkv.strides();
      parts.push_back(qkv.as_strided({Bv, c.S, Hv, c.hd}, {st[0], st[1], st[3], st[4]}, qkv.offset() + i * st[2])
                          .set_requires_grad(true));
    }
    const double flop = 4.0 * Bv * Hv * c.S * c.block * c.hd;
    const auto t = time_fwd_bwd(
        [&](const auto& x) { return block_attention(x[0], x[1], x[2], c.block, c.stride); }, parts);
    std::printf("%-40s %8.3f %8.1f %9.3f %8.1f\n", c.name, t.first, flop / t.first / 1e6, t.second,
                3.5 * flop / t.second / 1e6);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return app::run_main([&] {
    app::Flags flags("bench_ops",
                     "CPU throughput of GEMM, memory-bound ops and the butterfly ops, each against a peer.");
    flags.add_bool("quick", "few repetitions (3) instead of 7");
    flags.add("threads", "0", "threads for OpenMP and BLAS (0 = the default)");
    flags.add("reps", "0", "minimum timed repetitions per figure (0 = 7, or 3 with --quick)");
    flags.add("only", "", "run one section: gemm, memory, block_linear, block_mlp, block_attention");
    if (!flags.parse(argc, argv)) return 0;
    const std::string only = flags.str("only");
    DIMIX_CHECK(only.empty() || only == "gemm" || only == "memory" || only == "block_linear" ||
                    only == "block_mlp" || only == "block_attention",
                "bench_ops: --only expects gemm, memory, block_linear, block_mlp or block_attention, got '", only, "'");
    DIMIX_CHECK(flags.integer("threads") >= 0, "bench_ops: --threads must be >= 0, got ", flags.integer("threads"));
    DIMIX_CHECK(flags.integer("reps") >= 0, "bench_ops: --reps must be >= 0, got ", flags.integer("reps"));
    g_reps = flags.flag("quick") ? 3 : 7;
    if (flags.flag("quick")) g_min_seconds = 0;
    if (flags.integer("reps") > 0) g_reps = static_cast<int>(flags.integer("reps"));
    if (flags.integer("threads") > 0) set_num_threads(static_cast<int>(flags.integer("threads")));
    std::printf("bench_ops: %d threads, median of >= %d runs (fast ops: >= %.1f s) after a warm-up\n",
                get_num_threads(), g_reps, g_min_seconds);
    if (only.empty() || only == "gemm") bench_gemm();
    if (only.empty() || only == "memory") bench_memory_bound();
    if (only.empty() || only == "block_linear") bench_block_linear();
    if (only.empty() || only == "block_mlp") bench_block_mlp();
    if (only.empty() || only == "block_attention") bench_block_attention();
    return 0;
  });
}
