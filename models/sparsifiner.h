// Sparsifiner (Wei et al., CVPR 2023; PAPERS.md 3, the authors'
// src/models/sparsifiner.py and src/losses.py): a ViT whose attention rows
// each keep only `budget` keys, picked per image by a cheap low-rank
// connectivity predictor.
//
// B batch, N tokens (CLS first), D model dim, H heads, hd = D / H head dim,
// c = hd / REDUCE_C reduced head dim, Kb = N // REDUCE_N basis count,
// budget = ceil(density N) keys per query row.
//
//   MaskPredictor        q, k [B, H, N, hd] -> approx_attn [B, H, N-1, N] and
//                        the kept keys [B, H, N-1, budget] of every non-CLS row
//   SparsifinerAttention x [B, N, D] -> [B, N, D]: fused qkv, predictor,
//                        sparse attention (ops/sparse_attention.h, CLS row
//                        dense), output projection. Also the "sparsifiner"
//                        token mixer (models/mixers/sparsifiner.cpp).
//   SparsifinerViT       images [B, C, H, W] -> logits: patch embedding, CLS
//                        token, learned positions, pre-LN blocks (LN eps
//                        1e-6), final LN, head on the CLS row.
//
// Two training stages (the authors' sparsifiner_default_config.yaml):
//   reconstruction: only the predictors train, on the attention-
//     reconstruction loss; attention runs dense in training, so the targets
//     are the model's own softmax attention rows. There is no pretrained
//     DeiT teacher here, so "teacher attention" is the model's own dense
//     attention (self-distillation); with a pretrained backbone frozen in
//     this stage, as the authors do, the two coincide.
//   sparse: the backbone trains with the predictors frozen; every query row
//     but CLS attends only to its top-`budget` keys of approx_attn.
// Evaluation always uses the sparse path. set_sparsifiner_stage switches a
// network and freezes the other group (requires_grad), so an optimizer over
// all parameters moves only the live group; a fresh network is in the sparse
// stage with nothing frozen.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/mixer.h"
#include "models/networks.h"
#include "models/optim.h"
#include "models/schedule.h"

namespace dimix {

struct SparsifinerOptions {
  int64_t tokens = 197;           // N, the CLS token included
  int64_t dim = 384;              // D
  int64_t heads = 6;              // H
  double density = 0.25;          // ATTN_KEEP_RATE: budget = ceil(density * N)
  int64_t reduce_n = 6;           // REDUCE_N_FACTOR: Kb = N // reduce_n
  int64_t reduce_c = 2;           // REDUCE_C_FACTOR: c = hd / reduce_c
  double basis_threshold = 2e-2;  // BASIS_THRESHOLD (sparse path)
  int64_t coef_topk = 8;          // BASIS_COEF.TOPK (sparse path)
  bool qkv_bias = true;
};

enum class SparsifinerStage { reconstruction, sparse };

// The connectivity predictor of one layer (the authors' MaskPredictor).
// Parameters: proj_c_q, proj_c_k Linear(hd, c); proj_n, proj_back_n [N, Kb];
// all trunc_normal(0.02) with zero biases. With the DeiT-S sizes (hd 64,
// N 197, REDUCE_C 2, REDUCE_N 6): 2 (64*32 + 32) + 2 * 197 * 32 = 16,768.
class MaskPredictor : public Module {
 public:
  MaskPredictor(int64_t head_dim, int64_t heads, int64_t tokens, double density, int64_t reduce_n, int64_t reduce_c,
                double basis_threshold = 2e-2, int64_t coef_topk = 8);

  struct Output {
    Tensor approx_attn;  // [B, H, N-1, N]
    Tensor indices;      // [B, H, N-1, budget] int64, ordered by score; undefined when not asked for
  };
  // reconstruction = true: the training path of the reconstruction stage,
  // differentiable in the predictor's parameters: raw basis proj_back_n^T,
  // all coefficients, no mask. Otherwise the mask path, run without
  // recording (the mask is detached in the authors' code and the predictor
  // is frozen): basis Threshold(2e-2)(|proj_back_n^T|), the top-8
  // coefficients of each row, and the top-`budget` keys of every row of
  // approx_attn. key_mask [B, N] (nonzero = real token) keeps padding keys
  // out of the top-k while enough real keys remain.
  Output forward(const Tensor& q, const Tensor& k, const Tensor& key_mask = Tensor(), bool reconstruction = false) const;
  std::string type_name() const override { return "MaskPredictor"; }

