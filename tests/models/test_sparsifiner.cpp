// Sparsifiner (PAPERS.md 3): parameter counts of the predictor and of
// Sparsifiner-S; the predictor against a loop-by-loop oracle of the authors'
// MaskPredictor (num_heads^-0.5 scale, threshold basis, top-8 coefficients,
// top-budget keys); every non-CLS mask row keeps exactly the budget (50 of
// 197); the layer against dense attention masked with the predicted mask;
// the reconstruction stage (dense attention, losses, only the predictor
// trains); the losses against hand-computed values; the mixer and the LRA
// configuration.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "autograd/node.h"
#include "core/rng.h"
#include "models/init.h"
#include "models/mixer.h"
#include "models/networks.h"
#include "models/sparsifiner.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// q, k, v [B, H, N, hd] of a layer's fused projection, as the authors split it.
std::vector<Tensor> split_qkv(const SparsifinerAttention& a, const Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), H = a.options.heads, hd = a.options.dim / H;
  const Tensor qkv5 = reshape(linear(x, a.qkv->weight, a.qkv->bias), {B, N, 3, H, hd});
  std::vector<Tensor> out;
  for (int64_t i = 0; i < 3; ++i) out.push_back(contiguous(permute(squeeze(narrow(qkv5, 2, i, 1), 2), {0, 2, 1, 3})));
  return out;
}

