// Tests of the Monarch Mixer layers and networks (models/monarch.h): the
// parameter counts of PAPERS.md 2.1 / 2.6 (MonarchMatrix 2 n^1.5, fly's
// MonarchLinear 768 -> 3072, one M2-BERT-base layer: HyenaFilter 265,728,
// sequence mixer 2,903,040, MLP 1,771,776), the authors' initialisations,
// the layers against index-by-index oracles, the causal variant's causality,
// the two mixers, and the M2 networks (hand-counted parameters, padding never
// reaching the LRA model, forward and backward).
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <set>

#include "autograd/node.h"
#include "core/rng.h"
#include "models/init.h"
#include "models/mixer.h"
#include "models/monarch.h"
#include "models/networks.h"
#include "ops/elementwise.h"
#include "ops/fftconv.h"
#include "ops/linalg.h"
#include "ops/loss.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto u = a.to_vector<double>(), v = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < u.size(); ++i) m = std::max(m, std::abs(u[i] - v[i]));
  return m;
}

// max |v| and the standard deviation of a tensor's values.
std::pair<double, double> bound_and_std(const Tensor& t) {
  const auto v = t.to_vector<double>();
  double m = 0, s = 0, s2 = 0;
  for (double x : v) { m = std::max(m, std::abs(x)); s += x; s2 += x * x; }
  const double n = static_cast<double>(v.size());
  return {m, std::sqrt(s2 / n - (s / n) * (s / n))};
}

// A U(-b, b) sample: every value within b, the largest close to b, std b / sqrt 3.
void check_uniform(const Tensor& t, double b, const std::string& what) {
  INFO(what << ": bound " << b);
  const auto [m, sd] = bound_and_std(t);
  CHECK(m <= b);
  CHECK(m >= 0.95 * b);
  CHECK(sd == Approx(b / std::sqrt(3.0)).epsilon(0.05));
}

}  // namespace

TEST_CASE("m2: MonarchMatrix has 2 n^1.5 parameters and fly's init", "[models][m2][params]") {
  init::seed(1);
  MonarchMatrix M(1024);
  CHECK(M.num_parameters() == 65536);
  CHECK(M.L.sizes() == Shape{32, 32, 32});
  check_uniform(M.L, 1 / std::sqrt(32.0), "L");
  CHECK_THROWS_WITH(MonarchMatrix(1000), Contains("perfect square") && Contains("1000"));
}

TEST_CASE("m2: MonarchLinear 768 -> 3072 (4 blocks) has 737,280 weights, fly's shapes and init", "[models][m2][params]") {
  init::seed(2);
  MonarchLinear up(768, 3072, 4, false);
  CHECK(up.num_parameters() == 737280);
  CHECK(up.blkdiag1.sizes() == Shape{4, 192, 192});  // in_ext < out_ext: (nb, in_blk, in_blk)
  CHECK(up.blkdiag2.sizes() == Shape{4, 768, 192});  //                   (nb, out_blk, in_blk)
  check_uniform(up.blkdiag1, 1 / std::sqrt(192.0), "blkdiag1");
  check_uniform(up.blkdiag2, 1 / std::sqrt(192.0), "blkdiag2");
  MonarchLinear down(3072, 768, 4, true);
  CHECK(down.blkdiag1.sizes() == Shape{4, 192, 768});  // otherwise: (nb, out_blk, in_blk), (nb, out_blk, out_blk)
  CHECK(down.blkdiag2.sizes() == Shape{4, 192, 192});
  CHECK(down.num_parameters() == 737280 + 768);
  check_uniform(down.blkdiag1, 1 / std::sqrt(768.0), "down blkdiag1");
  check_uniform(down.bias, 1 / std::sqrt(768.0), "bias (fan-in = its own length)");
}

