// The fused CUDA kernels (part 2) against their oracles, the part-1 simple
// kernels, on random inputs of awkward sizes: tiled block_linear (forward and
// weight gradient), group-fused and flash block attention (forward and
// backward, key mask, Philox dropout, strided groups, views of a fused QKV
// tensor), the multi-tensor Adam/AdamW update, and the TF32 tolerance rule.
// The kernels are called by name through the kernel table, so each pair
// sees the very same inputs.
//
// Every GPU test skips itself, visibly (a WARN line saying SKIPPED), without a
// device; the first test (kernel names and signatures) runs in any CUDA build.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/node.h"
#include "core/kernel_table.h"
#include "cuda/runtime.h"
#include "models/optim.h"
#include "ops/block_attention.h"
#include "ops/block_linear.h"
#include "ops/linalg.h"

using namespace dimix;

namespace {

using T_ = const Tensor&;
using BlockLinearForward = void(T_, T_, T_, T_, int64_t, int64_t);
using BlockLinearWeight = void(T_, T_, T_, int64_t, int64_t);
using AttentionForward = void(T_, T_, T_, T_, T_, int64_t, int64_t, double, uint64_t, uint64_t);
using AttentionBackward = void(T_, T_, T_, T_, T_, T_, T_, T_, int64_t, int64_t, double, uint64_t, uint64_t);
using FlashForward = void(T_, T_, T_, T_, T_, T_, int64_t, int64_t, double, uint64_t, uint64_t);
using FlashBackward = void(T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, int64_t, int64_t, double, uint64_t, uint64_t);
using MultiTensorAdam = void(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                             const std::vector<Tensor>&, const std::vector<AdamStepArgs>&);
using AdamStep = void(T_, T_, T_, T_, const AdamStepArgs&);

bool skip_without_gpu() {
  if (cuda::available()) return false;
  WARN("SKIPPED: no CUDA device (" << (cuda_built() ? "built with CUDA" : "built without CUDA")
                                    << "); fused kernels not compared with their oracles");
  SUCCEED();
  return true;
}

Tensor gpu(const Tensor& t) { return to_device_raw(t.contiguous_raw(), Device::cuda()); }
Tensor host(const Tensor& t) { return to_device_raw(t.contiguous_raw(), Device::cpu()); }

// max |a - b| / max(max |b|, 1e-6) over all elements (any devices).
double rel_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double num = 0, scale = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return std::numeric_limits<double>::infinity();
    num = std::max(num, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return num / scale;
}

template <class T>
bool bit_equal(const Tensor& a, const Tensor& b) {
  const auto x = host(a).to_vector<T>(), y = host(b).to_vector<T>();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
}

// A GPU view [outer, n, inner] with element strides {so, sn, si} over fresh
// random storage (so the kernels see padded / interleaved layouts).
Tensor strided_gpu(Generator& g, int64_t outer, int64_t n, int64_t inner, int64_t so, int64_t sn, int64_t si,
                   DType dt) {
  const int64_t extent = (outer - 1) * so + (n - 1) * sn + (inner - 1) * si + 1;
  const Tensor base = gpu(randn({extent}, dt, &g));
  return base.as_strided({outer, n, inner}, {so, sn, si}, base.offset());
}

}  // namespace

TEST_CASE("cuda fused: kernels are registered with the callers' signatures", "[cuda][fused]") {
  if (!cuda_built()) {
    WARN("SKIPPED: dimix was built without CUDA; no kernels are registered");
    SUCCEED();
    return;
  }
  for (const char* name : {"block_linear_forward", "block_linear_forward_simple"})
    CHECK_NOTHROW(cuda_kernel<BlockLinearForward>(name));
  for (const char* name : {"block_linear_backward_weight", "block_linear_backward_weight_simple"})
    CHECK_NOTHROW(cuda_kernel<BlockLinearWeight>(name));
  for (const char* name : {"block_attention_forward", "block_attention_forward_simple"})
    CHECK_NOTHROW(cuda_kernel<AttentionForward>(name));
  for (const char* name : {"block_attention_backward", "block_attention_backward_simple"})
    CHECK_NOTHROW(cuda_kernel<AttentionBackward>(name));
  CHECK_NOTHROW(cuda_kernel<FlashForward>("flash_attention_forward"));
  CHECK_NOTHROW(cuda_kernel<FlashBackward>("flash_attention_backward"));
  CHECK_NOTHROW(cuda_kernel<MultiTensorAdam>("multi_tensor_adam"));
}

