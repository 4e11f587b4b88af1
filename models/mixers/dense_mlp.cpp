// dense-mlp: the MLP-Mixer's dense mixer, Linear(n, r n) -> GELU ->
// Linear(r n, n) along the mixed axis (PAPERS.md 1.4, MixerBlock).
// Token mixing (axis 1) transposes to put tokens last, as the authors' swap.
#include "models/layers.h"
#include "models/mixer.h"
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
    return transpose(mlp_->forward(transpose(x, 1, 2)), 1, 2);
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