// The authors' attention: scores * hd^-0.5, -inf where mask == 0, softmax,
// @ v, heads merged, output projection. mask undefined: dense.
Tensor reference_attention(const SparsifinerAttention& a, const Tensor& x, const Tensor& mask) {
  const auto qkv = split_qkv(a, x);
  const int64_t B = x.size(0), N = x.size(1), D = a.options.dim, hd = D / a.options.heads;
  Tensor scores = matmul(qkv[0], transpose(qkv[1], -2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  if (mask.defined()) scores = masked_fill(scores, rsub(mask, 1.0), -std::numeric_limits<double>::infinity());
  const Tensor o = matmul(softmax(scores, -1), qkv[2]);
  return linear(reshape(permute(o, {0, 2, 1, 3}), {B, N, D}), a.proj->weight, a.proj->bias);
}

}  // namespace

TEST_CASE("sparsifiner: predictor parameter counts (PAPERS.md 3 anchors)", "[models][sparsifiner][params]") {
  // hd 64, H 6, N 197, REDUCE_C 2 -> c 32, REDUCE_N 6 -> Kb 32:
  // 2 (64*32 + 32) + 2 * 197 * 32 = 4,160 + 12,608 = 16,768.
  const MaskPredictor p6(64, 6, 197, 0.25, 6, 2);
  CHECK(p6.reduced_c == 32);
  CHECK(p6.reduced_n == 32);
  CHECK(p6.budget == 50);  // ceil(0.25 * 197)
  CHECK(p6.num_parameters() == 16768);
  CHECK(12 * p6.num_parameters() == 201216);
  // REDUCE_N 8 -> Kb 24: 4,160 + 2 * 197 * 24 = 13,616 per layer, 163,392 over 12 layers.
  const MaskPredictor p8(64, 6, 197, 0.25, 8, 2);
  CHECK(p8.reduced_n == 24);
  CHECK(p8.num_parameters() == 13616);
  CHECK(12 * p8.num_parameters() == 163392);
}

TEST_CASE("sparsifiner: Sparsifiner-S = DeiT-S + 12 predictors = 22,251,880", "[models][sparsifiner][params]") {
  init::seed(0);
  const auto net = make_network("sparsifiner-deit-s", NetworkInput{3, 224, 1000});
  CHECK(net->num_parameters() == 22251880);
  int64_t predictor = 0, backbone = 0;
  for (const auto& [n, p] : predictor_parameters(*net)) predictor += p.numel();
  for (const auto& [n, p] : backbone_parameters(*net)) backbone += p.numel();
  CHECK(predictor == 201216);
  CHECK(backbone == 22050664);
  const auto* vit = dynamic_cast<const SparsifinerViT*>(net.get());
  REQUIRE(vit != nullptr);
  CHECK(vit->tokens == 197);
  CHECK(vit->blocks[0]->norm1->eps == 1e-6);
  CHECK(vit->blocks[0]->attn->qkv->bias.defined());
  CHECK(sparsifiner_layers(*net).size() == 12);
  // The small model: 28 px -> 7 x 7 patches + CLS = 50 tokens, 12 bases.
  const auto small = make_network("sparsifiner-vit-s", NetworkInput{1, 28, 10});
  const auto layers = sparsifiner_layers(*small);
  REQUIRE(layers.size() == 4);
  CHECK(layers[0]->predictor->tokens == 50);
  CHECK(layers[0]->predictor->reduced_n == 12);
  CHECK(layers[0]->predictor->budget == 13);
}

TEST_CASE("sparsifiner: initialisation follows _init_weights", "[models][sparsifiner]") {
  init::seed(3);
  SparsifinerViTConfig c;
  c.image = 8;
  c.patch = 2;
  c.dim = 32;
  c.layers = 1;
  c.heads = 2;
  c.classes = 5;
  c.attention.reduce_n = 2;
  const SparsifinerViT net(c);
  auto stats = [](const Tensor& t) {
    const auto v = t.to_vector<double>();
    double s = 0, ss = 0, mx = 0;
    for (double x : v) s += x, ss += x * x, mx = std::max(mx, std::abs(x));
    return std::vector<double>{s / v.size(), std::sqrt(ss / v.size()), mx};
  };
  for (const auto& [name, p] : net.named_parameters()) {
    INFO(name);
    if (name.find(".bias") != std::string::npos && name.rfind("embed.", 0) != 0) {
      CHECK(stats(p)[2] == 0.0);
    } else if (name.find("norm") != std::string::npos) {
      CHECK(stats(p)[0] == 1.0);
    } else if (name.rfind("embed.", 0) == 0) {
      // The patch embedding keeps U(+-1/sqrt(fan_in)), fan_in 3 * 2 * 2 = 12.
      CHECK(stats(p)[2] <= 1.0 / std::sqrt(12.0));
      CHECK(stats(p)[2] > 0.2);
    } else {
      // trunc_normal(0.02): rms near 0.02, nothing beyond 6 sigma.
      CHECK(stats(p)[1] == Approx(0.02).epsilon(0.35));
      CHECK(stats(p)[2] < 0.12);
    }
  }
}

TEST_CASE("sparsifiner: MaskPredictor equals a loop-by-loop oracle of the authors' code", "[models][sparsifiner]") {
  init::seed(7);
  const int64_t B = 2, H = 2, N = 9, hd = 4, c = 2, Kb = 3, top = 2;
  MaskPredictor pred(hd, H, N, 0.4, 3, 2, 2e-2, top);
  REQUIRE(pred.reduced_c == c);
  REQUIRE(pred.reduced_n == Kb);
  REQUIRE(pred.budget == 4);  // ceil(0.4 * 9)
  Generator g(8);
  copy_(pred.proj_c_q->bias, randn({c}, DType::f32, &g, 0.0, 0.1));  // nonzero biases are used too
  copy_(pred.proj_c_k->bias, randn({c}, DType::f32, &g, 0.0, 0.1));
  const Tensor q = randn({B, H, N, hd}, DType::f32, &g), k = randn({B, H, N, hd}, DType::f32, &g);

  const auto Q = q.to_vector<double>(), Kv = k.to_vector<double>();
  const auto Wq = pred.proj_c_q->weight.to_vector<double>(), bq = pred.proj_c_q->bias.to_vector<double>();
  const auto Wk = pred.proj_c_k->weight.to_vector<double>(), bk = pred.proj_c_k->bias.to_vector<double>();
  const auto Pn = pred.proj_n.to_vector<double>(), Pb = pred.proj_back_n.to_vector<double>();
  int64_t thresholded = 0;
  for (double x : Pb) thresholded += std::abs(x) <= 2e-2;
  REQUIRE(thresholded > 0);  // the threshold is exercised
  REQUIRE(thresholded < static_cast<int64_t>(Pb.size()));

  // approx[b, h, n-1, m] for the reconstruction (raw) and sparse paths.
  std::vector<double> recon(B * H * (N - 1) * N), sparse(B * H * (N - 1) * N);
  for (int64_t bh = 0; bh < B * H; ++bh) {
    std::vector<double> qc(N * c), kc(N * c), kr(c * Kb, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < c; ++o) {
        double sq = bq[o], sk = bk[o];
        for (int64_t d = 0; d < hd; ++d) {
          sq += Q[(bh * N + n) * hd + d] * Wq[o * hd + d];
          sk += Kv[(bh * N + n) * hd + d] * Wk[o * hd + d];
        }
        qc[n * c + o] = sq;
        kc[n * c + o] = sk;
      }
    for (int64_t o = 0; o < c; ++o)
      for (int64_t j = 0; j < Kb; ++j)
        for (int64_t n = 0; n < N; ++n) kr[o * Kb + j] += kc[n * c + o] * Pn[n * Kb + j];
    for (int64_t n = 1; n < N; ++n) {
      std::vector<double> coef(Kb);
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j < Kb; ++j) {
        double s = 0;
        for (int64_t o = 0; o < c; ++o) s += qc[n * c + o] * kr[o * Kb + j];
        coef[j] = s / std::sqrt(static_cast<double>(H));  // num_heads, not head_dim
        mx = std::max(mx, coef[j]);
      }
      for (double& x : coef) z += (x = std::exp(x - mx));
      for (double& x : coef) x /= z;
      // The sparse path keeps the top-2 coefficients.
      std::vector<int64_t> order(Kb);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return coef[a] > coef[b]; });
      std::vector<double> kept(Kb, 0.0);
      for (int64_t t = 0; t < top; ++t) kept[order[t]] = coef[order[t]];
      for (int64_t m = 0; m < N; ++m) {
        double r = 0, s = 0;
        for (int64_t j = 0; j < Kb; ++j) {
          const double basis = Pb[m * Kb + j];
          r += coef[j] * basis;
          s += kept[j] * (std::abs(basis) > 2e-2 ? std::abs(basis) : 0.0);
        }
        recon[(bh * (N - 1) + n - 1) * N + m] = r;
        sparse[(bh * (N - 1) + n - 1) * N + m] = s;
      }
    }
  }
  auto close = [](const std::vector<double>& got, const std::vector<double>& want) {
    double m = 0;
    for (size_t i = 0; i < got.size(); ++i) m = std::max(m, std::abs(got[i] - want[i]));
    return m;
  };
  const auto r = pred.forward(q, k, Tensor(), true);
  REQUIRE(r.approx_attn.sizes() == Shape{B, H, N - 1, N});
  CHECK(!r.indices.defined());
  CHECK(r.approx_attn.requires_grad());
  CHECK(close(r.approx_attn.to_vector<double>(), recon) < 1e-6);

  const auto s = pred.forward(q, k, Tensor(), false);
  CHECK(!s.approx_attn.requires_grad());  // the mask path is detached
  CHECK(close(s.approx_attn.to_vector<double>(), sparse) < 1e-6);
  // The kept keys are the 4 largest entries of each row (ties: lower index).
  REQUIRE(s.indices.sizes() == Shape{B, H, N - 1, 4});
  const auto approx = s.approx_attn.to_vector<float>();
  const auto idx = s.indices.to_vector<int64_t>();
  for (int64_t row = 0; row < B * H * (N - 1); ++row) {
    std::vector<int64_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return approx[row * N + a] > approx[row * N + b]; });
    for (int64_t t = 0; t < 4; ++t) CHECK(idx[row * 4 + t] == order[t]);
  }
}