// ---- block_linear -------------------------------------------------------------------------

namespace {

struct LinearCase {
  int64_t outer, inner, G, b_in, b_out, g_in, g_out;
  bool bias;
  int layout;  // 0 contiguous, 1 positions 2 apart, 2 rows padded and inner stride 2
  DType dtype = DType::f32;
};

void compare_block_linear(const LinearCase& c, uint64_t seed) {
  INFO("outer " << c.outer << " inner " << c.inner << " G " << c.G << " b " << c.b_in << "->" << c.b_out
                << " strides " << c.g_in << "->" << c.g_out << " bias " << c.bias << " layout " << c.layout
                << " dtype " << dtype_name(c.dtype));
  Generator g(seed);
  const int64_t n_in = c.G * c.b_in, n_out = c.G * c.b_out;
  int64_t so = n_in * c.inner, sn = c.inner, si = 1;
  if (c.layout == 1) {
    sn = 2 * c.inner;
    so = 2 * n_in * c.inner;
  } else if (c.layout == 2) {
    si = 2;
    sn = 2 * c.inner;
    so = 2 * n_in * c.inner + 3;
  }
  const Tensor x3 = strided_gpu(g, c.outer, n_in, c.inner, so, sn, si, c.dtype);
  const Tensor w = gpu(randn({c.G, c.b_out, c.b_in}, c.dtype, &g));
  const Tensor bias = c.bias ? gpu(randn({c.G, c.b_out}, c.dtype, &g)) : Tensor();
  const Tensor y_fused = empty({c.outer, n_out, c.inner}, c.dtype, Device::cuda());
  const Tensor y_simple = empty({c.outer, n_out, c.inner}, c.dtype, Device::cuda());
  cuda_kernel<BlockLinearForward>("block_linear_forward")(y_fused, x3, w, bias, c.g_in, c.g_out);
  cuda_kernel<BlockLinearForward>("block_linear_forward_simple")(y_simple, x3, w, bias, c.g_in, c.g_out);
  // Same fused multiply-adds in the same order: equal up to (in practice exactly) rounding.
  CHECK(rel_error(y_fused, y_simple) <= 1e-6);

  const Tensor dy = gpu(randn({c.outer, n_out, c.inner}, c.dtype, &g));
  const Tensor dw_fused = empty({c.G, c.b_out, c.b_in}, c.dtype, Device::cuda());
  const Tensor dw_simple = empty({c.G, c.b_out, c.b_in}, c.dtype, Device::cuda());
  cuda_kernel<BlockLinearWeight>("block_linear_backward_weight")(dw_fused, dy, x3, c.g_in, c.g_out);
  cuda_kernel<BlockLinearWeight>("block_linear_backward_weight_simple")(dw_simple, dy, x3, c.g_in, c.g_out);
  // Rows summed in other chunks: rounding of a sum over outer * inner rows.
  CHECK(rel_error(dw_fused, dw_simple) <= (c.dtype == DType::f64 ? 1e-12 : 2e-5));
  // Deterministic: the same bits again.
  const Tensor dw_again = empty({c.G, c.b_out, c.b_in}, c.dtype, Device::cuda());
  cuda_kernel<BlockLinearWeight>("block_linear_backward_weight")(dw_again, dy, x3, c.g_in, c.g_out);
  CHECK(rel_error(dw_again, dw_fused) == 0.0);
}

}  // namespace