TEST_CASE("m2: MonarchLinear equals fly's product index by index, with padding and truncation", "[models][m2]") {
  init::seed(3);
  // 10 -> 7 with 4 blocks: in_blk 3 (10 padded to 12), out_blk 2 (8 cut to 7);
  // in_ext 12 >= out_ext 8: w1 (4, 2, 3), w2 (4, 2, 2).
  MonarchLinear lin(10, 7, 4);
  REQUIRE(lin.blkdiag1.sizes() == Shape{4, 2, 3});
  REQUIRE(lin.blkdiag2.sizes() == Shape{4, 2, 2});
  Generator g(1);
  const Tensor x = randn({3, 10}, DType::f32, &g);
  const Tensor y = lin.forward(x);
  REQUIRE(y.sizes() == Shape{3, 7});
  const int64_t k = 4, q = 2, p = 3, l = 4, s = 2, r = 2;
  for (int64_t b = 0; b < 3; ++b) {
    // out1[ki q + qi] = sum_pi w1[ki, qi, pi] x[ki p + pi];  out2[si l + li] = sum_ri w2[li, si, ri] out1[ri l + li]
    std::vector<double> xe(k * p, 0.0), out1(k * q, 0.0);
    for (int64_t i = 0; i < 10; ++i) xe[i] = x.at({b, i});
    for (int64_t ki = 0; ki < k; ++ki)
      for (int64_t qi = 0; qi < q; ++qi)
        for (int64_t pi = 0; pi < p; ++pi) out1[ki * q + qi] += lin.blkdiag1.at({ki, qi, pi}) * xe[ki * p + pi];
    for (int64_t si = 0; si < s; ++si)
      for (int64_t li = 0; li < l; ++li) {
        const int64_t o = si * l + li;
        if (o >= 7) continue;
        double v = lin.bias.at({o});
        for (int64_t ri = 0; ri < r; ++ri) v += lin.blkdiag2.at({li, si, ri}) * out1[ri * l + li];
        CHECK(y.at({b, o}) == Approx(v).margin(1e-5));
      }
  }
  // Along a middle dim: the same as moving that dim last.
  const Tensor x3 = randn({2, 10, 3}, DType::f32, &g);
  CHECK(max_abs_diff(lin.forward(x3, 1), transpose(lin.forward(transpose(x3, 1, 2)), 1, 2)) < 1e-5);
}

TEST_CASE("m2: BlockdiagLinear is m2's block-diagonal layer with its init", "[models][m2]") {
  init::seed(4);
  BlockdiagLinear big(768, 6144, 4, false);
  CHECK(big.num_parameters() == 768 * 6144 / 4);
  check_uniform(big.weight, 1 / std::sqrt(192.0), "weight (dense bound 1/sqrt(768) times sqrt(4))");
  BlockdiagLinear lin(6, 4, 2);
  CHECK(lin.weight.sizes() == Shape{2, 2, 3});
  CHECK(bound_and_std(lin.bias).first <= 0.5);  // U(+-1/sqrt(out = 4))
  Generator g(2);
  const Tensor x = randn({5, 6}, DType::f32, &g);
  const Tensor y = lin.forward(x);
  for (int64_t b = 0; b < 5; ++b)
    for (int64_t blk = 0; blk < 2; ++blk)
      for (int64_t o = 0; o < 2; ++o) {
        double v = lin.bias.at({blk * 2 + o});
        for (int64_t i = 0; i < 3; ++i) v += lin.weight.at({blk, o, i}) * x.at({b, blk * 3 + i});
        CHECK(y.at({b, blk * 2 + o}) == Approx(v).margin(1e-5));
      }
  // Padding (5 -> 6) and truncation (3 of 4): the missing input reads as zero.
  BlockdiagLinear odd(5, 3, 2);
  const Tensor x5 = randn({2, 5}, DType::f32, &g);
  const Tensor y3 = odd.forward(x5);
  REQUIRE(y3.sizes() == Shape{2, 3});
  double v = odd.bias.at({2});
  for (int64_t i = 0; i < 2; ++i) v += odd.weight.at({1, 0, i}) * x5.at({1, 3 + i});
  CHECK(y3.at({1, 2}) == Approx(v).margin(1e-5));
}

