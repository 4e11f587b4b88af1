// The tiny butterfly MLP-Mixer the training-loop tests run: 1x8x8 images,
// patch 2 (16 tokens), 8 channels, 2 blocks, 3 classes. Seed models/init.h
// first; the weights are a function of that seed.
#pragma once
#include <memory>

#include "models/networks.h"

namespace dimix::testing {

inline std::shared_ptr<MlpMixer> tiny_mixer() {
  MlpMixerConfig c;
  c.channels = 1;
  c.image = 8;
  c.patch = 2;
  c.hidden = 8;
  c.layers = 2;
  c.classes = 3;
  c.mlp_expansion = 2;
  c.token_mixer = c.channel_mixer = "butterfly-mlp";
  return std::make_shared<MlpMixer>(c);
}

}  // namespace dimix::testing
