// Sparsifiner: connectivity predictor, sparse attention layer, ViT, stages
// and losses (see sparsifiner.h; PAPERS.md 3).
#include "models/sparsifiner.h"

#include <cmath>
#include <limits>
#include <set>

#include "autograd/node.h"
#include "models/init.h"
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/sparse_attention.h"
#include "ops/topk.h"

namespace dimix {

Tensor trunc_normal(const Shape& shape, double std) {
  Tensor t = init::normal(shape, std);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    while (p[i] < -2.0f || p[i] > 2.0f) p[i] = init::normal({1}, std).item<float>();
  }
  return t;
}

namespace {

// nn.Threshold(thr, 0) of |x|: |x| where |x| > thr, else 0. Not recorded (the
// mask path is detached). The [Kb, N] basis is tiny, so a GPU copy makes the
// round trip through the host rather than needing a comparison kernel.
Tensor abs_threshold_raw(const Tensor& x, double thr) {
  const Device dev = x.device();
  Tensor c = cast_raw(dev.is_cpu() ? x : to_device_raw(x, Device::cpu()), x.dtype());
  dispatch_float(c.dtype(), "MaskPredictor basis threshold", [&]<class T>() {
    T* p = c.data<T>();
    for (int64_t i = 0; i < c.numel(); ++i) {
      const T a = std::abs(p[i]);
      p[i] = a > static_cast<T>(thr) ? a : T(0);
    }
  });
  return dev.is_cpu() ? c : to_device_raw(c, dev);
}

// 1 at padding, as x's dtype, shaped to broadcast over [B, H, rows, N].
Tensor padding_columns(const Tensor& key_mask, DType dtype) {
  const Tensor pad = rsub(not_equal(key_mask, 0.0, dtype), 1.0);
  return reshape(pad, {key_mask.size(0), 1, 1, key_mask.size(1)});
}

}  // namespace

// ---- MaskPredictor ------------------------------------------------------------------------
MaskPredictor::MaskPredictor(int64_t head_dim, int64_t heads, int64_t tokens, double density, int64_t reduce_n,
                             int64_t reduce_c, double basis_threshold, int64_t coef_topk)
    : heads(heads), head_dim(head_dim), tokens(tokens), coef_topk(coef_topk), basis_threshold(basis_threshold) {
  DIMIX_CHECK(head_dim > 0 && heads > 0 && tokens > 1, "MaskPredictor: expected positive head_dim and heads and at ",
              "least 2 tokens (CLS + 1), got head_dim ", head_dim, ", heads ", heads, ", tokens ", tokens);
  DIMIX_CHECK(reduce_c > 0 && reduce_n > 0, "MaskPredictor: reduce factors must be positive, got REDUCE_C ", reduce_c,
              ", REDUCE_N ", reduce_n);
  reduced_c = head_dim / reduce_c;
  reduced_n = tokens / reduce_n;
  DIMIX_CHECK(reduced_c > 0, "MaskPredictor: head_dim ", head_dim, " // REDUCE_C ", reduce_c, " is 0");
  DIMIX_CHECK(reduced_n > 0, "MaskPredictor: tokens ", tokens, " // REDUCE_N ", reduce_n,
              " is 0 (too few tokens for this reduction)");
  DIMIX_CHECK(density > 0 && density <= 1, "MaskPredictor: density must be in (0, 1], got ", density);
  DIMIX_CHECK(coef_topk > 0, "MaskPredictor: coef_topk must be positive, got ", coef_topk);
  budget = static_cast<int64_t>(std::ceil(density * static_cast<double>(tokens)));
  proj_c_q = register_module("proj_c_q", std::make_shared<Linear>(head_dim, reduced_c));
  proj_c_k = register_module("proj_c_k", std::make_shared<Linear>(head_dim, reduced_c));
  proj_n = register_parameter("proj_n", trunc_normal({tokens, reduced_n}, 0.02));
  proj_back_n = register_parameter("proj_back_n", trunc_normal({tokens, reduced_n}, 0.02));
  // _init_weights: Linear weights trunc_normal(0.02), biases 0.
  for (const auto& l : {proj_c_q, proj_c_k}) {
    copy_(l->weight, trunc_normal(l->weight.sizes(), 0.02));
    fill_(l->bias, 0.0);
  }
}

