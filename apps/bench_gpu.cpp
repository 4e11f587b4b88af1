// bench_gpu: GPU figures of dimix's CUDA backend, each next to a floor and a
// peer measured in the same run (DESIGN.md 10: figures are ratios).
//
//   calibration     device-to-device copy (GB/s) and a 4096^3 cuBLAS sgemm
//                   (GFLOP/s): the floors below are bytes / copy rate and
//                   FLOPs / sgemm rate, whichever is longer
//   block_linear    tiled kernels vs the part-1 simple kernels at the paper's
//                   shapes (Table II token/channel levels, n = 1024 with b = 32)
//   block attention group-fused vs simple, the Table III ViT shapes (B 32)
//   flash attention flash vs simple, dense, S = 1024, 4096, 16384 (H 8, hd 64)
//   AdamW           one multi-tensor launch vs a launch per tensor, 1M / 10M params
//   networks        training step (forward, cross-entropy, backward, Adam) of
//                   the Table III ViTs and Table II mixers at batch 32 and 128:
//                   median ms and the allocator's peak MiB, with the paper's
//                   patch-1 ViT figures (RTX 3090, PyTorch 1.13) beside ours
//
// Kernel times come from CUDA events around the kernels on the device's
// stream (cuda::time_stream_ms), averaged over repetitions after a warm-up;
// network steps are wall-clock medians with a device synchronisation after
// each step. --json writes every figure for scripts/gpu_check.sh, which sets
// them beside PyTorch's (scripts/bench_torch_gpu.py).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/app_common.h"
#include "autograd/node.h"
#include "core/kernel_table.h"
#include "core/rng.h"
#include "cuda/runtime.h"
#include "models/init.h"
#include "models/networks.h"
#include "models/optim.h"
#include "ops/block_linear.h"
#include "ops/linalg.h"
#include "ops/loss.h"

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

int g_reps = 20;
double g_copy_gbs = 0, g_sgemm_gflops = 0;
std::ostringstream g_json_kernels;
bool g_first_kernel = true;

Tensor gpu_randn(const Shape& s, Generator& g) { return to_device_raw(randn(s, DType::f32, &g), Device::cuda()); }

// Average ms of fn over repetitions (after one warm-up call): as many as fit
// in ~0.2 s, at least 2, at most g_reps.
double kernel_ms(const std::function<void()>& fn) {
  fn();
  const double once = cuda::time_stream_ms(fn);
  const int reps = static_cast<int>(std::clamp(200.0 / std::max(once, 1e-3), 2.0, static_cast<double>(g_reps)));
  return cuda::time_stream_ms([&] {
           for (int i = 0; i < reps; ++i) fn();
         }) /
         reps;
}

double floor_ms(double bytes, double flops) {
  return std::max(bytes / (g_copy_gbs * 1e6), flops / (g_sgemm_gflops * 1e6));
}

void rule() { std::printf("%s\n", std::string(118, '-').c_str()); }

void header(const char* title) {
  std::printf("\n%s\n", title);
  rule();
  std::printf("%-46s %-8s %9s %9s %9s %9s %8s %9s\n", "case", "kernel", "ms", "GB/s", "GFLOP/s", "floor ms", "x floor",
              "vs simple");
  rule();
}

// One row: `ms` of the fused kernel, `simple_ms` of its oracle (0: none).
void row(const std::string& section, const std::string& name, const char* kernel, double ms, double simple_ms,
         double bytes, double flops) {
  const double fl = floor_ms(bytes, flops);
  char vs[32] = "";
  if (simple_ms > 0) std::snprintf(vs, sizeof vs, "%.2fx", simple_ms / ms);
  std::printf("%-46s %-8s %9.4f %9.1f %9.1f %9.4f %8.2f %9s\n", name.c_str(), kernel, ms, bytes / ms / 1e6,
              flops / ms / 1e6, fl, ms / fl, vs);
  g_json_kernels << (g_first_kernel ? "" : ",") << "\n  {\"section\": \"" << section << "\", \"case\": \"" << name
                 << "\", \"kernel\": \"" << kernel << "\", \"ms\": " << ms << ", \"simple_ms\": " << simple_ms
                 << ", \"floor_ms\": " << fl << ", \"bytes\": " << bytes << ", \"flops\": " << flops << "}";
  g_first_kernel = false;
}

