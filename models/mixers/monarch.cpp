// monarch: an MLP along the mixed axis whose two linear maps are Monarch
// layers (fly's MonarchLinear, PAPERS.md 2.1) instead of dense ones:
//   y = MonarchLinear(h n -> n)( act( MonarchLinear(n -> h n)(x) ) )
// with nb blocks (the mixer's block size, default round(sqrt(n)) for square
// n, as butterfly-mlp's). Like butterfly-mlp, a stack of structured products
// instead of a dense n x n map, but in two levels: every output already
// depends on every input after one Monarch layer (block-diagonal, a stride
// permutation, block-diagonal) when the block count is about sqrt(n), as by
// default, at 2 n^1.5 weights for n -> n.
#include "models/mixer.h"
#include "models/monarch.h"

namespace dimix {
namespace {

class MonarchMLPMixer : public Mixer {
 public:
  explicit MonarchMLPMixer(const MixerSpec& s) : axis_(s.axis), act_(activation(s.activation.empty() ? "gelu" : s.activation)) {
    DIMIX_CHECK(s.axis == 1 || s.axis == 2, "monarch: axis must be 1 (tokens) or 2 (features), got ", s.axis);
    DIMIX_CHECK(s.n >= 1, "monarch: expected a mixed length n >= 1, got ", s.n);
    const int64_t nb = s.block > 0 ? s.block : default_block(s.n);
    const int64_t hidden = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(s.n) * s.expansion));
    DIMIX_CHECK(nb <= s.n && nb <= hidden, "monarch: ", nb, " blocks do not fit the mixed length ", s.n,
                " (hidden ", hidden, ")");
    fc1_ = register_module("fc1", std::make_shared<MonarchLinear>(s.n, hidden, nb));
    fc2_ = register_module("fc2", std::make_shared<MonarchLinear>(hidden, s.n, nb));
  }
  Tensor forward(const Tensor& x, const Tensor&) const override {
    return fc2_->forward(act_(fc1_->forward(x, axis_)), axis_);
  }
  std::string type_name() const override { return "MonarchMLP"; }

 private:
  int64_t axis_;
  Activation act_;
  std::shared_ptr<MonarchLinear> fc1_, fc2_;
};

}  // namespace

DIMIX_REGISTER_MIXER("monarch", "Monarch MLP: MonarchLinear n -> h n -> n (two block-diagonal factors each) along the axis",
                     [](const MixerSpec& s) { return std::make_shared<MonarchMLPMixer>(s); });

}  // namespace dimix