MaskPredictor::Output MaskPredictor::forward(const Tensor& q, const Tensor& k, const Tensor& key_mask,
                                             bool reconstruction) const {
  DIMIX_CHECK(q.dim() == 4 && q.size(1) == heads && q.size(2) == tokens && q.size(3) == head_dim &&
                  k.sizes() == q.sizes(),
              "MaskPredictor: expected q, k [B, ", heads, ", ", tokens, ", ", head_dim, "], got q ", q.shape_str(), ", k ",
              k.shape_str());
  const int64_t B = q.size(0), N = tokens;
  if (key_mask.defined())
    DIMIX_CHECK(key_mask.dim() == 2 && key_mask.size(0) == B && key_mask.size(1) == N,
                "MaskPredictor: expected key_mask [", B, ", ", N, "], got ", key_mask.shape_str());
  auto coefficients = [&] {
    const Tensor qc = proj_c_q->forward(q), kc = proj_c_k->forward(k);  // [B, H, N, c]
    const Tensor kr = matmul(transpose(kc, -2, -1), proj_n);             // [B, H, c, Kb]
    // The authors scale by num_heads^-0.5 here, not head_dim^-0.5.
    const Tensor cheap = matmul(qc, kr) * (1.0 / std::sqrt(static_cast<double>(heads)));  // [B, H, N, Kb]
    return softmax(slice(cheap, 2, 1, N), -1);  // [B, H, N-1, Kb]: the CLS query row dropped
  };
  Output out;
  if (reconstruction) {
    out.approx_attn = matmul(coefficients(), transpose(proj_back_n, 0, 1));  // raw basis [Kb, N]
    return out;
  }
  NoGradGuard no_grad;
  Tensor coef = coefficients();
  if (coef_topk < reduced_n) {
    const Tensor keep = topk_indices(coef, coef_topk);
    coef = scatter_add_raw(zeros(coef.sizes(), coef.dtype(), coef.device()), 3, keep, gather(coef, 3, keep));
  }
  const Tensor basis = abs_threshold_raw(transpose(proj_back_n, 0, 1), basis_threshold);
  out.approx_attn = matmul(coef, basis);  // [B, H, N-1, N]
  Tensor score = out.approx_attn;
  if (key_mask.defined())
    score = masked_fill(score, padding_columns(key_mask, score.dtype()), -std::numeric_limits<double>::infinity());
  out.indices = topk_indices(score, budget);
  return out;
}

Tensor MaskPredictor::dense_mask(const Tensor& indices_in, int64_t N, int64_t dense_rows) {
  DIMIX_CHECK(indices_in.dim() == 4 && indices_in.dtype() == DType::i64 && indices_in.size(2) == N - dense_rows,
              "MaskPredictor::dense_mask: expected int64 indices [B, H, ", N - dense_rows, ", K], got ",
              dtype_name(indices_in.dtype()), " ", indices_in.shape_str());
  const Tensor indices = indices_in.device().is_cpu() ? indices_in.contiguous_raw()
                                                      : to_device_raw(indices_in, Device::cpu()).contiguous_raw();
  const int64_t B = indices.size(0), H = indices.size(1), M = indices.size(2), K = indices.size(3);
  Tensor mask = zeros({B, H, N, N});
  float* pm = mask.data<float>();
  const int64_t* pi = indices.data<int64_t>();
  for (int64_t bh = 0; bh < B * H; ++bh) {
    for (int64_t i = 0; i < dense_rows * N; ++i) pm[bh * N * N + i] = 1;
    for (int64_t r = 0; r < M; ++r) {
      for (int64_t j = 0; j < K; ++j) {
        const int64_t key = pi[(bh * M + r) * K + j];
        DIMIX_CHECK(key >= 0 && key < N, "MaskPredictor::dense_mask: index ", key, " outside [0, ", N, ")");
        pm[(bh * N + dense_rows + r) * N + key] = 1;
      }
    }
  }
  return mask;
}

