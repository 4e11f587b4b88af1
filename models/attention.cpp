// Multi-head self-attention (see attention.h).
#include "models/attention.h"

#include "ops/block_attention.h"
#include "ops/shape.h"

namespace dimix {

MultiHeadAttention::MultiHeadAttention(int64_t dim, int64_t heads, int64_t block, int64_t stride, double attn_dropout)
    : dim(dim), heads(heads), block(block), stride(stride), attn_dropout(attn_dropout) {
  DIMIX_CHECK(heads > 0 && dim % heads == 0, "MultiHeadAttention: dim ", dim, " is not divisible by ", heads, " heads");
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim));
  out = register_module("out", std::make_shared<Linear>(dim, dim));
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& key_mask) const {
  DIMIX_CHECK(x.dim() == 3 && x.size(2) == dim, "MultiHeadAttention: expected x [B, S, ", dim, "], got ", x.shape_str());
  const int64_t B = x.size(0), S = x.size(1), hd = dim / heads;
  const Tensor qkv5 = reshape(qkv->forward(x), {B, S, 3, heads, hd});
  // q, k, v are strided views into the fused projection: no copies.
  auto part = [&](int64_t i) { return squeeze(narrow(qkv5, 2, i, 1), 2); };
  const Tensor q = part(0), k = part(1), v = part(2);
  const int64_t blk = block > 0 ? block : S;
  const Tensor o = block_attention(q, k, v, blk, blk == S ? 1 : stride, key_mask, is_training() ? attn_dropout : 0.0);
  return out->forward(reshape(o, {B, S, dim}));
}

}  // namespace dimix
