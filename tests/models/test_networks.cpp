// The papers' networks: exact parameter counts of the authors' code
// (PAPERS.md 1.8 / 1.6), forward + backward on a CPU batch for every named
// network, mixer registry behaviour, and layer-level checks.
#include <catch2/catch.hpp>
#include <functional>
#include <map>

#include "autograd/node.h"
#include "models/blocks.h"
#include "models/init.h"
#include "models/layers.h"
#include "models/mixer.h"
#include "models/networks.h"
#include "ops/block_linear.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {
int64_t count(const std::string& name, int64_t classes = 10) {
  return make_network(name, NetworkInput{3, 32, classes})->num_parameters();
}
}  // namespace

TEST_CASE("networks: Table II parameter counts", "[models][params]") {
  CHECK(count("t2-dense-h1") == 351675);
  CHECK(count("t2-butterfly-mlp-h1") == 143551);
  CHECK(count("t2-butterfly-linear-h1") == 140961);
  CHECK(count("t2-dense-h2") == 615288);
  CHECK(count("t2-butterfly-mlp-h2") == 197745);
  CHECK(count("t2-butterfly-linear-h2") == 193860);
}

TEST_CASE("networks: Table III ViT parameter counts (dense = butterfly)", "[models][params]") {
  for (const char* kind : {"dense", "butterfly"}) {
    INFO(kind);
    CHECK(count(std::string("vit-p4-l4-") + kind) == 618122);
    CHECK(count(std::string("vit-p4-l8-") + kind) == 1148042);
    CHECK(count(std::string("vit-p2-l4-") + kind) == 298570);
    CHECK(count(std::string("vit-p1-l4-") + kind) == 789514);
    CHECK(count(std::string("vit-p4-l4-") + kind, 100) == 1355492);
    CHECK(count(std::string("vit-p2-l4-") + kind, 100) == 1773220);
  }
}

TEST_CASE("networks: Table V parameter counts", "[models][params]") {
  CHECK(count("mixer0-l7") == 896779);
  CHECK(count("mixer1-l7") == 884408);
  CHECK(count("patch-only-l7") == 807082);
  CHECK(count("mixer0-l7", 100) == 1946629);
  CHECK(count("mixer1-l7", 100) == 1765778);
  CHECK(count("patch-only-l7", 100) == 1137922);
}

TEST_CASE("networks: LRA parameter counts (dense = butterfly)", "[models][params]") {
  for (const char* kind : {"dense", "butterfly"}) {
    INFO(kind);
    CHECK(count(std::string("lra-listops-") + kind) == 209802);
    CHECK(count(std::string("lra-text-") + kind) == 370562);
    CHECK(count(std::string("lra-retrieval-") + kind) == 395138);
    CHECK(count(std::string("lra-image-") + kind) == 174986);
    CHECK(count(std::string("lra-pathfinder32-") + kind) == 173954);
  }
}

TEST_CASE("networks: every image network runs forward and backward on a CPU batch", "[models][fwdbwd]") {
  init::seed(1);
  for (const auto& [name, desc] : network_names()) {
    if (name.rfind("lra-", 0) == 0) continue;
    // Sparsifiner's mask predictor gets no cross-entropy gradient by design
    // (its mask is detached); tests/models/test_sparsifiner.cpp covers it.
    if (name.rfind("sparsifiner-", 0) == 0) continue;
    if (name.find("-p1-") != std::string::npos || name.find("-l8-") != std::string::npos) continue;  // big; covered by bench
    INFO(name);
    auto net = make_network(name, NetworkInput{3, 32, 10});
    Generator g(3);
    const Tensor x = randn({2, 3, 32, 32}, DType::f32, &g);
    const Tensor y = from_vector<int64_t>({3, 7}, {2});
    const Tensor logits = net->forward(x);
    REQUIRE(logits.sizes() == Shape{2, 10});
    const Tensor loss = cross_entropy(logits, y);
    backward(loss);
    int64_t with_grad = 0;
    double grad_norm = 0;
    for (const auto& [pn, p] : net->named_parameters()) {
      if (p.grad().defined()) {
        ++with_grad;
        for (float v : p.grad().to_vector<float>()) grad_norm += v * v;
      }
    }
    CHECK(with_grad == static_cast<int64_t>(net->named_parameters().size()));
    CHECK(grad_norm > 0);
    CHECK(std::isfinite(loss.item()));
  }
}