// ---- calibration ---------------------------------------------------------------------------
void calibrate() {
  Generator g(1);
  const int64_t n = int64_t(64) << 20;  // 256 MiB of f32
  const Tensor a = gpu_randn({n}, g), b = empty({n}, DType::f32, Device::cuda());
  const double copy_ms = kernel_ms([&] { copy_(b, a); });
  g_copy_gbs = 2.0 * n * 4 / copy_ms / 1e6;
  const int64_t m = 4096;
  const Tensor x = gpu_randn({m, m}, g), y = gpu_randn({m, m}, g);
  const bool tf32 = cuda::allow_tf32();
  cuda::set_allow_tf32(false);
  const double mm_ms = kernel_ms([&] { matmul(x, y); });
  cuda::set_allow_tf32(tf32);
  g_sgemm_gflops = 2.0 * m * m * m / mm_ms / 1e6;
  std::printf("calibration: device copy %.0f GB/s (256 MiB, read + write), cuBLAS sgemm %.0f GFLOP/s (4096^3, f32)\n",
              g_copy_gbs, g_sgemm_gflops);
}

// ---- block_linear ---------------------------------------------------------------------------
void bench_block_linear() {
  header("block_linear (f32): tiled kernels vs the part-1 simple kernels; bytes = x + y + W, FLOPs = 2 R n_out b_in");
  struct Case {
    const char* name;
    int64_t outer, inner, G, b_in, b_out, g;
  };
  // Table II at batch 128: tokens [128, 64, 121] mixed along 64 (b 8), channels [8192, 121] (b 11).
  const std::vector<Case> cases = {
      {"T2 token  x[128,64,121] b8 g1", 128, 121, 8, 8, 8, 1},
      {"T2 token  x[128,64,121] b8 g8", 128, 121, 8, 8, 8, 8},
      {"T2 token  x[128,64,121] b8->16 g8", 128, 121, 8, 8, 16, 8},
      {"T2 chan   x[8192,121] b11 g1", 8192, 1, 11, 11, 11, 1},
      {"T2 chan   x[8192,121] b11 g11", 8192, 1, 11, 11, 11, 11},
      {"T2 chan   x[8192,121] b11->22 g11", 8192, 1, 11, 11, 22, 11},
      {"n1024     x[16384,1024] b32 g1", 16384, 1, 32, 32, 32, 1},
      {"n1024     x[16384,1024] b32 g32", 16384, 1, 32, 32, 32, 32},
      {"n1024     x[16384,1024] b32->64 g32", 16384, 1, 32, 32, 64, 32},
  };
  for (const Case& c : cases) {
    Generator g(4);
    const int64_t n_in = c.G * c.b_in, n_out = c.G * c.b_out, R = c.outer * c.inner;
    const Tensor x = gpu_randn({c.outer, n_in, c.inner}, g), w = gpu_randn({c.G, c.b_out, c.b_in}, g);
    const Tensor b = gpu_randn({c.G, c.b_out}, g), dy = gpu_randn({c.outer, n_out, c.inner}, g);
    const Tensor y = empty({c.outer, n_out, c.inner}, DType::f32, Device::cuda());
    const Tensor dw = empty({c.G, c.b_out, c.b_in}, DType::f32, Device::cuda());
    const double flops = 2.0 * R * n_out * c.b_in;
    const double bytes_f = 4.0 * (R * n_in + R * n_out + w.numel() + b.numel());
    const double bytes_w = 4.0 * (R * n_in + R * n_out + w.numel());
    auto fwd = [&](BlockLinearForward* k) { return kernel_ms([&] { k(y, x, w, b, c.g, c.g); }); };
    auto wgt = [&](BlockLinearWeight* k) { return kernel_ms([&] { k(dw, dy, x, c.g, c.g); }); };
    const double f = fwd(cuda_kernel<BlockLinearForward>("block_linear_forward"));
    const double fs = fwd(cuda_kernel<BlockLinearForward>("block_linear_forward_simple"));
    const double wg = wgt(cuda_kernel<BlockLinearWeight>("block_linear_backward_weight"));
    const double ws = wgt(cuda_kernel<BlockLinearWeight>("block_linear_backward_weight_simple"));
    row("block_linear", c.name, "fwd", f, fs, bytes_f, flops);
    row("block_linear", c.name, "dW", wg, ws, bytes_w, flops);
  }
}

