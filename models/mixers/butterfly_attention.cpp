// butterfly-attention: Butterfly Attention (Algorithm 2, PAPERS.md 1.5-1.6).
//
// The authors permute the tokens of layer i with the stride of butterfly
// level (i mod L), run a whole transformer block on each group of `block`
// consecutive permuted tokens, and un-permute. Every part of a transformer
// block except attention acts on one token at a time, so it commutes with the
// permutation: the block's output equals the same block whose attention runs
// within the strided groups. That is what this mixer is: multi-head attention
// in groups of `block` tokens spaced stride_i apart (ops/block_attention.h),
// used as the token mixer of an otherwise ordinary block. The padding mask is
// grouped the same way (LRA). Parameters equal the dense attention's.
#include "models/attention.h"
#include "models/mixer.h"
#include "ops/block_linear.h"

namespace dimix {
namespace {

class ButterflyAttentionMixer : public Mixer {
 public:
  explicit ButterflyAttentionMixer(const MixerSpec& s) {
    DIMIX_CHECK(s.axis == 1, "butterfly-attention: mixes tokens (axis 1), got axis ", s.axis);
    const int64_t block = s.block > 0 ? s.block : default_block(s.n);
    DIMIX_CHECK(s.n % block == 0, "butterfly-attention: block ", block, " must divide the sequence length ", s.n);
    const std::vector<int64_t> strides = butterfly_strides(s.n, block, true);
    const int64_t stride = strides[s.layer_index % static_cast<int64_t>(strides.size())];
    attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(s.features, s.heads, block, stride, s.attn_dropout));
  }
  Tensor forward(const Tensor& x, const Tensor& key_mask) const override { return attn_->forward(x, key_mask); }
  std::string type_name() const override { return "ButterflyAttention"; }

 private:
  std::shared_ptr<MultiHeadAttention> attn_;
};

}  // namespace

DIMIX_REGISTER_MIXER("butterfly-attention",
                     "Butterfly Attention (Algorithm 2): attention within groups of b tokens, stride cycling by layer",
                     [](const MixerSpec& s) { return std::make_shared<ButterflyAttentionMixer>(s); });

}  // namespace dimix