// ---- SparsifinerAttention ---------------------------------------------------------------
SparsifinerAttention::SparsifinerAttention(const SparsifinerOptions& o) : options(o) {
  DIMIX_CHECK(o.heads > 0 && o.dim % o.heads == 0, "SparsifinerAttention: dim ", o.dim, " is not divisible by ", o.heads,
              " heads");
  qkv = register_module("qkv", std::make_shared<Linear>(o.dim, 3 * o.dim, o.qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(o.dim, o.dim));
  predictor = register_module("predictor",
                              std::make_shared<MaskPredictor>(o.dim / o.heads, o.heads, o.tokens, o.density, o.reduce_n,
                                                              o.reduce_c, o.basis_threshold, o.coef_topk));
}

Tensor SparsifinerAttention::forward(const Tensor& x, const Tensor& key_mask) const {
  const int64_t D = options.dim, H = options.heads, N = options.tokens, hd = D / H;
  DIMIX_CHECK(x.dim() == 3 && x.size(1) == N && x.size(2) == D, "SparsifinerAttention: expected x [B, ", N, ", ", D,
              "] (the predictor's token projections fix N), got ", x.shape_str());
  const int64_t B = x.size(0);
  const Tensor qkv5 = reshape(qkv->forward(x), {B, N, 3, H, hd});
  auto part = [&](int64_t i) { return permute(squeeze(narrow(qkv5, 2, i, 1), 2), {0, 2, 1, 3}); };  // [B, H, N, hd]
  const Tensor q = part(0), k = part(1), v = part(2);
  const bool reconstruction = is_training() && stage == SparsifinerStage::reconstruction;
  const MaskPredictor::Output pred = predictor->forward(q, k, key_mask, reconstruction);
  Tensor o;
  if (reconstruction) {
    // Full softmax attention, so the values are not distorted while the
    // predictor learns to reconstruct it.
    Tensor scores = matmul(q, transpose(k, -2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
    if (key_mask.defined()) scores = scores - padding_columns(key_mask, scores.dtype()) * 1e6;
    const Tensor attn = softmax(scores, -1);
    o = matmul(attn, v);
    last_ = Record{pred.approx_attn, attn.detach(), Tensor()};
  } else {
    o = sparse_attention(q, k, v, pred.indices, /*dense_rows=*/1, key_mask);
    last_ = record ? Record{pred.approx_attn, Tensor(), pred.indices} : Record{};
  }
  return proj->forward(reshape(permute(o, {0, 2, 1, 3}), {B, N, D}));
}

// ---- SparsifinerBlock / SparsifinerViT ------------------------------------------------------
SparsifinerBlock::SparsifinerBlock(const SparsifinerOptions& a, double mlp_ratio, double ln_eps) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(a.dim, ln_eps));
  attn = register_module("attn", std::make_shared<SparsifinerAttention>(a));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(a.dim, ln_eps));
  mlp = register_module("mlp", std::make_shared<MLP>(a.dim, static_cast<int64_t>(a.dim * mlp_ratio)));
}

Tensor SparsifinerBlock::forward(const Tensor& x, const Tensor& key_mask) const {
  const Tensor y = x + attn->forward(norm1->forward(x), key_mask);
  return y + mlp->forward(norm2->forward(y));
}

SparsifinerViT::SparsifinerViT(const SparsifinerViTConfig& c) : config(c) {
  DIMIX_CHECK(c.patch > 0 && c.image % c.patch == 0, "SparsifinerViT: image size ", c.image,
              " is not a multiple of patch ", c.patch);
  tokens = (c.image / c.patch) * (c.image / c.patch) + 1;
  config.attention.tokens = tokens;
  config.attention.dim = c.dim;
  config.attention.heads = c.heads;
  embed = register_module("embed", std::make_shared<PatchEmbedding>(c.channels, c.patch, c.dim));
  cls_token = register_parameter("cls_token", trunc_normal({1, 1, c.dim}, 0.02));
  pos_embed = register_parameter("pos_embed", trunc_normal({1, tokens, c.dim}, 0.02));
  for (int64_t i = 0; i < c.layers; ++i)
    blocks.push_back(register_module("blocks." + std::to_string(i),
                                     std::make_shared<SparsifinerBlock>(config.attention, c.mlp_ratio, c.ln_eps)));
  norm = register_module("norm", std::make_shared<LayerNorm>(c.dim, c.ln_eps));
  head = register_module("head", std::make_shared<Linear>(c.dim, c.classes));
  // _init_weights on every Linear (the patch embedding is a Conv2d there and
  // keeps PyTorch's default); LayerNorms are already ones / zeros and the
  // predictor's token projections already trunc_normal.
  for (const auto& [name, p] : named_parameters()) {
    if (name.rfind("embed.", 0) == 0) continue;
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_weight && p.dim() == 2) copy_(p, trunc_normal(p.sizes(), 0.02));
    else if (is_bias) fill_(p, 0.0);
  }
}

