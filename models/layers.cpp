// Basic layers (see layers.h).
#include "models/layers.h"

#include "models/init.h"
#include "ops/block_linear.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layer_norm.h"
#include "ops/linalg.h"
#include "ops/patches.h"
#include "ops/resize.h"
#include "ops/shape.h"

namespace dimix {

Linear::Linear(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  DIMIX_CHECK(in > 0 && out > 0, "Linear: expected positive sizes, got ", in, " -> ", out);
  weight = register_parameter("weight", init::kaiming_uniform({out, in}, in));
  if (with_bias) bias = register_parameter("bias", init::kaiming_uniform({out}, in));
}
Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

LayerNorm::LayerNorm(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", ones({dim}));
  bias = register_parameter("bias", zeros({dim}));
}
Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

Embedding::Embedding(int64_t vocab, int64_t dim, double std) {
  weight = register_parameter("weight", init::normal({vocab, dim}, std));
}
Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p, is_training()); }

Activation activation(const std::string& name) {
  if (name == "gelu") return [](const Tensor& x) { return gelu(x); };
  if (name == "gelu_tanh") return [](const Tensor& x) { return gelu(x, "tanh"); };
  if (name == "relu") return [](const Tensor& x) { return relu(x); };
  if (name == "elu") return [](const Tensor& x) { return elu(x); };
  if (name == "tanh") return [](const Tensor& x) { return tanh(x); };
  if (name == "identity") return [](const Tensor& x) { return x; };
  DIMIX_FAIL("activation: unknown name '", name, "' (expected gelu, gelu_tanh, relu, elu, tanh or identity)");
}

MLP::MLP(int64_t dim, int64_t hidden, const std::string& act_name, int64_t out) : act(activation(act_name)) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, out < 0 ? dim : out));
}
Tensor MLP::forward(const Tensor& x) const { return fc2->forward(act(fc1->forward(x))); }

PatchEmbedding::PatchEmbedding(int64_t channels, int64_t p, int64_t dim) : patch(p) {
  proj = register_module("proj", std::make_shared<Linear>(channels * p * p, dim));
}
Tensor PatchEmbedding::forward(const Tensor& images) const {
  DIMIX_CHECK(images.dim() == 4, "PatchEmbedding: expected images [N, C, H, W], got ", images.shape_str());
  const Tensor cols = unfold_patches(images, patch);  // [N, C p^2, L]
  return proj->forward(transpose(cols, 1, 2));        // [N, L, D]
}

BlockLinear::BlockLinear(int64_t groups, int64_t b_in, int64_t b_out, bool with_bias) {
  DIMIX_CHECK(groups > 0 && b_in > 0 && b_out > 0, "BlockLinear: expected positive sizes, got ", groups, " groups of ",
              b_in, " -> ", b_out);
  weight = register_parameter("weight", init::kaiming_uniform({groups, b_out, b_in}, b_in));
  if (with_bias) bias = register_parameter("bias", init::kaiming_uniform({groups, b_out}, b_in));
}
Tensor BlockLinear::forward(const Tensor& x, int64_t dim, int64_t in_stride, int64_t out_stride) const {
  return block_linear(x, weight, bias, dim, in_stride, out_stride);
}

Tensor UpsampleBilinear::forward(const Tensor& images) const {
  if (images.size(2) == size && images.size(3) == size) return images;
  return resize_bilinear(images, size, size);
}

}  // namespace dimix