// ---- block attention --------------------------------------------------------------------------
struct AttentionInputs {
  Tensor q, k, v, out, dout, dq, dk, dv, lse;
};
AttentionInputs attention_inputs(int64_t B, int64_t S, int64_t H, int64_t hd) {
  Generator g(5);
  AttentionInputs a;
  // q, k, v as views of one fused projection [B, S, 3, H, hd], as the models use them.
  const Tensor qkv = gpu_randn({B, S, 3, H, hd}, g);
  const Shape st = qkv.strides();
  Tensor* dst[3] = {&a.q, &a.k, &a.v};
  for (int i = 0; i < 3; ++i)
    *dst[i] = qkv.as_strided({B, S, H, hd}, {st[0], st[1], st[3], st[4]}, qkv.offset() + i * st[2]);
  a.out = empty({B, S, H, hd}, DType::f32, Device::cuda());
  a.dout = gpu_randn({B, S, H, hd}, g);
  a.dq = empty({B, S, H, hd}, DType::f32, Device::cuda());
  a.dk = empty({B, S, H, hd}, DType::f32, Device::cuda());
  a.dv = empty({B, S, H, hd}, DType::f32, Device::cuda());
  a.lse = empty({B * H * S}, DType::f32, Device::cuda());
  return a;
}

void bench_block_attention() {
  header("block attention (f32), Table III ViT shapes at batch 32: group-fused vs simple kernels\n"
         "(fwd: bytes = q, k, v, out; FLOPs = 4 B H S block hd. bwd: 7 tensors, 2.5x the FLOPs)");
  struct Case {
    const char* name;
    int64_t B, S, H, hd, block, stride;
  };
  const std::vector<Case> cases = {
      {"p4 S64 hd16 block 8 stride 1", 32, 64, 8, 16, 8, 1},   {"p4 S64 hd16 block 8 stride 8", 32, 64, 8, 16, 8, 8},
      {"p4 S64 hd16 dense (block 64)", 32, 64, 8, 16, 64, 1},  {"p2 S256 hd8 block 16 stride 16", 32, 256, 8, 8, 16, 16},
      {"p1 S1024 hd8 block 32 stride 1", 32, 1024, 8, 8, 32, 1}, {"p1 S1024 hd8 block 32 stride 32", 32, 1024, 8, 8, 32, 32},
  };
  for (const Case& c : cases) {
    const AttentionInputs a = attention_inputs(c.B, c.S, c.H, c.hd);
    const double elems = static_cast<double>(c.B) * c.S * c.H * c.hd;
    const double flops = 4.0 * c.B * c.H * c.S * c.block * c.hd;
    auto fwd = [&](AttentionForward* k) {
      return kernel_ms([&] { k(a.out, a.q, a.k, a.v, Tensor(), c.block, c.stride, 0.0, 0, 0); });
    };
    auto bwd = [&](AttentionBackward* k) {
      return kernel_ms([&] { k(a.dq, a.dk, a.dv, a.dout, a.q, a.k, a.v, Tensor(), c.block, c.stride, 0.0, 0, 0); });
    };
    const double f = fwd(cuda_kernel<AttentionForward>("block_attention_forward"));
    const double fs = fwd(cuda_kernel<AttentionForward>("block_attention_forward_simple"));
    const double b = bwd(cuda_kernel<AttentionBackward>("block_attention_backward"));
    const double bs = bwd(cuda_kernel<AttentionBackward>("block_attention_backward_simple"));
    row("block_attention", c.name, "fwd", f, fs, 4 * 4 * elems, flops);
    row("block_attention", c.name, "bwd", b, bs, 7 * 4 * elems, 2.5 * flops);
  }
}

