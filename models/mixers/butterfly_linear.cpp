// butterfly-linear: the Table II "sparse_linear" mixer MLP of the Dimension
// Mixer code (PAPERS.md 1.2 b). It needs n = b^2 and hidden expansion h:
//   sparse layer 1 (n -> n h): b groups of b -> b h (stride 1, no bias),
//                              then b h groups of b -> b gathered with stride b h (bias)
//   ELU
//   sparse layer 2 (n h -> n): b h groups of b -> b (stride 1, no bias),
//                              then b groups of b h -> b gathered with stride b (bias)
// Each sparse layer is a Monarch-style product of two block-diagonal factors
// with the stride permutation between them folded into indexing. As in the
// authors' code the output stays in the second factor's group order.
// Parameters: 4 h b^3 + h b^2 + b^2 (4 b^3 + 2 b^2 at h = 1).
// With ELU (its default) or exact GELU the four products are one block_chain
// op (ops/block_chain.h), which runs them on one slab of x at a time in
// cache (in a mixer block with the block's LayerNorm and residual add:
// forward_residual); other activations compose four block_linear calls.
#include "models/layers.h"
#include "models/mixer.h"
#include "ops/block_chain.h"

namespace dimix {
namespace {

class ButterflyLinearMixer : public Mixer {
 public:
  explicit ButterflyLinearMixer(const MixerSpec& s)
      : axis_(s.axis),
        act_name_(s.activation.empty() ? "elu" : s.activation),
        act_(activation(act_name_)) {
    DIMIX_CHECK(s.axis == 1 || s.axis == 2, "butterfly-linear: axis must be 1 or 2, got ", s.axis);
    b_ = s.block > 0 ? s.block : default_block(s.n);
    DIMIX_CHECK(b_ * b_ == s.n, "butterfly-linear: needs n = b^2, got n = ", s.n, " with b = ", b_);
    bh_ = static_cast<int64_t>(b_ * s.expansion);
    l1a_ = register_module("layer1.factor1", std::make_shared<BlockLinear>(b_, b_, bh_, false));
    l1b_ = register_module("layer1.factor2", std::make_shared<BlockLinear>(bh_, b_, b_, true));
    l2a_ = register_module("layer2.factor1", std::make_shared<BlockLinear>(bh_, b_, b_, false));
    l2b_ = register_module("layer2.factor2", std::make_shared<BlockLinear>(b_, bh_, b_, true));
  }
  Tensor forward(const Tensor& x, const Tensor&) const override {
    if (fused()) return block_chain(x, chain(), axis_);
    Tensor y = l1a_->forward(x, axis_, 1, 1);
    y = act_(l1b_->forward(y, axis_, bh_, 1));
    y = l2a_->forward(y, axis_, 1, 1);
    return l2b_->forward(y, axis_, b_, 1);
  }
  // With the fused op, the norm and the residual add run in its pass.
  Tensor forward_residual(const Tensor& x, const LayerNorm& norm, const Tensor& key_mask) const override {
    if (!fused()) return Mixer::forward_residual(x, norm, key_mask);
    return block_chain(x, chain(), axis_, {true, norm.weight, norm.bias, norm.eps, true});
  }
  std::string type_name() const override { return "ButterflyLinear"; }

 private:
  bool fused() const { return act_name_ == "elu" || act_name_ == "gelu"; }
  std::vector<BlockChainStep> chain() const {
    return {{l1a_->weight, l1a_->bias, 1, 1, ""},
            {l1b_->weight, l1b_->bias, bh_, 1, act_name_},
            {l2a_->weight, l2a_->bias, 1, 1, ""},
            {l2b_->weight, l2b_->bias, b_, 1, ""}};
  }
  int64_t axis_, b_ = 0, bh_ = 0;
  std::string act_name_;
  Activation act_;
  std::shared_ptr<BlockLinear> l1a_, l1b_, l2a_, l2b_;
};

}  // namespace

DIMIX_REGISTER_MIXER("butterfly-linear",
                     "Butterfly-Linear (Table II sparse_linear): two Monarch-style sparse layers with ELU, n = b^2",
                     [](const MixerSpec& s) { return std::make_shared<ButterflyLinearMixer>(s); });

}  // namespace dimix