TEST_CASE("cuda fused: tiled block_linear matches the simple kernels", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  uint64_t seed = 100;
  for (int64_t b : {3, 8, 11, 32}) {
    for (int64_t inner : {1, 5}) {
      for (int layout : {0, 1, 2}) {
        // Stride 1 (block diagonal) and stride b (the next butterfly level).
        compare_block_linear({37, inner, b, b, b, 1, 1, true, layout}, seed++);
        compare_block_linear({37, inner, b, b, b, b, b, true, layout}, seed++);
      }
    }
    // Many row tiles and several group tiles, ragged at both ends.
    compare_block_linear({301, 1, 4 * b, b, b, b, b, true, 0}, seed++);
    compare_block_linear({9, 67, 2 * b, b, b, 2, 2, false, 0}, seed++);
  }
  // b_in != b_out, in_stride != out_stride, no bias.
  compare_block_linear({29, 1, 4, 3, 5, 2, 4, false, 1}, seed++);
  compare_block_linear({7, 3, 12, 5, 2, 3, 4, true, 2}, seed++);
  // The paper's n = 1024 level with b = 32 and the Table II levels (64 = 8 x 8, 121 = 11 x 11).
  compare_block_linear({130, 1, 32, 32, 32, 32, 32, true, 0}, seed++);
  compare_block_linear({200, 1, 11, 11, 22, 11, 11, true, 0}, seed++);
  compare_block_linear({16, 121, 8, 8, 16, 8, 8, true, 0}, seed++);
  // A dense map (G = 1) and blocks too big for the tiled weight gradient (falls back).
  compare_block_linear({45, 1, 1, 70, 66, 1, 1, true, 0}, seed++);
  compare_block_linear({3, 1, 1, 1000, 5, 1, 1, true, 1}, seed++);
  // Double precision.
  compare_block_linear({41, 3, 6, 11, 11, 3, 3, true, 2, DType::f64}, seed++);
}

TEST_CASE("cuda fused: block_linear on the GPU matches the CPU op with gradients", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Generator g(7);
  struct Case {
    Shape x;
    int64_t dim, G, b_in, b_out, g_in, g_out;
  };
  for (const Case& c : {Case{{33, 1024}, 1, 32, 32, 32, 32, 32}, Case{{6, 64, 121}, 1, 8, 8, 16, 8, 8},
                        Case{{5, 64, 121}, 2, 11, 11, 22, 11, 11}}) {
    INFO("x " << shape_str(c.x) << " dim " << c.dim << " G " << c.G);
    const Tensor x = randn(c.x, DType::f32, &g), w = randn({c.G, c.b_out, c.b_in}, DType::f32, &g);
    const Tensor b = randn({c.G, c.b_out}, DType::f32, &g);
    std::vector<Tensor> cpu{x, w, b}, dev;
    for (Tensor& t : cpu) {
      t.set_requires_grad(true);
      dev.push_back(gpu(t));
      dev.back().set_requires_grad(true);
    }
    const Tensor yc = block_linear(cpu[0], cpu[1], cpu[2], c.dim, c.g_in, c.g_out);
    const Tensor yg = block_linear(dev[0], dev[1], dev[2], c.dim, c.g_in, c.g_out);
    CHECK(rel_error(yg, yc) <= 1e-5);
    const Tensor up = randn(yc.sizes(), DType::f32, &g);
    const auto gc = grad(yc, cpu, up), gg = grad(yg, dev, gpu(up));
    for (size_t i = 0; i < 3; ++i) {
      INFO("gradient " << i);
      CHECK(rel_error(gg[i], gc[i]) <= 1e-4);
    }
  }
}

// ---- block attention -----------------------------------------------------------------------

namespace {

struct AttentionCase {
  int64_t B, S, H, hd, block, stride;
  bool mask;
  double p;
};

// q, k, v: views of one fused [B, S, 3, H, hd] GPU tensor (non-contiguous).
std::vector<Tensor> fused_qkv_gpu(Generator& g, int64_t B, int64_t S, int64_t H, int64_t hd) {
  const Tensor qkv = gpu(randn({B, S, 3, H, hd}, DType::f32, &g));
  std::vector<Tensor> out;
  const Shape st = qkv.strides();
  for (int64_t i = 0; i < 3; ++i)
    out.push_back(qkv.as_strided({B, S, H, hd}, {st[0], st[1], st[3], st[4]}, qkv.offset() + i * st[2]));
  return out;
}

// keep [B, S]: about a third masked, every group keeping at least one key.
// (A fully masked group is ill-conditioned in f32: its scores s - 1e6 sit on
// a grid of 1/16, the float spacing at 1e6, so two summation orders may
// round a score to neighbouring grid points; it gets its own looser test.)
// fully_masked: every key of group 0 of batch 0 masked as well.
Tensor key_keep(Generator& g, const AttentionCase& c, bool fully_masked = false) {
  std::vector<float> keep(c.B * c.S);
  for (auto& v : keep) v = g.uniform() < 0.35 ? 0.0f : 1.0f;
  const int64_t G = c.S / c.block;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t grp = 0; grp < G; ++grp) {
      const int64_t first = (grp / c.stride) * c.block * c.stride + grp % c.stride;
      keep[b * c.S + first + (grp % c.block) * c.stride] = 1.0f;
    }
  if (fully_masked)
    for (int64_t j = 0; j < c.block; ++j) keep[j * c.stride] = 0.0f;  // group 0 of batch 0: first(0) = 0
  return gpu(from_vector<float>(keep, {c.B, c.S}));
}

