// Walks the op registry (ops/registry.h): f64 gradcheck of every case on the
// CPU, and CUDA parity of outputs and gradients when a GPU is present.
#include <catch2/catch.hpp>

#include <cmath>
#include <iostream>
#include <set>

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "core/kernel_table.h"
#include "cuda/runtime.h"
#include "ops/registry.h"

using namespace dimix;

TEST_CASE("registry: every op case passes f64 gradcheck", "[registry][gradcheck]") {
  const auto& cases = op_registry();
  REQUIRE(cases.size() > 40);
  std::set<std::string> names;
  for (const OpCase& c : cases) {
    INFO("case " << c.name);
    REQUIRE(names.insert(c.name).second);  // unique names
    Generator gen(std::hash<std::string>{}(c.name));
    std::vector<Tensor> inputs = c.make_inputs(gen, DType::f64);
    if (!c.check_gradients) {
      Tensor out = c.fn(inputs);
      CHECK(out.defined());
      continue;
    }
    const GradcheckResult r = gradcheck(c.fn, inputs, c.gradcheck);
    INFO(r.message);
    CHECK(r.ok);
  }
}

namespace {
// max |a - b| / max(max |b|, 1e-6): error normalised by the reference's scale.
double normalised_error(const Tensor& got, const Tensor& ref) {
  const auto a = got.to_vector<double>();
  const auto b = ref.to_vector<double>();
  REQUIRE(a.size() == b.size());
  double num = 0, scale = 1e-6;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    num = std::max(num, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return num / scale;
}
}  // namespace

TEST_CASE("registry: CUDA matches the CPU on every op case", "[registry][cuda]") {
  if (!cuda::available()) {
    WARN("SKIPPED: no CUDA device (" << (cuda_built() ? "built with CUDA" : "built without CUDA")
                                      << "); parity not checked");
    SUCCEED();
    return;
  }
  for (const OpCase& c : op_registry()) {
    INFO("case " << c.name);
    Generator gen(std::hash<std::string>{}(c.name) + 1);
    std::vector<Tensor> cpu = c.make_inputs(gen, DType::f32);
    std::vector<Tensor> gpu;
    for (const Tensor& t : cpu) {
      if (!t.defined()) { gpu.push_back(t); continue; }
      Tensor d = to_device_raw(t.contiguous_raw(), Device::cuda());
      if (t.requires_grad()) d.set_requires_grad(true);
      gpu.push_back(d);
    }
    Tensor out_c = c.fn(cpu), out_g = c.fn(gpu);
    REQUIRE(out_g.device().is_cuda());
    CHECK(normalised_error(out_g, out_c) <= c.parity_tol);
    if (!c.check_gradients) continue;
    Generator wg(7);
    const Tensor w = randn(out_c.sizes(), DType::f32, &wg);
    std::vector<Tensor> dc, dg;
    for (size_t i = 0; i < cpu.size(); ++i)
      if (cpu[i].defined() && cpu[i].requires_grad()) { dc.push_back(cpu[i]); dg.push_back(gpu[i]); }
    const auto gc = grad(out_c, dc, w);
    const auto gg = grad(out_g, dg, to_device_raw(w, Device::cuda()));
    for (size_t i = 0; i < gc.size(); ++i) {
      INFO("gradient of differentiable input " << i);
      if (!gc[i].defined()) { CHECK(!gg[i].defined()); continue; }
      CHECK(normalised_error(gg[i], gc[i]) <= c.parity_tol);
    }
  }
}
