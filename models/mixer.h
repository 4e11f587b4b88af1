// Mixers: the layers that mix one axis of a token table, and the registry
// that lets binaries pick one by name (--mixer butterfly-mlp).
//
// Shape contract: every mixer maps x [B, S, D] to [B, S, D]. MLP-style mixers
// mix the axis given by MixerSpec::axis (1 = tokens S, 2 = features D) of
// length n; attention mixers mix tokens (axis 1) with D features. An optional
// key mask [B, S] (nonzero = real token) is honoured by attention mixers.
//
// Adding a mixer: one file in models/mixers/ with the class and one
// DIMIX_REGISTER_MIXER line (see dense_mlp.cpp for the smallest example).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"

namespace dimix {

struct MixerSpec {
  int64_t n = 0;            // length of the mixed axis
  int64_t axis = 2;         // 1: tokens, 2: features
  int64_t features = 0;     // D, for attention mixers
  double expansion = 1.0;   // hidden ratio of MLP mixers
  int64_t block = 0;        // butterfly block size; 0 = the mixer's default
  bool capped_strides = true;  // PAPERS.md 1.1 stride rule (false: Table II Butterfly-MLP)
  int64_t heads = 1;        // attention heads
  int64_t layer_index = 0;  // which butterfly level an attention layer uses
  double attn_dropout = 0;  // dropout on attention probabilities
  std::string activation;   // empty: the mixer's own default (GELU; ELU for butterfly-linear)
};

class LayerNorm;

class Mixer : public Module {
 public:
  virtual Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor()) const = 0;
  // x + forward(norm(x)): the pre-norm residual branch of a mixer block
  // (norm over x's last dim). A mixer whose op can take the norm and the
  // add into its own pass over memory overrides this (PreNormResidual,
  // ops/prenorm_residual.h); the result is the same.
  virtual Tensor forward_residual(const Tensor& x, const LayerNorm& norm, const Tensor& key_mask = Tensor()) const;
};

using MixerFactory = std::function<std::shared_ptr<Mixer>(const MixerSpec&)>;

void register_mixer(const std::string& name, const std::string& description, MixerFactory factory);
// Error listing the registered names when `name` is unknown.
std::shared_ptr<Mixer> make_mixer(const std::string& name, const MixerSpec& spec);
std::vector<std::pair<std::string, std::string>> mixer_names();  // (name, description)

// The default butterfly block for n: round(sqrt(n)) when that squares to n,
// else the power of two 2^ceil(log2(sqrt(n))) (the ViT rule of PAPERS.md 1.5).
int64_t default_block(int64_t n);

}  // namespace dimix

#define DIMIX_MIXER_CAT2(a, b) a##b
#define DIMIX_MIXER_CAT(a, b) DIMIX_MIXER_CAT2(a, b)
#define DIMIX_REGISTER_MIXER(name, description, factory) \
  static const bool DIMIX_MIXER_CAT(dimix_mixer_, __LINE__) = (::dimix::register_mixer(name, description, factory), true)
