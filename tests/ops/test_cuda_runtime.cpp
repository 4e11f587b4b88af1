// The CUDA backend beyond the registry's small parity cases: the runtime
// (allocator, transfers, the recorded `to`), error reporting for bad indices
// on the GPU, bit-exact determinism of the scatter kernels, the dropout mask
// shared with the CPU, and CPU parity on sizes that take the kernels' other
// paths (long rows, split reductions, vectorised and strided elementwise,
// every transpose of bmm). Every GPU test skips itself, visibly, without a
// device; the first test checks the GPU-less behaviour instead.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>

#include "autograd/node.h"
#include "core/rng.h"
#include "core/kernel_table.h"
#include "cuda/runtime.h"
#include "models/optim.h"
#include "ops/copy.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layer_norm.h"
#include "ops/linalg.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"

using namespace dimix;
using Catch::Contains;

namespace {

bool skip_without_gpu() {
  if (cuda::available()) return false;
  WARN("SKIPPED: no CUDA device (" << (cuda_built() ? "built with CUDA" : "built without CUDA") << ")");
  SUCCEED();
  return true;
}

Tensor gpu(const Tensor& t) { return to_device_raw(t.contiguous_raw(), Device::cuda()); }

// max |a - b| / max(max |b|, 1e-6) over all elements (any devices).
double rel_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double num = 0, scale = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return num / scale;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.to_vector<float>() == b.to_vector<float>();
}

}  // namespace

TEST_CASE("cuda runtime: without a device nothing crashes and GPU tensors are a clear error", "[cuda]") {
  if (cuda::available()) {
    CHECK(cuda::device_count() >= 1);
    CHECK(has_allocator(DeviceKind::CUDA));
    return;
  }
  CHECK(cuda::device_count() == 0);
  CHECK_FALSE(has_allocator(DeviceKind::CUDA));
  const AllocatorStats s = cuda::memory_stats();
  CHECK(s.current_bytes == 0);
  CHECK(s.num_allocs == 0);
  CHECK_NOTHROW(cuda::synchronize());
  CHECK_NOTHROW(cuda::empty_cache());
  CHECK_THROWS_WITH(empty({2, 3}, DType::f32, Device::cuda()), Contains("no GPU is present"));
  const Tensor x = ones({3});
  CHECK_THROWS_WITH(to(x, Device::cuda()), Contains("cuda"));
  CHECK(to(x, Device::cpu()).same(x));  // already there: no copy
}

TEST_CASE("cuda runtime: the caching allocator reuses blocks and keeps statistics", "[cuda]") {
  if (skip_without_gpu()) return;
  cuda::synchronize();
  const AllocatorStats before = cuda::memory_stats();
  {
    Tensor a = empty({1000}, DType::f32, Device::cuda());
    const AllocatorStats during = cuda::memory_stats();
    CHECK(during.current_bytes >= before.current_bytes + 4000);
    CHECK(during.peak_bytes >= during.current_bytes);
  }
  const AllocatorStats freed = cuda::memory_stats();
  CHECK(freed.current_bytes == before.current_bytes);
  CHECK(freed.cached_bytes >= 4000);
  {
    Tensor b = empty({1000}, DType::f32, Device::cuda());  // same bucket: from the cache
    CHECK(cuda::memory_stats().num_cache_hits == freed.num_cache_hits + 1);
  }
  cuda::empty_cache();
  CHECK(cuda::memory_stats().cached_bytes == 0);
  cuda::reset_peak_memory();
  CHECK(cuda::memory_stats().peak_bytes == cuda::memory_stats().current_bytes);
}