TEST_CASE("m2: HyenaFilter parameters, positional embedding, modulation", "[models][m2]") {
  HyenaFilterConfig c;
  c.d = 768;
  c.seq_len = 128;
  c.order = 128;
  c.emb_dim = 5;
  c.w = 10;
  c.bidirectional = true;
  init::seed(5);
  HyenaFilter f(c);
  CHECK(f.num_parameters() == 265728);  // PAPERS.md 2.6
  // z[i] = [t_i, cos(f_b w_i), -sin(f_b w_i)], t_i = i / 127, w_i = 2 pi i / 128, f = [1e-4, 1].
  const double w3 = 2 * std::numbers::pi * 3 / 128;
  CHECK(f.z.at({3, 0}) == Approx(3.0 / 127));
  CHECK(f.z.at({3, 1}) == Approx(std::cos(1e-4 * w3)));
  CHECK(f.z.at({3, 2}) == Approx(std::cos(w3)));
  CHECK(f.z.at({3, 4}) == Approx(-std::sin(w3)));
  CHECK(f.deltas.at({0}) == Approx(std::log(1e-2) / 1.5));
  CHECK(f.deltas.at({767}) == Approx(std::log(1e-2) / 0.3));
  CHECK(f.freq.at({17}) == 10.0);
  const Tensor k = f.filter(128);
  REQUIRE(k.sizes() == Shape{768, 128});
  // A shorter length is a prefix (the embedding is sliced, not recomputed);
  // only the GEMM's summation order may differ.
  CHECK(max_abs_diff(f.filter(20), narrow(k, 1, 0, 20)) < 1e-5);
  // The same draws without modulation: the ratio is exp(-t |delta|).
  HyenaFilterConfig plain = c;
  plain.modulate = false;
  plain.d = 8;
  c.d = 8;
  init::seed(6);
  HyenaFilter a(c);
  init::seed(6);
  HyenaFilter b(plain);
  const Tensor ka = a.filter(128), kb = b.filter(128);
  for (int64_t ch : {0, 7})
    for (int64_t i : {0, 5, 127}) {
      const double t = i / 127.0;
      CHECK(ka.at({ch, i}) == Approx(kb.at({ch, i}) * std::exp(-t * std::abs(a.deltas.at({ch})))).margin(1e-6));
    }
}

TEST_CASE("m2: one M2-BERT-base layer has the authors' parameter counts", "[models][m2][params]") {
  init::seed(7);
  M2MixerConfig mc;
  mc.d = 768;
  mc.l_max = 128;
  mc.filter_order = 128;
  mc.emb_dim = 5;
  mc.w = 10;
  mc.bidirectional = true;
  mc.residual_long_conv = true;
  M2LayerConfig lc;
  lc.mixer = mc;
  lc.intermediate = 3072;
  lc.nblocks = 4;
  M2Layer layer(lc);
  CHECK(layer.mixer->filter_fn->num_parameters() == 265728);
  CHECK(layer.mixer->num_parameters() == 2903040);
  CHECK(layer.mlp->num_parameters() == 1771776);
  CHECK(layer.num_parameters() == 4674816);
  CHECK(layer.mixer->short_weight.sizes() == Shape{2304, 3});
}

namespace {
// PAPERS.md 2.3 step by step with reference ops: Conv1d as shifted slices of
// a zero-padded input, the bidirectional kernel as pad / flip, fftconv_ref.
Tensor mixer_oracle(const M2SequenceMixer& m, const Tensor& u) {
  const int64_t B = u.size(0), L = u.size(1), d = m.config.d, K = m.config.short_kernel;
  const Tensor h = transpose(linear(u, m.in_linear->weight, m.in_linear->bias), 1, 2);  // b l d -> b d l
  const Tensor padded = cat({zeros({B, 3 * d, K - 1}), h}, 2);
  Tensor uc = reshape(m.short_bias, {3 * d, 1});
  for (int64_t j = 0; j < K; ++j) uc = uc + reshape(narrow(m.short_weight, 1, j, 1), {3 * d, 1}) * narrow(padded, 2, j, L);
  const Tensor x1 = narrow(uc, 1, 0, d), x2 = narrow(uc, 1, d, d), v = narrow(uc, 1, 2 * d, d) * x1;
  std::vector<int64_t> rev(L);
  for (int64_t i = 0; i < L; ++i) rev[i] = L - 1 - i;
  const Tensor flip = from_vector<int64_t>(rev, {L});
  auto kernel = [&](const HyenaFilter& f) { return cat({f.filter(L), index_select(f.filter_rev(L), 1, flip)}, 1); };
  Tensor y = fftconv_ref(v, kernel(*m.filter_fn), m.filter_fn->bias) * x2;
  y = y + fftconv_ref(transpose(u, 1, 2), kernel(*m.filter_fn2), m.filter_fn2->bias);
  return linear(transpose(y, 1, 2), m.out_linear->weight, m.out_linear->bias);
}
}  // namespace

