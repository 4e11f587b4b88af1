// attention: dense multi-head self-attention over all S tokens, the baseline
// of the Table III ViTs and the LRA transformer (PAPERS.md 1.5, 1.6).
#include "models/attention.h"
#include "models/mixer.h"

namespace dimix {
namespace {

class DenseAttentionMixer : public Mixer {
 public:
  explicit DenseAttentionMixer(const MixerSpec& s) {
    DIMIX_CHECK(s.axis == 1, "attention: mixes tokens (axis 1), got axis ", s.axis);
    attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(s.features, s.heads, 0, 1, s.attn_dropout));
  }
  Tensor forward(const Tensor& x, const Tensor& key_mask) const override { return attn_->forward(x, key_mask); }
  std::string type_name() const override { return "Attention"; }

 private:
  std::shared_ptr<MultiHeadAttention> attn_;
};

}  // namespace

DIMIX_REGISTER_MIXER("attention", "dense multi-head self-attention over all tokens",
                     [](const MixerSpec& s) { return std::make_shared<DenseAttentionMixer>(s); });

}  // namespace dimix