TEST_CASE("sparsifiner: every non-CLS mask row keeps exactly 50 of 197 keys (DeiT-S sizes)", "[models][sparsifiner]") {
  init::seed(11);
  SparsifinerOptions o;  // N 197, D 384, H 6, 25%
  SparsifinerAttention layer(o);
  layer.eval();
  layer.record = true;
  Generator g(12);
  const Tensor x = randn({2, 197, 384}, DType::f32, &g);
  const Tensor y = layer.forward(x);
  REQUIRE(y.sizes() == Shape{2, 197, 384});
  const Tensor& idx = layer.last().indices;
  REQUIRE(idx.sizes() == Shape{2, 6, 196, 50});
  const Tensor mask = MaskPredictor::dense_mask(idx, 197);
  const auto rows = sum(mask, {3}).to_vector<double>();  // [2, 6, 197]
  for (int64_t r = 0; r < 2 * 6 * 197; ++r) {
    INFO("row " << r % 197 << " of head " << r / 197);
    CHECK(rows[r] == (r % 197 == 0 ? 197.0 : 50.0));  // the CLS row stays dense
  }
  // The sparse layer equals the dense computation masked with the same mask.
  CHECK(max_abs_diff(y, reference_attention(layer, x, mask)) < 2e-5);
}

TEST_CASE("sparsifiner: a layer equals masked dense attention, and padding keys are never kept", "[models][sparsifiner]") {
  init::seed(13);
  SparsifinerOptions o;
  o.tokens = 23;
  o.dim = 24;
  o.heads = 3;
  o.reduce_n = 3;
  SparsifinerAttention layer(o);
  layer.record = true;  // train mode, sparse stage: the mask is used in training too
  Generator g(14);
  const Tensor x = randn({3, 23, 24}, DType::f32, &g);
  const Tensor y = layer.forward(x);
  CHECK(max_abs_diff(y, reference_attention(layer, x, MaskPredictor::dense_mask(layer.last().indices, 23))) < 1e-5);
  // With padding at the end of the second example (13 real tokens >= budget 6),
  // no row keeps a padding key.
  Tensor keep = ones({3, 23});
  for (int64_t j = 13; j < 23; ++j) keep.data<float>()[23 + j] = 0;
  layer.forward(x, keep);
  const auto idx = layer.last().indices.to_vector<int64_t>();  // [3, 3, 22, 6]
  const int64_t per_example = 3 * 22 * 6;
  for (int64_t i = per_example; i < 2 * per_example; ++i) CHECK(idx[i] < 13);
}