void bench_flash(bool quick) {
  header("flash attention (f32), dense (block = S), B = 16384 / S, H 8, hd 64: flash vs simple kernels\n"
         "(fwd: bytes = q, k, v, out; FLOPs = 4 B H S^2 hd. bwd: 9 tensors incl. out, lse; 2.5x the FLOPs)");
  for (int64_t S : {1024, 4096, 16384}) {
    if (quick && S > 4096) continue;
    const int64_t B = std::max<int64_t>(1, 16384 / S), H = 8, hd = 64;
    const AttentionInputs a = attention_inputs(B, S, H, hd);
    const double elems = static_cast<double>(B) * S * H * hd;
    const double flops = 4.0 * B * H * S * S * hd;
    const double f = kernel_ms([&] {
      cuda_kernel<FlashForward>("flash_attention_forward")(a.out, a.lse, a.q, a.k, a.v, Tensor(), S, 1, 0.0, 0, 0);
    });
    const double b = kernel_ms([&] {
      cuda_kernel<FlashBackward>("flash_attention_backward")(a.dq, a.dk, a.dv, a.dout, a.q, a.k, a.v, a.out, a.lse,
                                                             Tensor(), S, 1, 0.0, 0, 0);
    });
    const double fs = kernel_ms([&] {
      cuda_kernel<AttentionForward>("block_attention_forward_simple")(a.out, a.q, a.k, a.v, Tensor(), S, 1, 0.0, 0, 0);
    });
    const double bs = kernel_ms([&] {
      cuda_kernel<AttentionBackward>("block_attention_backward_simple")(a.dq, a.dk, a.dv, a.dout, a.q, a.k, a.v,
                                                                        Tensor(), S, 1, 0.0, 0, 0);
    });
    char name[64];
    std::snprintf(name, sizeof name, "S%ld B%ld H8 hd64", static_cast<long>(S), static_cast<long>(B));
    row("flash", name, "fwd", f, fs, 4 * 4 * elems, flops);
    row("flash", name, "bwd", b, bs, 9 * 4 * elems, 2.5 * flops);
  }
}

// ---- AdamW --------------------------------------------------------------------------------------
void bench_adamw() {
  header("AdamW (f32): one multi-tensor launch vs one launch per tensor (bytes = 28 per parameter)");
  for (int64_t total : {int64_t(1) << 20, int64_t(10) << 20}) {
    // A transformer-like mix of tensor sizes: matrices, vectors and scalars.
    const std::vector<int64_t> pattern{65536, 16384, 256, 4096, 128, 1};
    std::vector<Tensor> p, gr, m, v;
    std::vector<AdamStepArgs> args;
    Generator g(6);
    for (int64_t done = 0, i = 0; done < total; ++i) {
      const int64_t n = std::min(pattern[i % pattern.size()], total - done);
      p.push_back(gpu_randn({n}, g));
      gr.push_back(gpu_randn({n}, g));
      m.push_back(zeros({n}, DType::f32, Device::cuda()));
      v.push_back(zeros({n}, DType::f32, Device::cuda()));
      args.push_back(AdamStepArgs{1e-3, 0.01, 0.9, 0.999, 1e-8, 1e-3 / (1 - 0.9), std::sqrt(1 - 0.999), true});
      done += n;
    }
    const double fused = kernel_ms([&] { cuda_kernel<MultiTensorAdam>("multi_tensor_adam")(p, gr, m, v, args); });
    const double loop = kernel_ms([&] {
      for (size_t i = 0; i < p.size(); ++i) cuda_kernel<AdamStep>("adamw_step")(p[i], gr[i], m[i], v[i], args[i]);
    });
    const std::string name = std::to_string(total >> 20) + "M params in " + std::to_string(p.size()) + " tensors";
    row("adamw", name, "multi", fused, loop, 28.0 * total, 12.0 * total);
  }
  std::printf("('vs simple' here: the per-tensor loop's time over the single launch's)\n");
}

