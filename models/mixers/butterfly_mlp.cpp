// butterfly-mlp: the Butterfly MLP of the Dimension Mixer paper (Algorithm 1,
// PAPERS.md 1.3). For each of L = ceil(log_b n) levels with stride g_i
// (ops/block_linear.h's butterfly_strides), the n positions of the mixed axis
// are split into n/b groups of b positions spaced g_i apart and each group
// goes through its own MLP b -> h b -> b (GELU between, no residual):
//   level i: y = BlockLinear2( GELU( BlockLinear1(x, in stride g_i, out 1) ), in 1, out g_i )
// The hidden activations live in group-major order (stride 1) and the second
// product scatters back with stride g_i, so the permute / un-permute of the
// authors' code never materialise. With the default (exact) GELU all levels
// are one block_mlp op (ops/block_mlp.h), which runs them on one slab of x
// at a time in cache; other activations compose two block_linear calls
// around the activation per level. In a mixer block the fused op also takes
// the block's LayerNorm and residual add (forward_residual).
#include "models/layers.h"
#include "models/mixer.h"
#include "ops/block_linear.h"
#include "ops/block_mlp.h"

namespace dimix {
namespace {

class ButterflyMLPMixer : public Mixer {
 public:
  explicit ButterflyMLPMixer(const MixerSpec& s)
      : axis_(s.axis),
        act_(activation(s.activation.empty() ? "gelu" : s.activation)),
        fused_(s.activation.empty() || s.activation == "gelu") {
    DIMIX_CHECK(s.axis == 1 || s.axis == 2, "butterfly-mlp: axis must be 1 (tokens) or 2 (features), got ", s.axis);
    const int64_t b = s.block > 0 ? s.block : default_block(s.n);
    DIMIX_CHECK(b >= 2 && s.n % b == 0, "butterfly-mlp: block size ", b, " must divide the mixed length ", s.n);
    strides_ = butterfly_strides(s.n, b, s.capped_strides);
    const int64_t hidden = static_cast<int64_t>(b * s.expansion);
    for (size_t i = 0; i < strides_.size(); ++i) {
      const std::string p = "levels." + std::to_string(i) + ".";
      fc1_.push_back(register_module(p + "fc1", std::make_shared<BlockLinear>(s.n / b, b, hidden)));
      fc2_.push_back(register_module(p + "fc2", std::make_shared<BlockLinear>(s.n / b, hidden, b)));
    }
  }
  Tensor forward(const Tensor& x, const Tensor&) const override {
    if (fused_) return block_mlp(x, levels(), axis_);
    Tensor y = x;
    for (size_t i = 0; i < strides_.size(); ++i) {
      const Tensor h = act_(fc1_[i]->forward(y, axis_, strides_[i], 1));
      y = fc2_[i]->forward(h, axis_, 1, strides_[i]);
    }
    return y;
  }
  // With the fused op, the norm and the residual add run in its pass.
  Tensor forward_residual(const Tensor& x, const LayerNorm& norm, const Tensor& key_mask) const override {
    if (!fused_) return Mixer::forward_residual(x, norm, key_mask);
    return block_mlp(x, levels(), axis_, {true, norm.weight, norm.bias, norm.eps, true});
  }
  std::string type_name() const override { return "ButterflyMLP"; }

 private:
  std::vector<BlockMlpLevel> levels() const {
    std::vector<BlockMlpLevel> out;
    for (size_t i = 0; i < strides_.size(); ++i)
      out.push_back({fc1_[i]->weight, fc1_[i]->bias, fc2_[i]->weight, fc2_[i]->bias, strides_[i]});
    return out;
  }
  int64_t axis_;
  Activation act_;
  bool fused_;  // exact GELU: one block_mlp op for all levels
  std::vector<int64_t> strides_;
  std::vector<std::shared_ptr<BlockLinear>> fc1_, fc2_;
};

}  // namespace

DIMIX_REGISTER_MIXER("butterfly-mlp", "Butterfly MLP (Algorithm 1): per-level block MLPs b -> h b -> b over strided groups",
                     [](const MixerSpec& s) { return std::make_shared<ButterflyMLPMixer>(s); });

}  // namespace dimix
