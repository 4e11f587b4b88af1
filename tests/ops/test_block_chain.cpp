// Tests of block_chain (ops/block_chain.h), a chain of block products with
// activations as one op, against its definition: block_linear then the
// activation, step by step, each product through the authors' permute /
// matmul composite (block_linear_oracle). Forward values and every gradient
// (x and each step's weight and bias) in f64 and f32: the Butterfly-Linear
// chains of Table II (channels n = 121, tokens n = 64 with inner 121, h 1
// and 2), both layouts, several tiles and gradient chunks, ragged tiles,
// non-contiguous x, GELU and ELU on the last step, steps that change the
// length. Plus: bitwise the same on 1 and 2 threads, and bad chains are
// errors naming the step.
#include <catch2/catch.hpp>

#include "ops/block_chain.h"
#include "tests/ops/block_linear_oracle.h"

using namespace dimix;
using namespace dimix::test;
using Catch::Matchers::Contains;

namespace {

struct StepSpec {
  int64_t G, b_in, b_out, g_in, g_out;
  bool bias;
  std::string act;
};

// The Butterfly-Linear mixer's chain for n = b^2 and hidden b h (PAPERS.md 1.2 b).
std::vector<StepSpec> butterfly_linear(int64_t b, int64_t bh) {
  return {{b, b, bh, 1, 1, false, ""}, {bh, b, b, bh, 1, true, "elu"}, {bh, b, b, 1, 1, false, ""},
          {b, bh, b, b, 1, true, ""}};
}

void check_chain(const Shape& shape, int64_t dim, const std::vector<StepSpec>& specs, bool noncontig, DType t,
                 double tol) {
  INFO("x " << shape_str(shape) << " dim " << dim << " steps " << specs.size() << (noncontig ? " noncontig" : "")
            << " " << dtype_name(t));
  Generator g(static_cast<uint64_t>(shape_numel(shape) + specs.size()));
  const Tensor x = random_input(shape, noncontig, t, g);
  std::vector<Tensor> leaves = {x};
  std::vector<BlockChainStep> steps;
  for (const StepSpec& s : specs) {
    BlockChainStep st;
    st.weight = mul(randn({s.G, s.b_out, s.b_in}, t, &g), 1.0 / std::sqrt(double(s.b_in))).detach();
    st.weight.set_requires_grad(true);
    leaves.push_back(st.weight);
    if (s.bias) {
      st.bias = mul(randn({s.G, s.b_out}, t, &g), 0.5).detach();
      st.bias.set_requires_grad(true);
      leaves.push_back(st.bias);
    }
    st.in_stride = s.g_in;
    st.out_stride = s.g_out;
    st.activation = s.act;
    steps.push_back(st);
  }
  const Tensor y = block_chain(x, steps, dim);
  Tensor ref = x;
  for (const BlockChainStep& s : steps) {
    ref = block_linear_oracle(ref, s.weight, s.bias, dim, s.in_stride, s.out_stride);
    if (s.activation == "elu") ref = elu(ref);
    if (s.activation == "gelu") ref = gelu(ref);
  }
  check_values_and_grads(y, ref, leaves, tol, g);
}

}  // namespace

TEST_CASE("block_chain matches the step-by-step composite, f64 and f32", "[block_chain]") {
  struct Case {
    Shape x;
    int64_t dim;
    std::vector<StepSpec> steps;
    bool noncontig;
  };
  const std::vector<Case> cases = {
      // Table II channel mixing, h 1 and 2 (tiles of 128 and 64 rows), ragged
      {{130, 121}, -1, butterfly_linear(11, 11), false},
      {{70, 121}, -1, butterfly_linear(11, 22), false},
      // Table II token mixing (inner 121), 12 rows: 3 gradient chunks
      {{12, 64, 121}, 1, butterfly_linear(8, 8), false},
      {{3, 64, 121}, 1, butterfly_linear(8, 16), false},
      // many tiles and chunks on a short last dim, noncontig
      {{1500, 9}, 1, butterfly_linear(3, 6), true},
      // lengths that change, GELU and ELU on the last step, middle dim noncontig
      {{4, 12, 5}, 1, {{4, 3, 2, 2, 1, true, "gelu"}, {4, 2, 5, 1, 4, true, "elu"}}, true},
      {{33, 12}, -1, {{6, 2, 3, 3, 2, false, "elu"}, {2, 9, 4, 1, 1, true, "gelu"}}, false},
  };
  for (const Case& c : cases) {
    check_chain(c.x, c.dim, c.steps, c.noncontig, DType::f64, 1e-12);
    check_chain(c.x, c.dim, c.steps, c.noncontig, DType::f32, 3e-5);
  }
}

TEST_CASE("block_chain gradients are bitwise the same on 1 and 2 threads", "[block_chain]") {
  for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{{{700, 16}, -1}, {{40, 16, 10}, 1}}) {
    INFO("x " << shape_str(shape));
    Generator g(9);
    const Tensor x = randn(shape, DType::f32, &g).set_requires_grad(true);
    std::vector<BlockChainStep> steps;
    std::vector<Tensor> leaves = {x};
    for (const StepSpec& s : butterfly_linear(4, 8)) {
      BlockChainStep st{randn({s.G, s.b_out, s.b_in}, DType::f32, &g).set_requires_grad(true),
                        s.bias ? randn({s.G, s.b_out}, DType::f32, &g).set_requires_grad(true) : Tensor(), s.g_in,
                        s.g_out, s.act};
      leaves.push_back(st.weight);
      if (s.bias) leaves.push_back(st.bias);
      steps.push_back(st);
    }
    const Tensor weighting = randn(shape, DType::f32, &g);
    auto grads = [&](int threads) {
      return on_threads(threads, [&] { return leaf_grads(block_chain(x, steps, dim), weighting, leaves); });
    };
    const auto one = grads(1), two = grads(2);
    for (size_t i = 0; i < leaves.size(); ++i) CHECK(one[i].to_vector<float>() == two[i].to_vector<float>());
  }
}

TEST_CASE("block_chain rejects bad chains with the expected and the given", "[block_chain]") {
  const Tensor x = zeros({4, 12});
  CHECK_THROWS_WITH(block_chain(x, {}, -1), Contains("expected at least one step"));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3, 3}), Tensor(), 1, 1, ""}}, -3),
                    Contains("block_chain: dim -3 out of range for a 2-d tensor"));
  CHECK_THROWS_WITH(block_chain(zeros({}), {{zeros({4, 3, 3}), Tensor(), 1, 1, ""}}, 0),
                    Contains("expected x with at least one dim"));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3, 3}), Tensor(), 1, 1, ""}, {zeros({5, 2, 2}), Tensor(), 1, 1, ""}}, -1),
                    Contains("the input of step 1 has 12 positions") && Contains("G * b_in = 5 * 2 = 10"));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3, 3}), Tensor(), 3, 1, ""}}, -1),
                    Contains("G = 4 must be divisible by in_stride 3") && Contains("(step 0)"));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3, 3}), zeros({4, 2}), 1, 1, ""}}, -1),
                    Contains("expected bias [4, 3], got [4, 2] (step 0)"));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3, 3}), Tensor(), 1, 1, "relu"}}, -1),
                    Contains("step 0 has activation 'relu'") && Contains("\"elu\" or \"gelu\""));
  CHECK_THROWS_WITH(block_chain(x, {{zeros({4, 3}), Tensor(), 1, 1, ""}}, -1),
                    Contains("expected weight [G, b_out, b_in] (step 0), got [4, 3]"));
}
