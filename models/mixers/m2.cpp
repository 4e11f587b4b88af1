// m2: the Monarch Mixer sequence mixer of M2-BERT (PAPERS.md 2.3) as a token
// mixer of x [B, S, D]: in_linear D -> 3D, causal short depthwise conv,
// multiplicative gating around a bidirectional implicit (Hyena) long
// convolution by FFT, a second long convolution of the input as the
// residual, out_linear D -> D (models/monarch.h, M2SequenceMixer). Filter
// MLP width 32, positional embedding of 5 (t and two bands), Sin frequency
// 10: M2-BERT-base's settings scaled to small widths (order 128 at D = 768).
// The key mask is not used: padding is the caller's to zero (the LRA models
// do, before every layer).
#include "models/mixer.h"
#include "models/monarch.h"

namespace dimix {
namespace {

class M2Mixer : public Mixer {
 public:
  explicit M2Mixer(const MixerSpec& s) {
    DIMIX_CHECK(s.axis == 1, "m2: mixes tokens (axis 1), got axis ", s.axis);
    DIMIX_CHECK(s.features > 0 && s.n > 0, "m2: needs the features D and the sequence length, got D = ", s.features,
                ", n = ", s.n);
    M2MixerConfig c;
    c.d = s.features;
    c.l_max = s.n;
    mixer_ = register_module("mixer", std::make_shared<M2SequenceMixer>(c));
  }
  Tensor forward(const Tensor& x, const Tensor&) const override { return mixer_->forward(x); }
  std::string type_name() const override { return "M2"; }

 private:
  std::shared_ptr<M2SequenceMixer> mixer_;
};

}  // namespace

DIMIX_REGISTER_MIXER("m2", "Monarch Mixer sequence mixer: gated short conv + bidirectional Hyena long conv by FFT (tokens)",
                     [](const MixerSpec& s) { return std::make_shared<M2Mixer>(s); });

}  // namespace dimix
