// The blocks the paper's networks stack.
//
// MixerBlock (MLP-Mixer, PAPERS.md 1.4): x [B, P, C]
//   x = x + token_mixer(LN0(x))      (mixes the P axis)
//   x = x + channel_mixer(LN1(x))    (mixes the C axis)
// PatchMixerBlock (Patch-Only MLP-Mixer): images [B, C, H, W]
//   y = fold(MLP(LN(unfold_p(x)^T))^T),  x = x + y
// TransformerBlock: x [B, S, D] with a token mixer (attention or butterfly
// attention) and an MLP:
//   post-LN (Table III ViT): x = LN1(x + mix(x)); x = LN2(x + MLP(x))
//   pre-LN (LRA):            x = x + drop(mix(LN1 x)); x = x + MLP(LN2 x)
#pragma once
#include <memory>
#include <string>

#include "models/layers.h"
#include "models/mixer.h"

namespace dimix {

class MixerBlock : public Module {
 public:
  MixerBlock(int64_t tokens, int64_t channels, const std::string& token_mixer, const std::string& channel_mixer,
             double expansion, bool capped_strides = true);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "MixerBlock"; }
  std::shared_ptr<LayerNorm> norm0, norm1;
  std::shared_ptr<Mixer> token_mix, channel_mix;
};

class PatchMixerBlock : public Module {
 public:
  PatchMixerBlock(int64_t channels, int64_t patch, double expansion = 2.0);
  Tensor forward(const Tensor& images) const;
  std::string type_name() const override { return "PatchMixerBlock"; }
  int64_t patch;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<MLP> mlp;
};

struct TransformerBlockSpec {
  int64_t dim = 64, heads = 8, tokens = 64;
  double mlp_ratio = 2.0;
  std::string mixer = "attention";  // a token mixer from the registry
  int64_t block = 0;                // butterfly block (0 = default for `tokens`)
  int64_t layer_index = 0;
  bool pre_norm = false;            // false: the ViT's post-LN; true: LRA's pre-LN
  double dropout = 0.0, attn_dropout = 0.0;
};

class TransformerBlock : public Module {
 public:
  explicit TransformerBlock(const TransformerBlockSpec& spec);
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor()) const;
  std::string type_name() const override { return "TransformerBlock"; }
  TransformerBlockSpec spec;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Mixer> mix;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;
};

}  // namespace dimix