TEST_CASE("cuda runtime: host <-> device round trips are exact, staged in chunks", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(5);
  const Tensor big = randn({3 << 20}, DType::f32, &g);  // 12 MiB: more than one staging chunk
  CHECK(bit_equal(to_device_raw(gpu(big), Device::cpu()), big));
  const Tensor ids = randint(-5, 1000, {1001}, DType::i64, &g);
  CHECK(to_device_raw(gpu(ids), Device::cpu()).to_vector<int64_t>() == ids.to_vector<int64_t>());
  const Tensor bytes = randint(0, 256, {77}, DType::u8, &g);
  CHECK(to_device_raw(gpu(bytes), Device::cpu()).to_vector<int>() == bytes.to_vector<int>());
  // zeros / full are made on the device.
  CHECK(zeros({5}, DType::f32, Device::cuda()).to_vector<float>() == std::vector<float>(5, 0.0f));
  CHECK(full({2, 2}, 2.5, DType::f64, Device::cuda()).to_vector<double>() == std::vector<double>(4, 2.5));
}

TEST_CASE("cuda runtime: strided and casting copies on the device", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(6);
  const Tensor x = randn({7, 9, 5}, DType::f32, &g);
  const Tensor xg = gpu(x);
  const Tensor perm = xg.as_strided({5, 7, 9}, {1, 45, 5}, 0);  // permute(2, 0, 1)
  const Tensor ref = x.as_strided({5, 7, 9}, {1, 45, 5}, 0).contiguous_raw();
  CHECK(bit_equal(perm.contiguous_raw(), ref));
  CHECK(cast_raw(xg, DType::i64).to_vector<int64_t>() == cast_raw(x, DType::i64).to_vector<int64_t>());
  CHECK(cast_raw(xg, DType::f64).to_vector<double>() == cast_raw(x, DType::f64).to_vector<double>());
  Tensor dst = zeros({9, 7}, DType::f64, Device::cuda());
  copy_(dst, xg.as_strided({9, 7}, {5, 45}, 2));  // strided source, casting
  CHECK(dst.to_vector<double>() == cast_raw(x.as_strided({9, 7}, {5, 45}, 2), DType::f64).to_vector<double>());
}

TEST_CASE("cuda runtime: to() is recorded and moves the gradient back", "[cuda]") {
  if (skip_without_gpu()) return;
  const Tensor x = from_vector<float>({1, 2, 3}, {3});
  x.set_requires_grad(true);
  const Tensor y = mul(to(x, Device::cuda()), 2.0);
  CHECK(y.device().is_cuda());
  const Tensor loss = to(sum(mul(y, y)), Device::cpu());  // sum 4 x^2
  backward(loss);
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device().is_cpu());
  CHECK(x.grad().to_vector<float>() == std::vector<float>{8, 16, 24});
}

TEST_CASE("cuda kernels: bad indices are errors with the CPU's message", "[cuda]") {
  if (skip_without_gpu()) return;
  const Tensor x = gpu(ones({5, 3}));
  CHECK_THROWS_WITH(index_select(x, 0, gpu(from_vector<int64_t>({1, 7, 9}, {3}))),
                    Contains("index_select: index 7 out of range for a dim of size 5"));
  CHECK_THROWS_WITH(gather(x, 1, gpu(from_vector<int64_t>({0, 0, 0, 0, -1, 0, 0, 0, 3, 0}, {5, 2}))),
                    Contains("gather: index -1 out of range for a dim of size 3"));
  CHECK_THROWS_WITH(embedding(gpu(from_vector<int64_t>({0, 4, 5}, {3})), x),
                    Contains("embedding: id 5 (position 2) is out of range for a vocabulary of V = 5 rows"));
  // The device is still usable afterwards.
  CHECK(index_select(x, 0, gpu(from_vector<int64_t>({4}, {1}))).to_vector<float>() == std::vector<float>(3, 1.0f));
}