// ---- networks ---------------------------------------------------------------------------------
struct NetRow {
  std::string name;
  int64_t batch;
  double train_ms, peak_mib;
  int64_t params;
};

std::vector<NetRow> bench_networks(const std::vector<std::string>& names, const std::vector<int64_t>& batches,
                                   int warmup) {
  std::printf("\nnetworks: training step (forward, cross-entropy, backward, Adam), f32%s, median of %d steps\n",
              cuda::allow_tf32() ? " with TF32 GEMMs" : "", std::max(g_reps / 2, 5));
  rule();
  std::printf("%-26s %6s %10s %9s %10s %10s\n", "network", "batch", "train ms", "img/s", "peak MiB", "params");
  rule();
  std::vector<NetRow> rows;
  for (const auto& name : names) {
    for (int64_t B : batches) {
      init::seed(0);
      const NetworkInput in{3, 32, 10};
      auto net = make_network(name, in);
      net->to(Device::cuda());
      Generator g(1);
      const Tensor x = gpu_randn({B, in.channels, in.image, in.image}, g);
      const Tensor y = to_device_raw(randint(0, 10, {B}, DType::i64, &g), Device::cuda());
      AdamOptions ao;
      ao.lr = 1e-4;
      Adam opt(net->parameters(), ao);
      auto step = [&] {
        opt.zero_grad();
        backward(cross_entropy(net->forward(x), y));
        opt.step();
      };
      for (int i = 0; i < warmup; ++i) step();
      cuda::synchronize();
      cuda::reset_peak_memory();
      std::vector<double> t;
      for (int i = 0; i < std::max(g_reps / 2, 5); ++i) {
        const auto a = std::chrono::steady_clock::now();
        step();
        cuda::synchronize();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
      }
      std::sort(t.begin(), t.end());
      const NetRow r{name, B, t[t.size() / 2], cuda::memory_stats().peak_bytes / 1048576.0, net->num_parameters()};
      std::printf("%-26s %6ld %10.2f %9.0f %10.0f %10ld\n", name.c_str(), static_cast<long>(B), r.train_ms,
                  B / r.train_ms * 1e3, r.peak_mib, static_cast<long>(r.params));
      std::fflush(stdout);
      rows.push_back(r);
    }
  }
  return rows;
}

void paper_table(const std::vector<NetRow>& rows) {
  auto find = [&](const std::string& n) -> const NetRow* {
    for (const NetRow& r : rows)
      if (r.name == n && r.batch == 32) return &r;
    return nullptr;
  };
  const NetRow* dense = find("vit-p1-l4-dense");
  const NetRow* bfly = find("vit-p1-l4-butterfly");
  if (!dense || !bfly) return;
  std::printf("\nTable III, patch-1 ViT (1024 tokens), batch 32: training step and peak memory\n");
  rule();
  std::printf("%-40s %12s %12s %14s %14s\n", "", "dense ms", "butterfly ms", "dense MiB", "butterfly MiB");
  std::printf("%-40s %12.2f %12.2f %14.0f %14.0f\n", "paper (RTX 3090, PyTorch 1.13)", 125.54, 25.50, 8629.0, 1181.0);
  std::printf("%-40s %12.2f %12.2f %14.0f %14.0f\n", ("dimix (" + cuda::device_name() + ")").c_str(), dense->train_ms,
              bfly->train_ms, dense->peak_mib, bfly->peak_mib);
  std::printf("%-40s %12.2f %12.2f %14.2f %14.2f\n", "dense / butterfly: paper, dimix", 125.54 / 25.50,
              dense->train_ms / bfly->train_ms, 8629.0 / 1181.0, dense->peak_mib / bfly->peak_mib);
  std::printf("(dimix MiB: the caching allocator's peak of live tensors, excluding the CUDA context and cuBLAS "
              "workspace)\n");
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

const char* kDefaultNetworks =
    "vit-p4-l4-dense,vit-p4-l4-butterfly,vit-p4-l8-dense,vit-p4-l8-butterfly,vit-p2-l4-dense,vit-p2-l4-butterfly,"
    "vit-p1-l4-dense,vit-p1-l4-butterfly,t2-dense-h1,t2-butterfly-linear-h1,t2-butterfly-mlp-h1,t2-dense-h2,"
    "t2-butterfly-linear-h2,t2-butterfly-mlp-h2";

}  // namespace