TEST_CASE("sparsifiner: the reconstruction stage attends densely and trains only the predictor", "[models][sparsifiner]") {
  init::seed(17);
  SparsifinerViTConfig c;
  c.image = 8;
  c.patch = 2;  // 16 patches + CLS = 17 tokens
  c.dim = 16;
  c.layers = 2;
  c.heads = 2;
  c.classes = 4;
  c.attention.reduce_n = 2;  // 8 bases
  SparsifinerViT net(c);
  Generator g(18);
  const Tensor x = randn({4, 3, 8, 8}, DType::f32, &g);

  set_sparsifiner_stage(net, SparsifinerStage::reconstruction);
  for (const auto& [n, p] : predictor_parameters(net)) CHECK(p.requires_grad());
  for (const auto& [n, p] : backbone_parameters(net)) CHECK(!p.requires_grad());
  net.train();
  net.forward(x);
  const auto layers = sparsifiner_layers(net);
  // The recorded target is the unmasked softmax: rows sum to 1, no zero entry.
  const auto& rec = layers[0]->last();
  REQUIRE(rec.dense_attn.sizes() == Shape{4, 2, 17, 17});
  CHECK(rec.approx_attn.requires_grad());
  CHECK(!rec.dense_attn.requires_grad());
  for (double s : sum(rec.dense_attn, {3}).to_vector<double>()) CHECK(s == Approx(1.0).epsilon(1e-5));
  // The loss is the weighted, layer-averaged sum of squares over the non-CLS rows.
  double manual = 0;
  for (const auto* l : layers) {
    const auto a = l->last().approx_attn.to_vector<double>();
    const auto t = l->last().dense_attn.to_vector<double>();
    for (int64_t bh = 0; bh < 8; ++bh)
      for (int64_t r = 1; r < 17; ++r)
        for (int64_t m = 0; m < 17; ++m) {
          const double d = a[(bh * 16 + r - 1) * 17 + m] - t[(bh * 17 + r) * 17 + m];
          manual += d * d;
        }
  }
  CHECK(self_reconstruction_loss(net, 0.01).item() == Approx(manual * 0.01 / 2).epsilon(1e-5));

  // Forty stage-1 steps on one batch: the loss falls, the backbone stays put.
  std::vector<std::vector<float>> backbone_before;
  for (const auto& [n, p] : backbone_parameters(net)) backbone_before.push_back(p.to_vector<float>());
  const auto proj_before = layers[1]->predictor->proj_back_n.to_vector<float>();
  ReconstructionStageOptions so;
  so.steps = 40;
  so.lr = 1e-2;
  so.final_lr = 1e-3;
  double first = 0, last = 0;
  {
    SparsifinerReconstructionStage stage1(net, so);
    for (int64_t s = 0; s < so.steps; ++s) {
      const double l = stage1.step(x);
      if (s == 0) first = l;
      last = l;
    }
    CHECK(stage1.steps_done() == 40);
  }  // leaving the scope finishes the stage
  CHECK(last < 0.05 * first);
  size_t i = 0;
  for (const auto& [n, p] : backbone_parameters(net)) CHECK(p.to_vector<float>() == backbone_before[i++]);
  CHECK(layers[1]->predictor->proj_back_n.to_vector<float>() != proj_before);

  // Stage 2: sparse attention in training, the predictor frozen.
  CHECK(layers[0]->stage == SparsifinerStage::sparse);
  for (const auto& [n, p] : predictor_parameters(net)) CHECK(!p.requires_grad());
  backward(cross_entropy(net.forward(x), from_vector<int64_t>({0, 1, 2, 3}, {4})));
  for (const auto& [n, p] : predictor_parameters(net)) CHECK(!p.grad().defined());
  for (const auto& [n, p] : backbone_parameters(net)) {
    INFO(n);
    CHECK(p.grad().defined());
  }
  CHECK_THROWS_WITH(self_reconstruction_loss(net), Contains("layer 0 has no recorded reconstruction-stage attention"));
}