// tol: the bound on the outputs' normalised error (the gradients get 5x).
void compare_attention(const AttentionCase& c, const char* fused_fwd, const char* fused_bwd, uint64_t seed,
                       bool fully_masked = false, double tol = 2e-5) {
  INFO("B " << c.B << " S " << c.S << " H " << c.H << " hd " << c.hd << " block " << c.block << " stride "
            << c.stride << " mask " << c.mask << " p " << c.p << " (" << fused_fwd << ")"
            << (fully_masked ? ", a fully masked group" : ""));
  Generator g(seed);
  const auto qkv = fused_qkv_gpu(g, c.B, c.S, c.H, c.hd);
  const Tensor keep = c.mask ? key_keep(g, c, fully_masked) : Tensor();
  const uint64_t dseed = 1234, doff = 77;
  const Shape shape{c.B, c.S, c.H, c.hd};
  const Tensor out_f = empty(shape, DType::f32, Device::cuda()), out_s = empty(shape, DType::f32, Device::cuda());
  const bool flash = std::string(fused_fwd) == "flash_attention_forward";
  const Tensor lse = empty({c.B * c.H * c.S}, DType::f32, Device::cuda());
  if (flash)
    cuda_kernel<FlashForward>(fused_fwd)(out_f, lse, qkv[0], qkv[1], qkv[2], keep, c.block, c.stride, c.p, dseed,
                                         doff);
  else
    cuda_kernel<AttentionForward>(fused_fwd)(out_f, qkv[0], qkv[1], qkv[2], keep, c.block, c.stride, c.p, dseed,
                                             doff);
  cuda_kernel<AttentionForward>("block_attention_forward_simple")(out_s, qkv[0], qkv[1], qkv[2], keep, c.block,
                                                                  c.stride, c.p, dseed, doff);
  CHECK(rel_error(out_f, out_s) <= tol);

  const Tensor dout = gpu(randn(shape, DType::f32, &g));
  std::vector<Tensor> df, ds;
  for (int i = 0; i < 6; ++i) (i < 3 ? df : ds).push_back(empty(shape, DType::f32, Device::cuda()));
  if (flash)
    cuda_kernel<FlashBackward>(fused_bwd)(df[0], df[1], df[2], dout, qkv[0], qkv[1], qkv[2], out_f, lse, keep,
                                          c.block, c.stride, c.p, dseed, doff);
  else
    cuda_kernel<AttentionBackward>(fused_bwd)(df[0], df[1], df[2], dout, qkv[0], qkv[1], qkv[2], keep, c.block,
                                              c.stride, c.p, dseed, doff);
  cuda_kernel<AttentionBackward>("block_attention_backward_simple")(ds[0], ds[1], ds[2], dout, qkv[0], qkv[1], qkv[2],
                                                                    keep, c.block, c.stride, c.p, dseed, doff);
  for (int i = 0; i < 3; ++i) {
    INFO("gradient of " << "qkv"[i]);
    CHECK(rel_error(df[i], ds[i]) <= 5 * tol);
  }
}

}  // namespace