TEST_CASE("m2: the sequence mixer follows PAPERS.md 2.3 step by step", "[models][m2]") {
  init::seed(12);
  M2MixerConfig c;
  c.d = 5;
  c.l_max = 11;
  c.filter_order = 8;
  M2SequenceMixer mixer(c);
  Generator g(5);
  const Tensor u = randn({3, 11, 5}, DType::f32, &g);
  const Tensor y = mixer.forward(u), ref = mixer_oracle(mixer, u);
  double scale = 0;
  for (float v : ref.to_vector<float>()) scale = std::max(scale, static_cast<double>(std::abs(v)));
  CHECK(max_abs_diff(y, ref) < 1e-5 * std::max(1.0, scale));
  // Shorter sequences use the first L positions of the filters.
  const Tensor u7 = narrow(u, 1, 0, 7).contiguous_raw();
  CHECK(max_abs_diff(mixer.forward(u7), mixer_oracle(mixer, u7)) < 1e-5 * std::max(1.0, scale));
  // Parameter names follow the authors' state dict.
  std::set<std::string> names;
  for (const auto& [n, p] : mixer.named_parameters()) names.insert(n);
  for (const char* n : {"filter_fn.bias", "filter_fn.pos_emb.z", "filter_fn.implicit_filter.1.freq",
                        "filter_fn.implicit_filter.0.weight", "filter_fn.implicit_filter.6.weight",
                        "filter_fn.implicit_filter_rev.4.bias", "filter_fn2.bias", "in_linear.weight",
                        "out_linear.bias", "short_filter.weight", "short_filter.bias"})
    CHECK(names.count(n) == 1);
}

TEST_CASE("m2: the causal mixer is causal, the bidirectional one is not", "[models][m2]") {
  for (bool bidirectional : {false, true}) {
    INFO("bidirectional " << bidirectional);
    init::seed(8);
    M2MixerConfig c;
    c.d = 6;
    c.l_max = 9;
    c.filter_order = 8;
    c.bidirectional = bidirectional;
    M2SequenceMixer mixer(c);
    Generator g(3);
    const Tensor u = randn({2, 9, 6}, DType::f32, &g);
    const Tensor y0 = mixer.forward(u);
    REQUIRE(y0.sizes() == Shape{2, 9, 6});
    Tensor u2 = empty(u.sizes());
    copy_(u2, u);
    for (int64_t c2 = 0; c2 < 6; ++c2) u2.data<float>()[(0 * 9 + 6) * 6 + c2] += 1.0f;  // batch 0, position 6
    const Tensor y1 = mixer.forward(u2);
    double before = 0, after = 0;
    for (int64_t t = 0; t < 9; ++t)
      for (int64_t ch = 0; ch < 6; ++ch) {
        const double dlt = std::abs(y1.at({0, t, ch}) - y0.at({0, t, ch}));
        (t < 6 ? before : after) = std::max(t < 6 ? before : after, dlt);
      }
    CHECK(after > 1e-2);
    // Causal up to the FFT's float rounding (the circular wrap adds ~1e-7).
    if (bidirectional) CHECK(before > 1e-2);
    else CHECK(before < 1e-5);
    // Batch 1 untouched either way.
    CHECK(max_abs_diff(narrow(y1, 0, 1, 1), narrow(y0, 0, 1, 1)) == 0.0);
  }
  M2MixerConfig c;
  c.d = 4;
  c.l_max = 8;
  M2SequenceMixer mixer(c);
  CHECK_THROWS_WITH(mixer.forward(zeros({1, 9, 4})), Contains("1 <= L <= 8") && Contains("[1, 9, 4]"));
}

TEST_CASE("m2: the monarch and m2 mixers", "[models][m2][mixers]") {
  init::seed(9);
  MixerSpec s;
  s.n = 49;
  s.axis = 1;
  s.features = 8;
  s.expansion = 2;
  // MonarchLinear(49, 98, 7): (7,7,7) + (7,14,7) + 98; MonarchLinear(98, 49, 7): (7,7,14) + (7,7,7) + 49.
  CHECK(make_mixer("monarch", s)->num_parameters() == 343 + 686 + 98 + 686 + 343 + 49);
  // Every output depends on every input (n = 16, 4 blocks).
  MixerSpec f;
  f.n = 16;
  f.axis = 2;
  f.expansion = 1;
  auto mono = make_mixer("monarch", f);
  Tensor x = randn({1, 1, 16}).set_requires_grad(true);
  const Tensor y = mono->forward(x);
  for (int64_t i = 0; i < 16; ++i) {
    Tensor sel = zeros({1, 1, 16});
    sel.data<float>()[i] = 1;
    const auto gx = grad(y, {x}, sel, true);
    for (float v : gx[0].to_vector<float>()) CHECK(v != 0.0f);
  }
  // m2 mixes tokens of [B, S, D].
  auto m2 = make_mixer("m2", s);
  const Tensor tok = randn({2, 49, 8});
  CHECK(m2->forward(tok).sizes() == Shape{2, 49, 8});
  s.axis = 2;
  CHECK_THROWS_WITH(make_mixer("m2", s), Contains("m2: mixes tokens (axis 1)"));
}