int main(int argc, char** argv) {
  return app::run_main([&] {
    app::Flags f("bench_gpu", "Times dimix's CUDA kernels (against their simple oracles and floors) and the papers' "
                              "networks' training steps on a GPU.");
    f.add("only", "", "comma-separated sections: block_linear, attention, flash, adamw, networks (default: all)");
    f.add("networks", kDefaultNetworks, "comma-separated network names for the networks section");
    f.add("batches", "32,128", "comma-separated batch sizes for the networks section");
    f.add("reps", "20", "timed repetitions per kernel figure (network steps: half, at least 5)");
    f.add("warmup", "3", "untimed training steps per network first");
    f.add("json", "", "also write every figure to this JSON file");
    f.add_bool("tf32", "allow TF32 tensor-core math in cuBLAS GEMMs (networks section)");
    f.add_bool("quick", "skip the S = 16384 flash case");
    if (!f.parse(argc, argv)) return 0;
    DIMIX_CHECK(cuda::available(), "bench_gpu: needs a CUDA GPU (",
                cuda_built() ? "built with CUDA, but no device is visible" : "dimix was built without CUDA", ")");
    g_reps = static_cast<int>(std::max<int64_t>(2, f.integer("reps")));
    std::vector<std::string> only = split(f.str("only"));
    for (const auto& s : only)
      DIMIX_CHECK(s == "block_linear" || s == "attention" || s == "flash" || s == "adamw" || s == "networks",
                  "bench_gpu: --only expects block_linear, attention, flash, adamw or networks, got '", s, "'");
    auto want = [&](const char* s) { return only.empty() || std::find(only.begin(), only.end(), s) != only.end(); };
    std::vector<int64_t> batches;
    for (const auto& b : split(f.str("batches"))) batches.push_back(std::stoll(b));
    std::printf("bench_gpu on %s (%s)\n", cuda::device_name().c_str(),
                std::getenv("DIMIX_CUDA_SIMPLE") ? "DIMIX_CUDA_SIMPLE set: simple kernels everywhere" : "fused kernels");
    calibrate();
    if (want("block_linear")) bench_block_linear();
    if (want("attention")) bench_block_attention();
    if (want("flash")) bench_flash(f.flag("quick"));
    if (want("adamw")) bench_adamw();
    std::vector<NetRow> nets;
    if (want("networks")) {
      cuda::set_allow_tf32(f.flag("tf32"));
      nets = bench_networks(split(f.str("networks")), batches, static_cast<int>(f.integer("warmup")));
      cuda::set_allow_tf32(false);
      paper_table(nets);
    }
    if (!f.str("json").empty()) {
      std::ofstream out(f.str("json"));
      DIMIX_CHECK(out.good(), "bench_gpu: cannot write ", f.str("json"));
      out << "{\"device\": \"" << cuda::device_name() << "\", \"copy_gbs\": " << g_copy_gbs
          << ", \"sgemm_gflops\": " << g_sgemm_gflops << ", \"tf32\": " << (f.flag("tf32") ? "true" : "false")
          << ",\n \"kernels\": [" << g_json_kernels.str() << "\n ],\n \"networks\": [";
      for (size_t i = 0; i < nets.size(); ++i)
        out << (i ? "," : "") << "\n  {\"name\": \"" << nets[i].name << "\", \"batch\": " << nets[i].batch
            << ", \"train_ms\": " << nets[i].train_ms << ", \"peak_mib\": " << nets[i].peak_mib
            << ", \"params\": " << nets[i].params << "}";
      out << "\n ]}\n";
    }
    return 0;
  });
}