  // The {0,1} [B, H, N, N] connectivity mask of `indices` with the first
  // dense_rows rows all ones: the authors' attn_mask (for tests and plots).
  static Tensor dense_mask(const Tensor& indices, int64_t tokens, int64_t dense_rows = 1);

  int64_t heads, head_dim, tokens, reduced_c, reduced_n, budget, coef_topk;
  double basis_threshold;
  std::shared_ptr<Linear> proj_c_q, proj_c_k;
  Tensor proj_n, proj_back_n;
};

// Sparsifiner multi-head self-attention; a token mixer.
class SparsifinerAttention : public Mixer {
 public:
  explicit SparsifinerAttention(const SparsifinerOptions& options);
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor()) const override;
  std::string type_name() const override { return "SparsifinerAttention"; }

  SparsifinerOptions options;
  SparsifinerStage stage = SparsifinerStage::sparse;
  // Keep the last forward's approx_attn / dense attention / kept keys for the
  // losses and for inspection. The reconstruction stage in training always
  // records (its loss needs them).
  bool record = false;
  struct Record {
    Tensor approx_attn;  // [B, H, N-1, N]; differentiable in the reconstruction stage
    Tensor dense_attn;   // [B, H, N, N], detached: the unmasked softmax (reconstruction stage only)
    Tensor indices;      // [B, H, N-1, budget] (sparse path only)
  };
  const Record& last() const { return last_; }
  void clear_record() const { last_ = Record{}; }

  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<MaskPredictor> predictor;

 private:
  mutable Record last_;
};

// Pre-LN transformer block with Sparsifiner attention:
//   x = x + attn(LN1 x);  x = x + MLP(LN2 x)     (LN eps 1e-6, GELU MLP)
class SparsifinerBlock : public Module {
 public:
  SparsifinerBlock(const SparsifinerOptions& attention, double mlp_ratio, double ln_eps = 1e-6);
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor()) const;
  std::string type_name() const override { return "SparsifinerBlock"; }
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<SparsifinerAttention> attn;
  std::shared_ptr<MLP> mlp;
};

struct SparsifinerViTConfig {
  int64_t channels = 3, image = 224, patch = 16, dim = 384, layers = 12, heads = 6, classes = 1000;
  double mlp_ratio = 4.0;
  double ln_eps = 1e-6;
  SparsifinerOptions attention;  // tokens, dim and heads are filled in from the above
};