TEST_CASE("networks: LRA models run forward and backward with padding", "[models][fwdbwd][lra]") {
  init::seed(2);
  for (const char* name : {"lra-image-dense", "lra-image-butterfly", "lra-retrieval-butterfly"}) {
    INFO(name);
    auto net = make_network(name, NetworkInput{});
    const auto* lra = dynamic_cast<LRATransformer*>(net.get());
    REQUIRE(lra != nullptr);
    const int64_t S = lra->config.max_len;
    Generator g(4);
    Tensor tokens = randint(1, 200, {2, S}, DType::i64, &g);
    int64_t* tp = tokens.data<int64_t>();
    for (int64_t i = S / 2; i < S; ++i) tp[i] = 0;  // first document half padding
    const Tensor logits = lra->config.dual ? net->forward(tokens, tokens) : net->forward(tokens);
    REQUIRE(logits.sizes() == Shape{2, lra->config.classes});
    backward(cross_entropy(logits, from_vector<int64_t>({1, 0}, {2})));
    CHECK(lra->word->weight.grad().defined());
  }
}

TEST_CASE("networks: unknown names and bad configurations are clear errors", "[models]") {
  CHECK_THROWS_WITH(make_network("vit-p3", NetworkInput{}), Contains("unknown model 'vit-p3'") && Contains("vit-p4-l4-dense"));
  CHECK_THROWS_WITH(make_mixer("nope", MixerSpec{}), Contains("unknown mixer 'nope'") && Contains("butterfly-mlp"));
  MixerSpec s;
  s.n = 40;
  s.block = 7;
  CHECK_THROWS_WITH(make_mixer("butterfly-mlp", s), Contains("block size 7") && Contains("40"));
  s.block = 0;
  CHECK_THROWS_WITH(make_mixer("butterfly-linear", s), Contains("n = b^2"));
}

TEST_CASE("mixers: butterfly-mlp mixes every input into every output", "[models][mixers]") {
  // A 2-level butterfly over n = 16 (b = 4): the Jacobian has no zero entry.
  init::seed(5);
  MixerSpec s;
  s.n = 16;
  s.axis = 2;
  s.expansion = 2;
  auto m = make_mixer("butterfly-mlp", s);
  for (int64_t i = 0; i < 16; ++i) {
    Tensor x = randn({1, 1, 16}, DType::f32).set_requires_grad(true);
    Tensor y = m->forward(x);
    Tensor sel = zeros({1, 1, 16});
    sel.data<float>()[i] = 1;
    backward(y, sel);
    for (float v : x.grad().to_vector<float>()) CHECK(v != 0.0f);
  }
  // One level only (block = n) would also mix fully; two groups with b = 4 and a
  // single level do not: output 0 ignores input 15.
  MixerSpec one = s;
  one.block = 4;
  one.n = 4;
  CHECK(make_mixer("butterfly-mlp", one)->num_parameters() == 4 * 8 + 8 + 8 * 4 + 4);
}

namespace {

// A module's output under `forward` and the gradients of its input and
// every parameter (under one random weighting) equal those under
// `reference`, another computation of the same map, within eps (relative)
// and margin (absolute).
void check_module_matches(Module& m, const Shape& shape, const std::function<Tensor(const Tensor&)>& forward,
                          const std::function<Tensor(const Tensor&)>& reference, double eps = 1e-4,
                          double margin = 1e-5) {
  Generator g(4);
  const Tensor x0 = randn(shape, DType::f32, &g), up = randn(shape, DType::f32, &g);
  auto run = [&](bool ref) {
    m.zero_grad();
    Tensor x = x0.detach().set_requires_grad(true);
    const Tensor y = ref ? reference(x) : forward(x);
    backward(y, up);
    std::vector<std::vector<double>> out = {y.contiguous_raw().to_vector<double>(), x.grad().to_vector<double>()};
    for (const auto& [name, t] : m.named_parameters()) out.push_back(t.grad().to_vector<double>());
    return out;
  };
  const auto got = run(false), want = run(true);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("tensor " << i << " (0: output, 1: input gradient, then the parameters' gradients)");
    REQUIRE(got[i].size() == want[i].size());
    for (size_t j = 0; j < got[i].size(); ++j) CHECK(got[i][j] == Approx(want[i][j]).epsilon(eps).margin(margin));
  }
}

// A mixer against `reference`, which computes the same map from the input
// and the mixer's own parameter tensors (by name).
void check_mixer_matches(
    Mixer& m, const Shape& shape,
    const std::function<Tensor(const Tensor&, const std::map<std::string, Tensor>&)>& reference, double eps = 1e-4,
    double margin = 1e-5) {
  std::map<std::string, Tensor> p;
  for (const auto& [name, t] : m.named_parameters()) p[name] = t;
  check_module_matches(
      m, shape, [&](const Tensor& x) { return m.forward(x); }, [&](const Tensor& x) { return reference(x, p); }, eps,
      margin);
}

}  // namespace