TEST_CASE("cuda fused: group-fused block attention matches the simple kernels", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  uint64_t seed = 500;
  for (int64_t hd : {3, 8, 16, 33}) {
    for (const auto& [block, stride] : std::vector<std::pair<int64_t, int64_t>>{{3, 1}, {3, 2}, {8, 1}, {8, 8}, {11, 1},
                                                                                {32, 4}, {64, 1}}) {
      const int64_t S = block * stride * 2;
      compare_attention({2, S, 3, hd, block, stride, false, 0.0}, "block_attention_forward", "block_attention_backward",
                        seed++);
      compare_attention({2, S, 2, hd, block, stride, true, 0.2}, "block_attention_forward", "block_attention_backward",
                        seed++);
    }
  }
  // Dense small sequences (block = S) and a block big enough for one task per thread block.
  compare_attention({3, 64, 8, 16, 64, 1, true, 0.0}, "block_attention_forward", "block_attention_backward", seed++);
  compare_attention({1, 256, 2, 64, 256, 1, true, 0.1}, "block_attention_forward", "block_attention_backward", seed++);
  // Groups bigger than the group kernels take (block > 256): the flash kernels behind the same name.
  compare_attention({1, 600, 2, 16, 300, 2, true, 0.1}, "block_attention_forward", "block_attention_backward", seed++);
  // Head dims past 64: the simple kernels behind the same name.
  compare_attention({1, 16, 2, 65, 8, 2, true, 0.1}, "block_attention_forward", "block_attention_backward", seed++);
  // A fully masked group (padding): finite, and equal up to the f32 grid of s - 1e6 (see key_keep).
  compare_attention({2, 64, 2, 16, 8, 4, true, 0.1}, "block_attention_forward", "block_attention_backward", seed++,
                    true, 0.2);
}

TEST_CASE("cuda fused: flash attention matches the simple kernels", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  uint64_t seed = 900;
  for (int64_t hd : {5, 16, 32, 64}) {
    for (int64_t S : {130, 257}) {
      compare_attention({2, S, 2, hd, S, 1, false, 0.0}, "flash_attention_forward", "flash_attention_backward", seed++);
      compare_attention({1, S, 3, hd, S, 1, true, 0.15}, "flash_attention_forward", "flash_attention_backward",
                        seed++);
    }
  }
  compare_attention({1, 1024, 2, 32, 1024, 1, true, 0.1}, "flash_attention_forward", "flash_attention_backward",
                    seed++);
  // Strided groups through the flash kernels, and hd > 64 through their fallback.
  compare_attention({2, 40, 2, 16, 10, 2, true, 0.0}, "flash_attention_forward", "flash_attention_backward", seed++);
  compare_attention({1, 160, 1, 80, 160, 1, true, 0.1}, "flash_attention_forward", "flash_attention_backward",
                    seed++);
  compare_attention({2, 40, 2, 16, 10, 2, true, 0.1}, "flash_attention_forward", "flash_attention_backward", seed++,
                    true, 0.2);
}

TEST_CASE("cuda fused: flash attention saves the exact per-row logsumexp", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Generator g(31);
  const int64_t B = 1, S = 150, H = 2, hd = 5;
  const Tensor q = randn({B, S, H, hd}, DType::f32, &g), k = randn({B, S, H, hd}, DType::f32, &g);
  const Tensor v = randn({B, S, H, hd}, DType::f32, &g);
  const Tensor out = empty({B, S, H, hd}, DType::f32, Device::cuda()), lse = empty({B * H * S}, DType::f32, Device::cuda());
  cuda_kernel<FlashForward>("flash_attention_forward")(out, lse, gpu(q), gpu(k), gpu(v), Tensor(), S, 1, 0.0, 0, 0);
  const auto Q = q.to_vector<double>(), K = k.to_vector<double>(), L = host(lse).to_vector<double>();
  double worst = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < S; ++i) {
      double m = -1e300, sum = 0;
      std::vector<double> s(S);
      for (int64_t j = 0; j < S; ++j) {
        double d = 0;
        for (int64_t e = 0; e < hd; ++e) d += Q[(i * H + h) * hd + e] * K[(j * H + h) * hd + e];
        s[j] = d / std::sqrt(double(hd));
        m = std::max(m, s[j]);
      }
      for (double x : s) sum += std::exp(x - m);
      worst = std::max(worst, std::abs(L[h * S + i] - (m + std::log(sum))));  // row (t = h, i)
    }
  CHECK(worst < 1e-4);
}

