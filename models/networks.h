// The papers' networks, configured by name (make_network), with parameter
// counts equal to the authors' code (PAPERS.md 1.4-1.8; tests assert them).
//
// Image networks take float images [N, C, H, W] and return logits [N, classes].
// LRA networks take int64 tokens [N, S] (and a second document for retrieval)
// and build the padding mask from token != 0.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/blocks.h"

namespace dimix {

class Network : public Module {
 public:
  // x: images [N, C, H, W] or tokens [N, S]; x2: the second document (retrieval).
  virtual Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const = 0;
};

// MLP-Mixer of Tables II and V: (resize) -> patch embedding -> blocks ->
// flatten -> Linear(P C, classes). No final norm, no pooling (authors' head).
struct MlpMixerConfig {
  int64_t channels = 3, image = 32, resize = 0;  // resize 0: none
  int64_t patch = 4;
  double hidden_expansion = 2.53;  // C = int(channels * patch^2 * hidden_expansion)
  int64_t hidden = 0;              // overrides hidden_expansion when > 0
  int64_t layers = 7, classes = 10;
  std::string token_mixer = "dense-mlp", channel_mixer = "dense-mlp";
  double mlp_expansion = 1.0;
  bool capped_strides = true;
};

class MlpMixer : public Network {
 public:
  explicit MlpMixer(const MlpMixerConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  std::string type_name() const override { return "MlpMixer"; }
  MlpMixerConfig config;
  int64_t tokens, hidden;
  std::shared_ptr<UpsampleBilinear> resize;
  std::shared_ptr<PatchEmbedding> embed;
  std::vector<std::shared_ptr<MixerBlock>> blocks;
  std::shared_ptr<Linear> head;
};

// Patch-Only MLP-Mixer (Table V): resize -> layers x (PatchMixerBlock per
// patch size) -> flatten -> Linear(C H W, classes).
struct PatchOnlyConfig {
  int64_t channels = 3, image = 32, resize = 35;
  std::vector<int64_t> patches = {5, 7};
  int64_t layers = 7, classes = 10;
};

class PatchOnlyMixer : public Network {
 public:
  explicit PatchOnlyMixer(const PatchOnlyConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  std::string type_name() const override { return "PatchOnlyMixer"; }
  PatchOnlyConfig config;
  std::shared_ptr<UpsampleBilinear> resize;
  std::vector<std::shared_ptr<PatchMixerBlock>> blocks;
  std::shared_ptr<Linear> head;
};

// The Table III ViT: patch embedding (no position encoding), post-LN blocks
// with dense or butterfly attention, flatten head.
struct ViTConfig {
  int64_t channels = 3, image = 32, patch = 4, dim = 128, heads = 8, layers = 4, classes = 10;
  double mlp_ratio = 2.0;
  std::string mixer = "attention";  // or butterfly-attention
  int64_t block = 0;                // butterfly block (0: 2^ceil(log2 sqrt(P)))
};

class ViT : public Network {
 public:
  explicit ViT(const ViTConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  std::string type_name() const override { return "ViT"; }
  ViTConfig config;
  int64_t tokens;
  std::shared_ptr<PatchEmbedding> embed;
  std::vector<std::shared_ptr<TransformerBlock>> blocks;
  std::shared_ptr<Linear> head;
};

// The LRA transformer (Nystromformer layout, PAPERS.md 1.6): word + learned
// position embeddings (normal 0.02), pre-LN blocks, final LN, masked mean
// pooling, head Linear(D, hidden) -> ReLU -> Linear(hidden, classes); the
// retrieval task uses the dual head on [X0, X1, X0*X1, X0-X1].
struct LRAConfig {
  int64_t vocab = 512, max_len = 1024, dim = 64, hidden = 128, heads = 2, layers = 2, classes = 10;
  bool dual = false;                 // retrieval
  std::string mixer = "attention";   // or butterfly-attention
  int64_t radix = 0;                 // butterfly block (0: default)
  double dropout = 0.0, attn_dropout = 0.1;
};

class LRATransformer : public Network {
 public:
  explicit LRATransformer(const LRAConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  // The pooled [N, D] representation of one document.
  Tensor encode(const Tensor& tokens) const;
  std::string type_name() const override { return "LRATransformer"; }
  LRAConfig config;
  std::shared_ptr<Embedding> word, position;
  std::shared_ptr<Dropout> drop;
  std::vector<std::shared_ptr<TransformerBlock>> blocks;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<MLP> head;
};

// What a named network needs to know about its data.
struct NetworkInput {
  int64_t channels = 3, image = 32, classes = 10;
};

// Builds a named configuration (see network_names()); `mixer` (optional)
// replaces the configuration's mixer. Error listing known names otherwise.
std::shared_ptr<Network> make_network(const std::string& name, const NetworkInput& input,
                                      const std::string& mixer = "");
// (name, description) of every named configuration.
std::vector<std::pair<std::string, std::string>> network_names();

}  // namespace dimix