// The authors' Sparsifiner class with DeiT's layout (no token pruning, no
// distillation token). Initialised as its _init_weights: trunc_normal(0.02)
// Linear weights with zero biases, trunc_normal(0.02) cls_token / pos_embed;
// the patch embedding keeps the PyTorch Conv2d default (it is not a Linear
// there).
class SparsifinerViT : public Network {
 public:
  explicit SparsifinerViT(const SparsifinerViTConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  // The final-normed tokens [B, N, D] (row 0 is CLS): the authors'
  // `features` (rows 1..) feed the token-distillation loss.
  Tensor forward_features(const Tensor& images) const;
  std::string type_name() const override { return "SparsifinerViT"; }
  SparsifinerViTConfig config;
  int64_t tokens;
  std::shared_ptr<PatchEmbedding> embed;
  Tensor cls_token, pos_embed;  // [1, 1, D], [1, N, D]
  std::vector<std::shared_ptr<SparsifinerBlock>> blocks;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> head;
};

// trunc_normal(std) with timm's absolute cut at [-2, 2] (values outside are
// redrawn), from the init generator.
Tensor trunc_normal(const Shape& shape, double std);

// ---- stages ------------------------------------------------------------------------------
// The Sparsifiner attention layers of a network, in depth order: the blocks
// of a SparsifinerViT, or the "sparsifiner" mixers of a ViT / LRATransformer.
std::vector<SparsifinerAttention*> sparsifiner_layers(const Module& net);
// Every predictor parameter / every other parameter.
std::vector<std::pair<std::string, Tensor>> predictor_parameters(const Module& net);
std::vector<std::pair<std::string, Tensor>> backbone_parameters(const Module& net);
// Sets every layer's stage and freezes the other group: reconstruction ->
// only predictor parameters require grad; sparse -> only the backbone does.
// Error when the network has no Sparsifiner layer.
void set_sparsifiner_stage(Module& net, SparsifinerStage stage);
// Turns recording of the last forward's attention on or off in every layer.
void set_sparsifiner_record(Module& net, bool on);

// ---- losses (src/losses.py), composed from existing ops -------------------------------
// sum_l MSE_sum(approx_l, target_l[..., 1:, :]) / L * weight: approx_l
// [B, H, N-1, N] from each layer, target_l the full [B, H, N, N] attention of
// the teacher (or the model's own unmasked attention: self-distillation).
Tensor attention_reconstruction_loss(const std::vector<Tensor>& approx_attn, const std::vector<Tensor>& target_attn,
                                     double weight = 0.01);
// The same over the layers' last records (approx against own dense
// attention); needs a forward in the reconstruction stage in training mode.
Tensor self_reconstruction_loss(const Module& net, double weight = 0.01);
// KL(teacher || student) = sum p_t (log p_t - log p_s) / B over logits
// [B, classes]: F.kl_div(log_softmax(s), log_softmax(t), 'batchmean',
// log_target=True). Gradients flow into whichever input requires them.
Tensor distillation_kl(const Tensor& student_logits, const Tensor& teacher_logits);
// MSE (mean) between the student's and the teacher's final-normed patch
// tokens [B, N-1, D].
Tensor token_distillation_loss(const Tensor& student_tokens, const Tensor& teacher_tokens);
// The second-stage objective of the default run:
// CE(label_smoothing) + kd_weight KD + token_weight token-MSE; the teacher
// terms are skipped when the teacher tensors are undefined (no teacher here).
Tensor sparsifiner_classification_loss(const Tensor& logits, const Tensor& labels, double label_smoothing = 0.1,
                                       const Tensor& teacher_logits = Tensor(), double kd_weight = 0.5,
                                       const Tensor& student_tokens = Tensor(),
                                       const Tensor& teacher_tokens = Tensor(), double token_weight = 0.5);

// ---- the reconstruction stage as a training hook ---------------------------------------
// Stage 1 of the schedule: AdamW over the predictor parameters only (no decay
// on 1-d ones), warm-up then cosine lr from lr to final_lr (the authors'
// 3e-4 -> 2e-4), loss = weight * self-reconstruction. Construction switches
// the network to the reconstruction stage; finish() (or the destructor)
// switches it to the sparse stage, where the backbone trains with the
// predictors frozen. Data loading stays with the caller (models/ does not
// depend on data/).
struct ReconstructionStageOptions {
  int64_t steps = 0;
  double lr = 3e-4, final_lr = 2e-4, weight_decay = 0.05, loss_weight = 0.01;
  int64_t warmup = 0;
};

class SparsifinerReconstructionStage {
 public:
  SparsifinerReconstructionStage(Network& net, const ReconstructionStageOptions& options);
  ~SparsifinerReconstructionStage();
  SparsifinerReconstructionStage(const SparsifinerReconstructionStage&) = delete;
  SparsifinerReconstructionStage& operator=(const SparsifinerReconstructionStage&) = delete;
  // One optimizer step on a batch (inputs already on the model's device);
  // returns the loss.
  double step(const Tensor& x, const Tensor& x2 = Tensor());
  void finish();
  int64_t steps_done() const { return step_; }

 private:
  Network& net_;
  ReconstructionStageOptions options_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Schedule> schedule_;
  int64_t step_ = 0;
  bool finished_ = false;
};

}  // namespace dimix