TEST_CASE("cuda fused: dense block_attention on the GPU (flash path) matches the CPU op", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Generator g(41);
  const int64_t B = 2, S = 160, H = 2, hd = 8;  // block == S > 128: the op's flash dispatch
  std::vector<Tensor> cpu, dev;
  for (int i = 0; i < 3; ++i) {
    cpu.push_back(randn({B, S, H, hd}, DType::f32, &g).set_requires_grad(true));
    dev.push_back(gpu(cpu.back()).set_requires_grad(true));
  }
  std::vector<int64_t> mask(B * S, 1);
  for (int64_t j = 100; j < S; ++j) mask[S + j] = 0;  // batch 1 padded from token 100
  const Tensor mc = from_vector<int64_t>(mask, {B, S});
  Generator gc(3), gg(3);
  const Tensor oc = block_attention(cpu[0], cpu[1], cpu[2], S, 1, mc, 0.1, &gc);
  const Tensor og = block_attention(dev[0], dev[1], dev[2], S, 1, gpu(mc), 0.1, &gg);
  CHECK(rel_error(og, oc) <= 1e-5);
  const Tensor up = randn(oc.sizes(), DType::f32, &g);
  const auto dc = grad(oc, cpu, up), dg = grad(og, dev, gpu(up));
  for (size_t i = 0; i < 3; ++i) {
    INFO("gradient " << i);
    CHECK(rel_error(dg[i], dc[i]) <= 1e-4);
  }
}

// ---- multi-tensor AdamW -----------------------------------------------------------------------

TEST_CASE("cuda fused: multi-tensor Adam/AdamW is bit-identical to the per-tensor kernel", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Generator g(61);
  // Sizes around the chunking: single elements, odd tails, several chunks.
  const std::vector<int64_t> sizes{1, 3, 1000, 4097, 70001, 5, 130000};
  std::vector<Tensor> p1, g1, m1, v1, p2, m2, v2;
  std::vector<AdamStepArgs> args;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Tensor p = randn({sizes[i]}, DType::f32, &g), m = randn({sizes[i]}, DType::f32, &g);
    const Tensor v = rand({sizes[i]}, DType::f32, &g, 0.0, 2.0);
    g1.push_back(gpu(randn({sizes[i]}, DType::f32, &g)));
    p1.push_back(gpu(p));
    m1.push_back(gpu(m));
    v1.push_back(gpu(v));
    p2.push_back(gpu(p));
    m2.push_back(gpu(m));
    v2.push_back(gpu(v));
    // Different step counts, decay on some, Adam and AdamW, beta1 either side of 0.5 (the two lerp forms).
    const int64_t t = 1 + static_cast<int64_t>(i);
    const double beta1 = i % 3 == 2 ? 0.3 : 0.9, beta2 = 0.999, lr = 1e-3 * (1 + i);
    args.push_back(AdamStepArgs{lr, i % 2 ? 0.01 : 0.0, beta1, beta2, 1e-8, lr / (1 - std::pow(beta1, double(t))),
                                std::sqrt(1 - std::pow(beta2, double(t))), i % 4 != 1});
  }
  cuda_kernel<MultiTensorAdam>("multi_tensor_adam")(p1, g1, m1, v1, args);
  for (size_t i = 0; i < sizes.size(); ++i)
    cuda_kernel<AdamStep>(args[i].decoupled ? "adamw_step" : "adam_step")(p2[i], g1[i], m2[i], v2[i], args[i]);
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor " << i << " of " << sizes[i] << " elements");
    CHECK(bit_equal<float>(p1[i], p2[i]));
    CHECK(bit_equal<float>(m1[i], m2[i]));
    CHECK(bit_equal<float>(v1[i], v2[i]));
    CHECK_FALSE(bit_equal<float>(p1[i], gpu(randn({sizes[i]}, DType::f32, &g))));  // it did update
  }
  // Mismatched lists are an error, not a fault.
  CHECK_THROWS_WITH(cuda_kernel<MultiTensorAdam>("multi_tensor_adam")(p1, g1, m1, v1, {args[0]}),
                    Catch::Contains("one gradient, exp_avg, exp_avg_sq and args per parameter"));
}