Tensor SparsifinerViT::forward_features(const Tensor& images) const {
  DIMIX_CHECK(images.dim() == 4 && images.size(1) == config.channels && images.size(2) == config.image &&
                  images.size(3) == config.image,
              "SparsifinerViT: expected images [B, ", config.channels, ", ", config.image, ", ", config.image,
              "] (the predictor's token projections fix the size), got ", images.shape_str());
  Tensor h = embed->forward(images);  // [B, P, D]
  const int64_t B = h.size(0);
  h = cat({expand(cls_token, {B, 1, config.dim}), h}, 1) + pos_embed;
  for (const auto& b : blocks) h = b->forward(h);
  return norm->forward(h);
}

Tensor SparsifinerViT::forward(const Tensor& x, const Tensor&) const {
  return head->forward(squeeze(narrow(forward_features(x), 1, 0, 1), 1));
}

// ---- stages --------------------------------------------------------------------------------
std::vector<SparsifinerAttention*> sparsifiner_layers(const Module& net) {
  std::vector<SparsifinerAttention*> out;
  auto add_mixer = [&](const std::shared_ptr<Mixer>& m) {
    if (auto* s = dynamic_cast<SparsifinerAttention*>(m.get())) out.push_back(s);
  };
  if (const auto* v = dynamic_cast<const SparsifinerViT*>(&net)) {
    for (const auto& b : v->blocks) out.push_back(b->attn.get());
  } else if (const auto* vit = dynamic_cast<const ViT*>(&net)) {
    for (const auto& b : vit->blocks) add_mixer(b->mix);
  } else if (const auto* lra = dynamic_cast<const LRATransformer*>(&net)) {
    for (const auto& b : lra->blocks) add_mixer(b->mix);
  } else if (const auto* blk = dynamic_cast<const SparsifinerBlock*>(&net)) {
    out.push_back(blk->attn.get());
  } else if (const auto* a = dynamic_cast<const SparsifinerAttention*>(&net)) {
    out.push_back(const_cast<SparsifinerAttention*>(a));
  }
  return out;
}

namespace {
std::set<const TensorImpl*> predictor_impls(const Module& net) {
  std::set<const TensorImpl*> s;
  for (SparsifinerAttention* l : sparsifiner_layers(net))
    for (const Tensor& p : l->predictor->parameters()) s.insert(p.impl_ptr().get());
  return s;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> predictor_parameters(const Module& net) {
  const auto ids = predictor_impls(net);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& np : net.named_parameters())
    if (ids.count(np.second.impl_ptr().get())) out.push_back(np);
  return out;
}

std::vector<std::pair<std::string, Tensor>> backbone_parameters(const Module& net) {
  const auto ids = predictor_impls(net);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& np : net.named_parameters())
    if (!ids.count(np.second.impl_ptr().get())) out.push_back(np);
  return out;
}

void set_sparsifiner_stage(Module& net, SparsifinerStage stage) {
  const auto layers = sparsifiner_layers(net);
  DIMIX_CHECK(!layers.empty(), "set_sparsifiner_stage: ", net.type_name(), " has no Sparsifiner attention layer");
  for (SparsifinerAttention* l : layers) l->stage = stage;
  const bool train_predictor = stage == SparsifinerStage::reconstruction;
  for (const auto& [name, p] : predictor_parameters(net)) p.set_requires_grad(train_predictor);
  for (const auto& [name, p] : backbone_parameters(net)) p.set_requires_grad(!train_predictor);
  net.zero_grad();
}

void set_sparsifiner_record(Module& net, bool on) {
  for (SparsifinerAttention* l : sparsifiner_layers(net)) l->record = on;
}

// ---- losses -----------------------------------------------------------------------------------
Tensor attention_reconstruction_loss(const std::vector<Tensor>& approx, const std::vector<Tensor>& target,
                                     double weight) {
  DIMIX_CHECK(!approx.empty() && approx.size() == target.size(), "attention_reconstruction_loss: expected one target ",
              "per layer and at least one layer, got ", approx.size(), " approximations and ", target.size(), " targets");
  Tensor total;
  for (size_t l = 0; l < approx.size(); ++l) {
    const Tensor& a = approx[l];
    const Tensor& t = target[l];
    DIMIX_CHECK(a.defined() && t.defined() && a.dim() == 4 && t.dim() == 4 && t.size(2) == a.size(2) + 1 &&
                    t.size(0) == a.size(0) && t.size(1) == a.size(1) && t.size(3) == a.size(3),
                "attention_reconstruction_loss: layer ", l, ": expected approx [B, H, N-1, N] and target [B, H, N, N], got ",
                a.defined() ? a.shape_str() : "undefined", " and ", t.defined() ? t.shape_str() : "undefined");
    // The target's CLS query row has no approximation.
    const Tensor term = mse_loss(a, slice(t, 2, 1, t.size(2)), "sum");
    total = total.defined() ? total + term : term;
  }
  return total * (weight / static_cast<double>(approx.size()));
}

