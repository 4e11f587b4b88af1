// The basic layers: Linear, LayerNorm, Embedding, Dropout, activations, the
// two-layer MLP, patch embedding (unfold + linear) and bilinear resize.
// Every layer maps tensors whose feature axis is last ([..., D]) unless
// stated otherwise, and initialises as PyTorch does (models/init.h).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "models/module.h"

namespace dimix {

// y = x W^T + b; weight [out, in], bias [out].
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
  int64_t in_features, out_features;
};

// Normalises the last dim of size D; weight ones, bias zeros.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "LayerNorm"; }
  Tensor weight, bias;
  double eps;
};

// ids [...] (integer) -> [..., D]; weight [V, D] ~ normal(0, std) (PyTorch's
// default std is 1; the LRA code uses 0.02).
class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, double std = 1.0);
  Tensor forward(const Tensor& ids) const;
  std::string type_name() const override { return "Embedding"; }
  Tensor weight;
};

// Inverted dropout, active only in training mode; p == 0 is the identity.
class Dropout : public Module {
 public:
  explicit Dropout(double p) : p(p) {}
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "Dropout"; }
  double p;
};

// "gelu" (erf), "gelu_tanh", "relu", "elu", "tanh", "identity"; Error otherwise.
using Activation = std::function<Tensor(const Tensor&)>;
Activation activation(const std::string& name);

// Linear(d, hidden) -> act -> Linear(hidden, d_out) (d_out = d by default).
class MLP : public Module {
 public:
  MLP(int64_t dim, int64_t hidden, const std::string& act = "gelu", int64_t out = -1);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> fc1, fc2;
  Activation act;
};

// Images [N, C, H, W] -> tokens [N, (H/p)(W/p), D]: nn.Unfold(p, stride p),
// swap axes, Linear(C p^2, D). Feature order c*p*p + ki*p + kj, patches
// row-major, as the authors' MlpMixer / ViT.
class PatchEmbedding : public Module {
 public:
  PatchEmbedding(int64_t channels, int64_t patch, int64_t dim);
  Tensor forward(const Tensor& images) const;
  std::string type_name() const override { return "PatchEmbedding"; }
  int64_t patch;
  std::shared_ptr<Linear> proj;
};

// G independent linear maps b_in -> b_out over groups of an axis gathered
// with a stride (ops/block_linear.h): weight [G, b_out, b_in], bias [G, b_out],
// initialised like a grouped 1x1 convolution (U(+-1/sqrt(b_in))).
class BlockLinear : public Module {
 public:
  BlockLinear(int64_t groups, int64_t b_in, int64_t b_out, bool bias = true);
  // Mixes `dim` of x with the given input / output strides.
  Tensor forward(const Tensor& x, int64_t dim, int64_t in_stride, int64_t out_stride) const;
  std::string type_name() const override { return "BlockLinear"; }
  Tensor weight, bias;
};

// Bilinear resize to size x size (align_corners=True), no parameters: the
// authors' nn.UpsamplingBilinear2d inside MlpMixer.forward.
class UpsampleBilinear : public Module {
 public:
  explicit UpsampleBilinear(int64_t size) : size(size) {}
  Tensor forward(const Tensor& images) const;
  std::string type_name() const override { return "UpsampleBilinear"; }
  int64_t size;
};

}  // namespace dimix