TEST_CASE("cuda fused: AdamW over a CUDA group (one launch) follows the CPU, skipping params without grad",
          "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Generator g(62);
  const std::vector<Shape> shapes{{64, 33}, {33}, {7, 3, 5}, {1}};
  std::vector<Tensor> init, grads;
  for (const Shape& s : shapes) {
    init.push_back(randn(s, DType::f32, &g));
    grads.push_back(randn(s, DType::f32, &g));
  }
  auto run = [&](Device dev) {
    std::vector<std::pair<std::string, Tensor>> named;
    for (size_t i = 0; i < init.size(); ++i) {
      Tensor p = to_device_raw(init[i], dev);
      p.set_requires_grad(true);
      named.emplace_back("p" + std::to_string(i), p);
    }
    AdamW opt(param_groups_no_decay_1d(named, 0.05), AdamWOptions{});
    for (int step = 0; step < 4; ++step) {
      for (size_t i = 0; i < named.size(); ++i) {
        if (i == 2 && step < 2) named[i].second.zero_grad();  // no gradient: skipped, its step count stays
        else named[i].second.set_grad(to_device_raw(grads[i], dev));
      }
      opt.step();
    }
    std::vector<Tensor> out;
    for (auto& [name, p] : named) out.push_back(host(p));
    return out;
  };
  const auto a = run(Device::cuda()), b = run(Device::cpu());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("parameter " << i);
    CHECK(rel_error(a[i], b[i]) < 1e-6);
  }
}

// ---- TF32 ------------------------------------------------------------------------------------------

namespace {

// f32 -> TF32 (10-bit mantissa), rounding to nearest even or truncating.
float to_tf32(float x, bool round) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (round) u += 0xFFFu + ((u >> 13) & 1u);
  u &= ~0x1FFFu;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

struct Tf32Guard {
  bool before = cuda::allow_tf32();
  ~Tf32Guard() { cuda::set_allow_tf32(before); }
};

}  // namespace

// The rule for reduced-precision paths: the GPU's error against an exact
// (f64) product is no more than twice the error of the same computation done
// in that precision by a reference: inputs rounded to TF32 (to nearest, or
// truncated, whichever is worse), products and sums in f32 in order.
TEST_CASE("cuda fused: TF32 matmul is within twice a TF32 reference's error", "[cuda][fused]") {
  if (skip_without_gpu()) return;
  Tf32Guard guard;
  Generator g(71);
  const int64_t M = 96, K = 512, N = 80;
  const Tensor a = randn({M, K}, DType::f32, &g), b = randn({K, N}, DType::f32, &g);
  const auto A = a.to_vector<float>(), Bv = b.to_vector<float>();
  std::vector<double> exact(M * N);
  double scale = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(A[i * K + k]) * double(Bv[k * N + j]);
      exact[i * N + j] = s;
      scale = std::max(scale, std::abs(s));
    }
  auto error_of = [&](const std::vector<float>& c) {
    double e = 0;
    for (size_t i = 0; i < c.size(); ++i) e = std::max(e, std::abs(double(c[i]) - exact[i]));
    return e / scale;
  };
  double reference_error = 0;
  for (bool round : {true, false}) {
    std::vector<float> c(M * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float s = 0;
        for (int64_t k = 0; k < K; ++k) s += to_tf32(A[i * K + k], round) * to_tf32(Bv[k * N + j], round);
        c[i * N + j] = s;
      }
    reference_error = std::max(reference_error, error_of(c));
  }
  REQUIRE(reference_error > 1e-5);  // TF32 really is coarser than f32 here
  cuda::set_allow_tf32(true);
  const double tf32_error = error_of(host(matmul(gpu(a), gpu(b))).to_vector<float>());
  cuda::set_allow_tf32(false);
  const double f32_error = error_of(host(matmul(gpu(a), gpu(b))).to_vector<float>());
  INFO("TF32 reference error " << reference_error << ", GPU TF32 " << tf32_error << ", GPU f32 " << f32_error);
  CHECK(tf32_error <= 2 * reference_error);
  CHECK(f32_error <= reference_error / 10);  // off means off
}