TEST_CASE("mixers: butterfly-mlp (one block_mlp op) equals its levels composed, values and gradients",
          "[models][mixers]") {
  // n = 27, b = 3: three levels with strides 1, 3, 9, on tokens (axis 1,
  // inner 4) and on features (axis 2). The reference composes each level as
  // block_linear, GELU, block_linear.
  for (int64_t axis : {1, 2}) {
    INFO("axis " << axis);
    init::seed(11);
    MixerSpec s;
    s.n = 27;
    s.block = 3;
    s.axis = axis;
    s.expansion = 2;
    s.capped_strides = false;
    auto m = make_mixer("butterfly-mlp", s);
    REQUIRE(m->named_parameters().size() == 12);
    check_mixer_matches(*m, axis == 1 ? Shape{5, 27, 4} : Shape{5, 4, 27}, [&](const Tensor& x, const auto& p) {
      Tensor y = x;
      for (int64_t i = 0, stride = 1; i < 3; ++i, stride *= 3) {
        const std::string l = "levels." + std::to_string(i) + ".";
        const Tensor h = gelu(block_linear(y, p.at(l + "fc1.weight"), p.at(l + "fc1.bias"), axis, stride, 1));
        y = block_linear(h, p.at(l + "fc2.weight"), p.at(l + "fc2.bias"), axis, 1, stride);
      }
      return y;
    });
  }
}

TEST_CASE("mixers: butterfly-linear (one block_chain op) equals its four products with ELU, values and gradients",
          "[models][mixers]") {
  // n = 16, b = 4, hidden 8, on tokens (axis 1, inner 3) and on features.
  for (int64_t axis : {1, 2}) {
    INFO("axis " << axis);
    init::seed(12);
    MixerSpec s;
    s.n = 16;
    s.axis = axis;
    s.expansion = 2;
    auto m = make_mixer("butterfly-linear", s);
    REQUIRE(m->named_parameters().size() == 6);
    check_mixer_matches(*m, axis == 1 ? Shape{5, 16, 3} : Shape{5, 3, 16}, [&](const Tensor& x, const auto& p) {
      Tensor y = block_linear(x, p.at("layer1.factor1.weight"), Tensor(), axis, 1, 1);
      y = elu(block_linear(y, p.at("layer1.factor2.weight"), p.at("layer1.factor2.bias"), axis, 8, 1));
      y = block_linear(y, p.at("layer2.factor1.weight"), Tensor(), axis, 1, 1);
      return block_linear(y, p.at("layer2.factor2.weight"), p.at("layer2.factor2.bias"), axis, 4, 1);
    });
  }
}

TEST_CASE("mixer blocks: the butterfly mixers' fused norm and residual equal x + mix(norm(x)), values and gradients",
          "[models][mixers]") {
  // MixerBlock runs each branch as forward_residual, which the butterfly
  // mixers fuse into their op; the reference composes the block's two
  // LayerNorms, the mixers' plain forward and the adds. The norms' weight
  // and bias are moved off ones / zeros so their gradients are tested too.
  for (const std::string mixer : {"butterfly-mlp", "butterfly-linear"}) {
    INFO(mixer);
    init::seed(13);
    MixerBlock block(16, 9, mixer, mixer, 2.0);
    Generator g(6);
    for (const auto& n : {block.norm0, block.norm1}) {
      copy_(n->weight, add(mul(randn({9}, DType::f32, &g), 0.3), 1.0));
      copy_(n->bias, mul(randn({9}, DType::f32, &g), 0.3));
    }
    check_module_matches(
        block, {3, 16, 9}, [&](const Tensor& x) { return block.forward(x); },
        [&](const Tensor& x) {
          const Tensor h = x + block.token_mix->forward(block.norm0->forward(x));
          return h + block.channel_mix->forward(block.norm1->forward(h));
        });
  }
}

TEST_CASE("mixers: dense-mlp on tokens equals its MLP on the transposed input, values and gradients",
          "[models][mixers]") {
  // The token mixer runs its Linears along dim 1 in place (block_linear with
  // one group); the reference is the authors' swap: transpose, Linear, GELU,
  // Linear, transpose, with the same parameter tensors.
  init::seed(9);
  MixerSpec s;
  s.n = 7;
  s.axis = 1;
  s.expansion = 1.5;  // hidden 10
  auto m = make_mixer("dense-mlp", s);
  const auto params = m->named_parameters();
  REQUIRE(params.size() == 4);
  REQUIRE(params[0].first == "mlp.fc1.weight");
  REQUIRE(params[0].second.sizes() == Shape{10, 7});
  check_mixer_matches(
      *m, {3, 7, 5},
      [](const Tensor& x, const auto& p) {
        const Tensor h = gelu(linear(transpose(x, 1, 2), p.at("mlp.fc1.weight"), p.at("mlp.fc1.bias")));
        return transpose(linear(h, p.at("mlp.fc2.weight"), p.at("mlp.fc2.bias")), 1, 2);
      },
      1e-5, 1e-6);
}
