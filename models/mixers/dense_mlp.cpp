// dense-mlp: the MLP-Mixer's dense mixer, Linear(n, r n) -> GELU ->
// Linear(r n, n) along the mixed axis (PAPERS.md 1.4, MixerBlock).
// Token mixing (axis 1) applies the same Linears along dim 1 in place.
#include "models/layers.h"
#include "models/mixer.h"
#include "ops/block_linear.h"
#include "ops/shape.h"

namespace dimix {
namespace {

class DenseMLPMixer : public Mixer {
 public:
  explicit DenseMLPMixer(const MixerSpec& s) : axis_(s.axis) {
    DIMIX_CHECK(s.axis == 1 || s.axis == 2, "dense-mlp: axis must be 1 (tokens) or 2 (features), got ", s.axis);
    mlp_ = register_module("mlp", std::make_shared<MLP>(s.n, static_cast<int64_t>(s.n * s.expansion), s.activation.empty() ? "gelu" : s.activation));
  }
  Tensor forward(const Tensor& x, const Tensor&) const override {
    if (axis_ == 2) return mlp_->forward(x);
    // Tokens are mixed where they lie: a Linear along dim 1 is block_linear
    // with a single group of all n tokens (the Linears' own weights viewed
    // as [1, out, in]), which reads [B, n, C] in place instead of copying
    // it to [B, C, n] and back, as the authors' swap does.
    const Linear& fc1 = *mlp_->fc1;
    const Linear& fc2 = *mlp_->fc2;
    const int64_t n = fc1.in_features, hidden = fc1.out_features;
    Tensor h = block_linear(x, reshape(fc1.weight, {1, hidden, n}), reshape(fc1.bias, {1, hidden}), 1, 1, 1);
    h = mlp_->act(h);
    return block_linear(h, reshape(fc2.weight, {1, n, hidden}), reshape(fc2.bias, {1, n}), 1, 1, 1);
  }
  std::string type_name() const override { return "DenseMLP"; }

 private:
  int64_t axis_;
  std::shared_ptr<MLP> mlp_;
};

}  // namespace

DIMIX_REGISTER_MIXER("dense-mlp", "dense MLP n -> r n -> n along the axis (MLP-Mixer)",
                     [](const MixerSpec& s) { return std::make_shared<DenseMLPMixer>(s); });

}  // namespace dimix