TEST_CASE("cuda kernels: scatter-adds are bit-exact with the CPU and run to run", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(7);
  // index_select backward = index_add with many repeats: summed in index order.
  const Tensor x = randn({40, 33}, DType::f32, &g);
  const Tensor idx = randint(0, 40, {500}, DType::i64, &g);
  const Tensor w = randn({500, 33}, DType::f32, &g);
  auto grad_of = [&](const Tensor& xs, const Tensor& is, const Tensor& ws) {
    const Tensor leaf = xs.detach();
    leaf.set_requires_grad(true);
    backward(sum(mul(index_select(leaf, 0, is), ws)));
    return leaf.grad();
  };
  const Tensor gc = grad_of(x, idx, w);
  const Tensor g1 = grad_of(gpu(x), gpu(idx), gpu(w)), g2 = grad_of(gpu(x), gpu(idx), gpu(w));
  CHECK(bit_equal(g1, gc));
  CHECK(bit_equal(g1, g2));
  // embedding backward likewise.
  const Tensor ids = randint(0, 12, {8, 61}, DType::i32, &g);
  const Tensor table = randn({12, 16}, DType::f32, &g);
  const Tensor up = randn({8, 61, 16}, DType::f32, &g);
  auto emb_grad = [&](const Tensor& i, const Tensor& t, const Tensor& u) {
    const Tensor leaf = t.detach();
    leaf.set_requires_grad(true);
    backward(sum(mul(embedding(i, leaf), u)));
    return leaf.grad();
  };
  CHECK(bit_equal(emb_grad(gpu(ids), gpu(table), gpu(up)), emb_grad(ids, table, up)));
}

TEST_CASE("cuda kernels: dropout draws the CPU's mask", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator data(8);
  const Tensor x = randn({33, 129}, DType::f32, &data);
  Generator a(42), b(42);
  a.reserve(17);
  b.reserve(17);
  const Tensor yc = dropout(x, 0.37, true, &a), yg = dropout(gpu(x), 0.37, true, &b);
  CHECK(bit_equal(yg, yc));
  CHECK(a.offset() == b.offset());
}

TEST_CASE("cuda kernels: reductions and max on their long-row and split paths", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(9);
  const Tensor big = randn({1 << 20}, DType::f32, &g);
  // Split into chunks; against a double reference (|sum| ~ 1e3, so a dropped
  // element or chunk shows, float rounding does not).
  double exact = 0;
  for (float v : big.to_vector<float>()) exact += v;
  CHECK(std::abs(sum(gpu(big)).item() - exact) < 0.05);
  const Tensor wide = randn({64, 4096}, DType::f32, &g);
  CHECK(rel_error(sum(gpu(wide), {0}), sum(wide, {0})) < 1e-5);  // a thread per column
  CHECK(rel_error(sum(gpu(wide), {1}), sum(wide, {1})) < 1e-5);  // a block per row
  const Tensor t3 = randn({6, 50, 7}, DType::f32, &g);
  CHECK(rel_error(sum(gpu(t3), {0, 2}), sum(t3, {0, 2})) < 1e-5);
  // Ties go to the first maximum, NaN beats everything (first NaN).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor m = from_vector<float>({1, 3, 3, 0, 2, 5, 5, -1, 1, nan, 4, nan}, {3, 4});
  CHECK(argmax(gpu(m), 1).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1});
  const Tensor col = randn({3000, 5}, DType::f32, &g);
  CHECK(argmax(gpu(col), 0).to_vector<int64_t>() == argmax(col, 0).to_vector<int64_t>());
}

TEST_CASE("cuda kernels: softmax, layer_norm and elementwise on their other paths", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(10);
  const Tensor rows = randn({5, 3001}, DType::f32, &g, 0.0, 4.0);  // a block per row
  CHECK(rel_error(softmax(gpu(rows), -1), softmax(rows, -1)) < 1e-5);
  CHECK(rel_error(log_softmax(gpu(rows), -1), log_softmax(rows, -1)) < 1e-5);
  const Tensor ln = randn({300, 768}, DType::f32, &g);
  const Tensor lw = randn({768}, DType::f32, &g), lb = randn({768}, DType::f32, &g);
  CHECK(rel_error(layer_norm(gpu(ln), gpu(lw), gpu(lb)), layer_norm(ln, lw, lb)) < 1e-4);
  // float4 path with a ragged tail, a misaligned view (scalar path), broadcasting.
  const Tensor a = randn({1001}, DType::f32, &g), b = randn({1001}, DType::f32, &g);
  CHECK(bit_equal(mul(gpu(a), gpu(b)), mul(a, b)));
  const Tensor ag = gpu(a);
  const Tensor shifted = ag.as_strided({1000}, {1}, 1);
  CHECK(bit_equal(add(shifted, shifted), add(a.as_strided({1000}, {1}, 1), a.as_strided({1000}, {1}, 1))));
  const Tensor c = randn({4, 1, 6}, DType::f32, &g), d = randn({5, 1}, DType::f32, &g);
  CHECK(bit_equal(sub(gpu(c), gpu(d)), sub(c, d)));
  const Tensor i1 = randint(-50, 50, {7}, DType::i64, &g), i2 = randint(1, 9, {7}, DType::i64, &g);
  CHECK(div(gpu(i1), gpu(i2)).to_vector<int64_t>() == div(i1, i2).to_vector<int64_t>());
  CHECK(rel_error(gelu(gpu(rows)), gelu(rows)) < 1e-5);
}