Tensor self_reconstruction_loss(const Module& net, double weight) {
  const auto layers = sparsifiner_layers(net);
  DIMIX_CHECK(!layers.empty(), "self_reconstruction_loss: ", net.type_name(), " has no Sparsifiner attention layer");
  std::vector<Tensor> approx, dense;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& r = layers[i]->last();
    DIMIX_CHECK(r.approx_attn.defined() && r.dense_attn.defined(), "self_reconstruction_loss: layer ", i,
                " has no recorded reconstruction-stage attention (run a training-mode forward in the reconstruction ",
                "stage first)");
    approx.push_back(r.approx_attn);
    dense.push_back(r.dense_attn);
  }
  return attention_reconstruction_loss(approx, dense, weight);
}

Tensor distillation_kl(const Tensor& student, const Tensor& teacher) {
  DIMIX_CHECK(student.dim() == 2 && teacher.sizes() == student.sizes(), "distillation_kl: expected logits [B, classes] ",
              "of one shape, got ", student.shape_str(), " and ", teacher.shape_str());
  const Tensor log_s = log_softmax(student, -1), log_t = log_softmax(teacher, -1);
  return sum(exp(log_t) * (log_t - log_s)) * (1.0 / static_cast<double>(student.size(0)));
}

Tensor token_distillation_loss(const Tensor& student_tokens, const Tensor& teacher_tokens) {
  DIMIX_CHECK(student_tokens.sizes() == teacher_tokens.sizes(), "token_distillation_loss: token shapes differ: ",
              student_tokens.shape_str(), " vs ", teacher_tokens.shape_str());
  return mse_loss(student_tokens, teacher_tokens);
}

Tensor sparsifiner_classification_loss(const Tensor& logits, const Tensor& labels, double label_smoothing,
                                       const Tensor& teacher_logits, double kd_weight, const Tensor& student_tokens,
                                       const Tensor& teacher_tokens, double token_weight) {
  Tensor loss = cross_entropy(logits, labels, label_smoothing);
  if (teacher_logits.defined()) loss = loss + distillation_kl(logits, teacher_logits) * kd_weight;
  if (student_tokens.defined() && teacher_tokens.defined())
    loss = loss + token_distillation_loss(student_tokens, teacher_tokens) * token_weight;
  return loss;
}

// ---- the reconstruction stage ------------------------------------------------------------------
SparsifinerReconstructionStage::SparsifinerReconstructionStage(Network& net, const ReconstructionStageOptions& o)
    : net_(net), options_(o) {
  DIMIX_CHECK(o.steps > 0, "SparsifinerReconstructionStage: steps must be positive, got ", o.steps);
  set_sparsifiner_stage(net, SparsifinerStage::reconstruction);
  AdamWOptions ao;
  ao.lr = o.lr;
  ao.weight_decay = o.weight_decay;
  opt_ = std::make_unique<AdamW>(param_groups_no_decay_1d(predictor_parameters(net), o.weight_decay), ao);
  schedule_ = std::make_unique<WarmupDecayLR>(o.lr, o.warmup, o.steps, DecayKind::cosine, o.final_lr);
}

SparsifinerReconstructionStage::~SparsifinerReconstructionStage() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; finish() only fails on a network without layers
  }
}

double SparsifinerReconstructionStage::step(const Tensor& x, const Tensor& x2) {
  DIMIX_CHECK(!finished_, "SparsifinerReconstructionStage: step after finish()");
  net_.train();
  schedule_->apply(*opt_, step_);
  net_.forward(x, x2);  // the logits are not part of this stage's loss
  const Tensor loss = self_reconstruction_loss(net_, options_.loss_weight);
  const double value = loss.item();
  DIMIX_CHECK(std::isfinite(value), "SparsifinerReconstructionStage: loss became ", value, " at step ", step_ + 1);
  backward(loss);
  opt_->step();
  opt_->zero_grad();
  ++step_;
  return value;
}

void SparsifinerReconstructionStage::finish() {
  if (finished_) return;
  finished_ = true;
  set_sparsifiner_stage(net_, SparsifinerStage::sparse);
  for (SparsifinerAttention* l : sparsifiner_layers(net_)) {
    l->record = false;
    l->clear_record();  // drops the last graph of this stage
  }
}

}  // namespace dimix
