// Multi-head self-attention over tokens, dense or within butterfly groups.
//
// x [B, S, D] -> [B, S, D]. One fused projection Linear(D, 3D) gives Q, K, V
// (the same parameters as three Linear(D, D)), heads H with head_dim D/H,
// then ops/block_attention.h with groups of `block` tokens spaced `stride`
// apart (block = S, stride = 1: dense attention), then Linear(D, D).
#pragma once
#include <memory>

#include "models/layers.h"

namespace dimix {

class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t dim, int64_t heads, int64_t block, int64_t stride, double attn_dropout = 0.0);
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor()) const;
  std::string type_name() const override { return "MultiHeadAttention"; }

  int64_t dim, heads, block, stride;
  double attn_dropout;
  std::shared_ptr<Linear> qkv, out;
};

}  // namespace dimix