TEST_CASE("cuda kernels: bmm in every transpose combination matches the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(11);
  const Tensor a = randn({3, 17, 29}, DType::f32, &g), b = randn({3, 29, 13}, DType::f32, &g);
  const Tensor at = a.as_strided({3, 29, 17}, {17 * 29, 1, 29}, 0).contiguous_raw();  // stored transposed
  const Tensor bt = b.as_strided({3, 13, 29}, {29 * 13, 1, 13}, 0).contiguous_raw();
  const Tensor ref = bmm_raw(a, b, false, false);
  CHECK(rel_error(bmm_raw(gpu(a), gpu(b), false, false), ref) < 1e-5);
  CHECK(rel_error(bmm_raw(gpu(at), gpu(b), true, false), ref) < 1e-5);
  CHECK(rel_error(bmm_raw(gpu(a), gpu(bt), false, true), ref) < 1e-5);
  CHECK(rel_error(bmm_raw(gpu(at), gpu(bt), true, true), ref) < 1e-5);
  // Column-major views used in place, and a shared (batch 1) operand.
  const Tensor atg = gpu(at);
  const Tensor a_view = atg.as_strided({3, 17, 29}, {17 * 29, 1, 17}, 0);
  CHECK(rel_error(bmm_raw(a_view, gpu(b), false, false), ref) < 1e-5);
  const Tensor shared = randn({1, 29, 13}, DType::f32, &g);
  CHECK(rel_error(bmm_raw(gpu(a), gpu(shared), false, false), bmm_raw(a, shared, false, false)) < 1e-5);
  const Tensor x = randn({4, 5, 8}, DType::f32, &g), w = randn({6, 8}, DType::f32, &g), bias = randn({6}, DType::f32, &g);
  CHECK(rel_error(linear(gpu(x), gpu(w), gpu(bias)), linear(x, w, bias)) < 1e-5);
}

TEST_CASE("cuda kernels: fused optimizer steps follow the CPU", "[cuda]") {
  if (skip_without_gpu()) return;
  Generator g(12);
  const Tensor p0 = randn({37, 5}, DType::f32, &g), grad = randn({37, 5}, DType::f32, &g);
  auto run = [&](Device dev, int which) {
    Tensor p = to_device_raw(p0, dev);
    p.set_requires_grad(true);
    std::unique_ptr<Optimizer> opt;
    if (which == 0) opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamWOptions{});
    if (which == 1) opt = std::make_unique<Adam>(std::vector<Tensor>{p}, AdamOptions{1e-2, 0.9, 0.99, 1e-8, 0.1});
    if (which == 2) opt = std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions{0.1, 0.9, 0.0, true, 0.01});
    for (int step = 0; step < 3; ++step) {
      p.set_grad(to_device_raw(grad, dev));
      opt->step();
    }
    return to_device_raw(p, Device::cpu());
  };
  for (int which = 0; which < 3; ++which) {
    INFO("optimizer " << which);
    CHECK(rel_error(run(Device::cuda(), which), run(Device::cpu(), which)) < 1e-6);
  }
}