TEST_CASE("m2: network parameter counts (hand-counted)", "[models][m2][params]") {
  // Per layer at D = 64, order 32, emb 5, L tokens: two bidirectional filters
  // 2 (64 + 5L + 32 + 2 (192 + 2 * 1056 + 2048)), in/out linear 12480 + 4160,
  // short conv 768, GLU MLP 4096 + 2112 + 128.
  auto layer = [](int64_t L) { return 2 * (64 + 5 * L + 32 + 2 * (192 + 2112 + 2048)) + 12480 + 4160 + 768 + 6336; };
  CHECK(make_network("m2-mixer-s", NetworkInput{1, 28, 10})->num_parameters() == 1088 + 6 * layer(49) + 31370);
  CHECK(make_network("m2-mixer-s", NetworkInput{3, 32, 10})->num_parameters() == 3136 + 6 * layer(64) + 40970);
  CHECK(make_network("m2-mixer-s", NetworkInput{1, 28, 10})->num_parameters() == 283462);
  // LRA ListOps: embeddings 32 * 64 + 2048 * 64, 2 layers (L = 2048), final LN, head 64 -> 128 -> 10.
  CHECK(make_network("lra-listops-m2", NetworkInput{})->num_parameters() == 2048 + 131072 + 2 * layer(2048) + 128 + 9610);
  CHECK_THROWS_WITH(make_network("m2-mixer-s", NetworkInput{1, 28, 10}, "butterfly-mlp"),
                    Contains("m2-mixer-s: has no replaceable mixer"));
}

TEST_CASE("m2: image network trains a step on Fashion-MNIST-sized input", "[models][m2][fwdbwd]") {
  init::seed(10);
  auto net = make_network("m2-mixer-s", NetworkInput{1, 28, 10});
  Generator g(1);
  const Tensor x = randn({3, 1, 28, 28}, DType::f32, &g);
  const Tensor logits = net->forward(x);
  REQUIRE(logits.sizes() == Shape{3, 10});
  backward(cross_entropy(logits, from_vector<int64_t>({1, 4, 9}, {3})));
  for (const auto& [name, p] : net->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
  }
}

TEST_CASE("m2: LRA model never reads the padding", "[models][m2][lra]") {
  init::seed(11);
  auto net = make_network("lra-image-m2", NetworkInput{});
  auto* m2 = dynamic_cast<M2LRAClassifier*>(net.get());
  REQUIRE(m2 != nullptr);
  const int64_t S = m2->config.max_len;
  Generator g(4);
  Tensor tokens = randint(1, 200, {2, S}, DType::i64, &g);
  int64_t* tp = tokens.data<int64_t>();
  for (int64_t i = S / 2; i < S; ++i) tp[i] = 0;  // first document: second half padding
  const Tensor logits = net->forward(tokens);
  REQUIRE(logits.sizes() == Shape{2, 10});
  backward(cross_entropy(logits, from_vector<int64_t>({3, 0}, {2})));
  // The padding token's embedding and the padded positions' embeddings get no gradient.
  const Tensor gw = m2->word->weight.grad(), gp = m2->position->weight.grad();
  REQUIRE(gw.defined());
  double pad_word = 0, pad_pos = 0, real_pos = 0;
  for (int64_t c = 0; c < 64; ++c) {
    pad_word = std::max(pad_word, std::abs(gw.at({0, c})));
    pad_pos = std::max(pad_pos, std::abs(gp.at({S - 1, c})));  // padded only in document 0... and real in 1
    real_pos = std::max(real_pos, std::abs(gp.at({1, c})));
  }
  CHECK(pad_word == 0.0);
  CHECK(real_pos > 0.0);
  CHECK(pad_pos > 0.0);  // document 1 is real there
  // Document 0 alone: its padded positions contribute nothing.
  m2->zero_grad();
  backward(cross_entropy(net->forward(narrow(tokens, 0, 0, 1).contiguous_raw()), from_vector<int64_t>({3}, {1})));
  double pad_only = 0;
  for (int64_t c = 0; c < 64; ++c) pad_only = std::max(pad_only, std::abs(m2->position->weight.grad().at({S - 1, c})));
  CHECK(pad_only == 0.0);
}