TEST_CASE("sparsifiner: losses equal hand-computed values", "[models][sparsifiner][loss]") {
  // Row 0: p_t = (3/4, 1/4), p_s = (1/2, 1/2): KL = 3/4 ln 1.5 + 1/4 ln 0.5.
  // Row 1: identical logits, KL 0. batchmean divides by 2.
  const Tensor s = from_vector<double>({0, 0, 1, 2}, {2, 2});
  const Tensor t = from_vector<double>({std::log(3.0), 0, 1, 2}, {2, 2});
  CHECK(distillation_kl(s, t).item() == Approx((0.75 * std::log(1.5) + 0.25 * std::log(0.5)) / 2).epsilon(1e-12));
  CHECK(distillation_kl(t, t).item() == Approx(0.0).margin(1e-15));
  // Gradient w.r.t. the student logits: (p_s - p_t) / B.
  const Tensor sg = from_vector<double>({0, 0, 1, 2}, {2, 2}).set_requires_grad(true);
  backward(distillation_kl(sg, t));
  const auto gs = sg.grad().to_vector<double>();
  CHECK(gs[0] == Approx((0.5 - 0.75) / 2));
  CHECK(gs[1] == Approx((0.5 - 0.25) / 2));
  CHECK(gs[2] == Approx(0.0).margin(1e-15));

  // Reconstruction: two layers of [1, 1, 1, 2] against [1, 1, 2, 2] targets
  // whose CLS row (row 0) is ignored.
  const Tensor a0 = from_vector<double>({0.5, 0.5}, {1, 1, 1, 2}), a1 = from_vector<double>({1.0, 0.0}, {1, 1, 1, 2});
  const Tensor t0 = from_vector<double>({9, 9, 0.25, 0.75}, {1, 1, 2, 2});
  const Tensor t1 = from_vector<double>({9, 9, 0.0, 1.0}, {1, 1, 2, 2});
  // (0.0625 + 0.0625 + 1 + 1) / 2 layers * 0.01
  CHECK(attention_reconstruction_loss({a0, a1}, {t0, t1}).item() == Approx(2.125 / 2 * 0.01));
  CHECK(attention_reconstruction_loss({a0}, {t0}, 1.0).item() == Approx(0.125));
  CHECK_THROWS_WITH(attention_reconstruction_loss({a0}, {a0}), Contains("layer 0") && Contains("[B, H, N, N]"));
  CHECK_THROWS_WITH(attention_reconstruction_loss({a0, a1}, {t0}), Contains("2 approximations and 1 targets"));

  // The stage-2 objective without a teacher is the label-smoothed CE alone;
  // with one it adds 0.5 KD + 0.5 token MSE.
  const Tensor labels = from_vector<int64_t>({1, 0}, {2});
  const double ce = cross_entropy(s, labels, 0.1).item();
  CHECK(sparsifiner_classification_loss(s, labels).item() == Approx(ce));
  const Tensor tok_s = from_vector<double>({1, 2, 3, 4}, {1, 2, 2}), tok_t = from_vector<double>({1, 2, 3, 6}, {1, 2, 2});
  CHECK(sparsifiner_classification_loss(s, labels, 0.1, t, 0.5, tok_s, tok_t, 0.5).item() ==
        Approx(ce + 0.5 * distillation_kl(s, t).item() + 0.5 * 1.0));
}

