// The backward engine: accumulation, retain_graph, errors, NoGradGuard,
// detach, explicit gradients, and a small MLP fitted with hand-written SGD.
#include <catch2/catch.hpp>

#include "autograd/gradcheck.h"
#include "core/rng.h"
#include "autograd/node.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/reduce.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

TEST_CASE("autograd: gradients of a small expression", "[autograd]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3});
  x.set_requires_grad(true);
  Tensor y = sum(x * x * 2.0 + exp(x));  // dy/dx = 4x + e^x
  backward(y);
  auto g = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) CHECK(g[i] == Approx(4.0 * (i + 1) + std::exp(i + 1.0)));
}

TEST_CASE("autograd: gradients accumulate across backward calls", "[autograd]") {
  Tensor x = from_vector<float>({1, 2}, {2});
  x.set_requires_grad(true);
  backward(sum(x * 3.0));
  backward(sum(x * 3.0));
  CHECK(x.grad().to_vector<float>() == std::vector<float>{6, 6});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("autograd: a tensor used twice sums both paths", "[autograd]") {
  Tensor x = from_vector<double>({2}, {1});
  x.set_requires_grad(true);
  Tensor a = x * x;
  Tensor y = sum(a * a + a);  // x^4 + x^2 -> 4x^3 + 2x = 36
  backward(y);
  CHECK(x.grad().item() == Approx(36.0));
}

TEST_CASE("autograd: retain_graph and freed-graph errors", "[autograd]") {
  Tensor x = from_vector<double>({1, 2}, {2});
  x.set_requires_grad(true);
  Tensor y = sum(exp(x));
  backward(y, Tensor(), /*retain_graph=*/true);
  backward(y);
  CHECK(x.grad().to_vector<double>()[0] == Approx(2 * std::exp(1.0)));
  CHECK_THROWS_WITH(backward(y), Contains("second time") && Contains("retain_graph"));
}

TEST_CASE("autograd: non-scalar roots need an explicit gradient", "[autograd]") {
  Tensor x = from_vector<double>({1, 2, 3}, {3});
  x.set_requires_grad(true);
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH(backward(y), Contains("scalar") && Contains("[3]"));
  backward(y, from_vector<double>({1, 0, -1}, {3}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 0, -2});
  Tensor z = x * 2.0;
  CHECK_THROWS_WITH(backward(z, ones({2}, DType::f64)), Contains("gradient shape [2]") && Contains("[3]"));
}

TEST_CASE("autograd: NoGradGuard and detach stop recording", "[autograd]") {
  Tensor x = from_vector<float>({1}, {1});
  x.set_requires_grad(true);
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    CHECK(!y.requires_grad());
  }
  Tensor d = x.detach();
  CHECK(!d.requires_grad());
  CHECK(d.storage() == x.storage());
  Tensor y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK_THROWS_WITH(backward(d), Contains("does not require grad"));
}

TEST_CASE("autograd: grad() returns gradients without touching .grad", "[autograd]") {
  Tensor x = from_vector<double>({3}, {1});
  x.set_requires_grad(true);
  Tensor y = sum(x * x * x);
  auto g = grad(y, {x});
  CHECK(g[0].item() == Approx(27.0));
  CHECK(!x.grad().defined());
}

TEST_CASE("gradcheck: catches a wrong backward", "[autograd][gradcheck]") {
  Tensor x = randn({4}, DType::f64).set_requires_grad(true);
  // A deliberately wrong op: forward x^2, backward claims 3x.
  auto wrong = [](const std::vector<Tensor>& in) {
    Tensor out = binary_raw(BinaryOp::mul, in[0], in[0]);
    autograd::record(out, "wrong_square", {in[0]}, [x = in[0].detach()](const Tensor& g) -> std::vector<Tensor> {
      return {binary_raw(BinaryOp::mul, g, unary_raw(UnaryOp::mul_scalar, x, 3.0))};
    });
    return out;
  };
  CHECK(!gradcheck(wrong, {x}).ok);
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return square(in[0]); }, {x}).ok);
}

TEST_CASE("autograd: a small MLP trained with plain SGD fits a synthetic task", "[autograd][train]") {
  // y = sin(3 x0) + x1^2 on 256 points; 2 -> 32 -> 1 tanh MLP.
  Generator g(5);
  const Tensor X = rand({256, 2}, DType::f32, &g, -1.0, 1.0);
  const auto xv = X.to_vector<float>();
  std::vector<float> yv(256);
  for (int i = 0; i < 256; ++i) yv[i] = std::sin(3 * xv[2 * i]) + xv[2 * i + 1] * xv[2 * i + 1];
  const Tensor Y = from_vector(yv, {256, 1});
  Tensor W1 = (randn({32, 2}, DType::f32, &g) * 0.7).detach().set_requires_grad(true);
  Tensor b1 = zeros({32}).set_requires_grad(true);
  Tensor W2 = (randn({1, 32}, DType::f32, &g) * 0.2).detach().set_requires_grad(true);
  Tensor b2 = zeros({1}).set_requires_grad(true);
  std::vector<Tensor> params{W1, b1, W2, b2};
  auto loss_fn = [&] { return mean(square(linear(tanh(linear(X, W1, b1)), W2, b2) - Y)); };
  const double initial = loss_fn().item();
  for (int step = 0; step < 1500; ++step) {
    Tensor loss = loss_fn();
    backward(loss);
    NoGradGuard ng;
    for (Tensor& p : params) {
      float* pd = p.data<float>();
      const float* gd = p.grad().data<float>();
      for (int64_t i = 0; i < p.numel(); ++i) pd[i] -= 0.1f * gd[i];
      p.zero_grad();
    }
  }
  const double final_loss = loss_fn().item();
  INFO("initial " << initial << " final " << final_loss);
  CHECK(final_loss < 0.01);
  CHECK(final_loss < initial / 20);
}
