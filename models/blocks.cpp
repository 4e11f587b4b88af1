// The blocks of the paper's networks (see blocks.h).
#include "models/blocks.h"

#include "ops/elementwise.h"
#include "ops/patches.h"
#include "ops/shape.h"

namespace dimix {

MixerBlock::MixerBlock(int64_t tokens, int64_t channels, const std::string& token_mixer,
                       const std::string& channel_mixer, double expansion, bool capped) {
  norm0 = register_module("norm0", std::make_shared<LayerNorm>(channels));
  MixerSpec ts;
  ts.n = tokens;
  ts.axis = 1;
  ts.features = channels;
  ts.expansion = expansion;
  ts.capped_strides = capped;
  token_mix = register_module("token_mix", make_mixer(token_mixer, ts));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(channels));
  MixerSpec cs = ts;
  cs.n = channels;
  cs.axis = 2;
  channel_mix = register_module("channel_mix", make_mixer(channel_mixer, cs));
}

Tensor MixerBlock::forward(const Tensor& x) const {
  const Tensor y = token_mix->forward_residual(x, *norm0);  // x + token_mix(norm0(x))
  return channel_mix->forward_residual(y, *norm1);
}

PatchMixerBlock::PatchMixerBlock(int64_t channels, int64_t p, double expansion) : patch(p) {
  const int64_t d = channels * p * p;
  norm = register_module("norm", std::make_shared<LayerNorm>(d));
  mlp = register_module("mlp", std::make_shared<MLP>(d, static_cast<int64_t>(d * expansion)));
}

Tensor PatchMixerBlock::forward(const Tensor& x) const {
  const int64_t H = x.size(2), W = x.size(3);
  const Tensor cols = transpose(unfold_patches(x, patch), 1, 2);  // [B, L, C p^2]
  const Tensor y = transpose(mlp->forward(norm->forward(cols)), 1, 2);
  return x + fold_patches(y, H, W, patch);
}

TransformerBlock::TransformerBlock(const TransformerBlockSpec& s) : spec(s) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(s.dim));
  MixerSpec ms;
  ms.n = s.tokens;
  ms.axis = 1;
  ms.features = s.dim;
  ms.heads = s.heads;
  ms.block = s.block;
  ms.layer_index = s.layer_index;
  ms.attn_dropout = s.attn_dropout;
  mix = register_module("mix", make_mixer(s.mixer, ms));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(s.dim));
  mlp = register_module("mlp", std::make_shared<MLP>(s.dim, static_cast<int64_t>(s.dim * s.mlp_ratio)));
  drop = register_module("drop", std::make_shared<Dropout>(s.dropout));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& key_mask) const {
  if (spec.pre_norm) {
    const Tensor y = x + drop->forward(mix->forward(norm1->forward(x), key_mask));
    return y + drop->forward(mlp->forward(norm2->forward(y)));
  }
  const Tensor y = norm1->forward(x + mix->forward(x, key_mask));
  return norm2->forward(y + mlp->forward(y));
}

}  // namespace dimix