TEST_CASE("sparsifiner: the mixer, the LRA configurations and error messages", "[models][sparsifiner]") {
  init::seed(19);
  MixerSpec s;
  s.n = 17;
  s.axis = 1;
  s.features = 16;
  s.heads = 2;
  auto m = make_mixer("sparsifiner", s);
  // qkv 16*48 + 48, proj 16*16 + 16, predictor 2 (8*4 + 4) + 2 * 17 * (17 // 6).
  CHECK(m->num_parameters() == 816 + 272 + 72 + 68);
  Generator g(20);
  CHECK(m->forward(randn({2, 17, 16}, DType::f32, &g)).sizes() == Shape{2, 17, 16});
  CHECK_THROWS_WITH(m->forward(randn({2, 16, 16}, DType::f32, &g)), Contains("expected x [B, 17, 16]"));
  s.axis = 2;
  CHECK_THROWS_WITH(make_mixer("sparsifiner", s), Contains("sparsifiner: mixes tokens"));
  s.axis = 1;
  s.n = 5;  // 5 // 6 = 0 bases
  CHECK_THROWS_WITH(make_mixer("sparsifiner", s), Contains("tokens 5 // REDUCE_N 6 is 0"));

  // LRA image: the dense model plus two predictors of 2 (32*16 + 16) + 2 * 1024 * 170.
  auto lra = make_network("lra-image-sparsifiner", NetworkInput{});
  CHECK(lra->num_parameters() == 174986 + 2 * (1056 + 348160));
  CHECK(sparsifiner_layers(*lra).size() == 2);
  Tensor tokens = randint(1, 200, {2, 1024}, DType::i64, &g);
  int64_t* tp = tokens.data<int64_t>();
  for (int64_t i = 600; i < 1024; ++i) tp[i] = 0;  // padding at the end of the first document
  set_sparsifiner_record(*lra, true);
  const Tensor logits = lra->forward(tokens);
  CHECK(logits.sizes() == Shape{2, 10});
  const auto idx = sparsifiner_layers(*lra)[0]->last().indices;  // [2, 2, 1023, 256]
  REQUIRE(idx.sizes() == Shape{2, 2, 1023, 256});
  const auto iv = idx.to_vector<int64_t>();
  int64_t padding_kept = 0;
  for (int64_t i = 0; i < 2 * 1023 * 256; ++i) padding_kept += iv[i] >= 600;
  CHECK(padding_kept == 0);

  CHECK_THROWS_WITH(make_network("sparsifiner-vit-s", NetworkInput{1, 28, 10}, "attention"),
                    Contains("sparsifiner-vit-s: its attention is Sparsifiner's"));
  const auto small = make_network("sparsifiner-vit-s", NetworkInput{1, 28, 10});
  CHECK_THROWS_WITH(small->forward(zeros({1, 1, 32, 32})), Contains("expected images [B, 1, 28, 28]"));
  auto plain = make_network("vit-p4-l4-dense", NetworkInput{3, 32, 10});
  CHECK_THROWS_WITH(set_sparsifiner_stage(*plain, SparsifinerStage::reconstruction),
                    Contains("has no Sparsifiner attention layer"));
}
