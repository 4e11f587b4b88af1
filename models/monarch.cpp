// Monarch Mixer layers and networks (see monarch.h). Letters: B batch, L
// sequence length, d model width, I the GLU width, nb the number of blocks.
#include "models/monarch.h"

#include <cmath>
#include <numbers>

#include "autograd/node.h"
#include "models/init.h"
#include "ops/block_linear.h"
#include "ops/conv1d_depthwise.h"
#include "ops/elementwise.h"
#include "ops/fftconv.h"
#include "ops/monarch.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace dimix {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// x with dim d zero-padded from its size to `len`.
Tensor pad_dim(const Tensor& x, int64_t d, int64_t len) {
  if (x.sizes()[d] == len) return x;
  Shape extra = x.sizes();
  extra[d] = len - x.sizes()[d];
  return cat({x, zeros(extra, x.dtype(), x.device())}, d);
}

// bias [n] shaped to broadcast along dim d of an x with `ndim` dims.
Tensor along(const Tensor& bias, int64_t d, int64_t ndim) {
  Shape s(ndim, 1);
  s[d] = bias.sizes()[0];
  return reshape(bias, s);
}

}  // namespace

// ---- structured linear maps -----------------------------------------------------------------

MonarchMatrix::MonarchMatrix(int64_t n_) : n(n_), m(static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n_))))) {
  DIMIX_CHECK(n >= 1 && m * m == n, "MonarchMatrix: n must be a perfect square m^2, got n = ", n);
  L = register_parameter("L", init::kaiming_uniform({m, m, m}, m));
  R = register_parameter("R", init::kaiming_uniform({m, m, m}, m));
}
Tensor MonarchMatrix::forward(const Tensor& x, int64_t dim) const { return monarch_matrix(x, L, R, dim); }

MonarchLinear::MonarchLinear(int64_t in, int64_t out, int64_t nb, bool with_bias)
    : in_features(in), out_features(out), nblocks(nb) {
  DIMIX_CHECK(in > 0 && out > 0 && nb > 0, "MonarchLinear: expected positive sizes, got ", in, " -> ", out, " with ", nb,
              " blocks");
  DIMIX_CHECK(nb <= in && nb <= out, "MonarchLinear: ", nb, " blocks do not fit ", in, " -> ", out, " features");
  const int64_t in_blk = ceil_div(in, nb), out_blk = ceil_div(out, nb);
  in_extended = in_blk * nb;
  out_extended = out_blk * nb;
  const Shape s1 = in_extended < out_extended ? Shape{nb, in_blk, in_blk} : Shape{nb, out_blk, in_blk};
  const Shape s2 = in_extended < out_extended ? Shape{nb, out_blk, in_blk} : Shape{nb, out_blk, out_blk};
  // fly: kaiming-uniform(a = sqrt 5) per block, fan-in = the block's input size.
  blkdiag1 = register_parameter("blkdiag1", init::kaiming_uniform(s1, s1[2]));
  blkdiag2 = register_parameter("blkdiag2", init::kaiming_uniform(s2, s2[2]));
  if (with_bias) bias = register_parameter("bias", init::kaiming_uniform({out}, out));
}

Tensor MonarchLinear::forward(const Tensor& x, int64_t dim) const {
  const int64_t d = normalize_dim(dim, x.dim(), "MonarchLinear");
  DIMIX_CHECK(x.sizes()[d] == in_features, "MonarchLinear: expected ", in_features, " features along dim ", dim,
              ", got x ", x.shape_str());
  Tensor y = monarch_multiply(pad_dim(x, d, in_extended), blkdiag1, blkdiag2, d);
  if (out_extended > out_features) y = narrow(y, d, 0, out_features);
  if (bias.defined()) y = y + along(bias, d, y.dim());
  return y;
}

BlockdiagLinear::BlockdiagLinear(int64_t in, int64_t out, int64_t nb, bool with_bias)
    : in_features(in), out_features(out), nblocks(nb) {
  DIMIX_CHECK(in > 0 && out > 0 && nb > 0 && nb <= in && nb <= out, "BlockdiagLinear: ", nb, " blocks do not fit ", in,
              " -> ", out, " features");
  const int64_t in_blk = ceil_div(in, nb), out_blk = ceil_div(out, nb);
  in_extended = in_blk * nb;
  out_extended = out_blk * nb;
  // m2: a dense kaiming-uniform(a = sqrt 5) [out_ext, in_ext] (bound 1/sqrt(in_ext))
  // times sqrt(numel ratio) = sqrt(nb), blocks kept: U(+-1/sqrt(in_blk)).
  weight = register_parameter("weight", init::kaiming_uniform({nb, out_blk, in_blk}, in_blk));
  if (with_bias) bias = register_parameter("bias", init::kaiming_uniform({out}, out));
}

Tensor BlockdiagLinear::forward(const Tensor& x) const {
  DIMIX_CHECK(x.dim() >= 1 && x.sizes().back() == in_features, "BlockdiagLinear: expected x [..., ", in_features,
              "], got ", x.shape_str());
  const int64_t last = x.dim() - 1;
  const bool fuse_bias = bias.defined() && out_extended == out_features;
  const Tensor block_bias = fuse_bias ? reshape(bias, {nblocks, out_features / nblocks}) : Tensor();
  Tensor y = block_linear(pad_dim(x, last, in_extended), weight, block_bias, last, 1, 1);
  if (out_extended > out_features) y = narrow(y, last, 0, out_features);
  if (bias.defined() && !fuse_bias) y = y + bias;
  return y;
}

// ---- Hyena filter -----------------------------------------------------------------------------

HyenaFilter::HyenaFilter(const HyenaFilterConfig& c) : config(c) {
  DIMIX_CHECK(c.emb_dim >= 3 && c.emb_dim % 2 == 1, "HyenaFilter: emb_dim must be odd and >= 3 (time, cosine, sine), got ",
              c.emb_dim);
  DIMIX_CHECK(c.d > 0 && c.seq_len > 0 && c.order > 0 && c.inner_mlps >= 0, "HyenaFilter: expected positive sizes, got d ",
              c.d, ", seq_len ", c.seq_len, ", order ", c.order);
  bias = register_parameter("bias", init::normal({c.d}, 1.0));
  // z = [t, Re, Im of exp(-i f 2 pi t' / L)], t in [0, 1], t' = 0 .. L-1, f = linspace(1e-4, bands - 1, bands).
  const int64_t L = c.seq_len, bands = (c.emb_dim - 1) / 2;
  std::vector<float> zv(L * c.emb_dim), tv(L);
  for (int64_t i = 0; i < L; ++i) {
    const double t_unit = L == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(L - 1);
    const double w = 2 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(L);
    tv[i] = static_cast<float>(t_unit);
    zv[i * c.emb_dim] = static_cast<float>(t_unit);
    for (int64_t b = 0; b < bands; ++b) {
      const double f = bands == 1 ? 1e-4 : 1e-4 + (static_cast<double>(bands - 1) - 1e-4) * b / (bands - 1);
      zv[i * c.emb_dim + 1 + b] = static_cast<float>(std::cos(f * w));
      zv[i * c.emb_dim + 1 + bands + b] = static_cast<float>(-std::sin(f * w));
    }
  }
  z = register_parameter("pos_emb.z", from_vector<float>(zv, {L, c.emb_dim}));
  t = register_buffer("pos_emb.t", from_vector<float>(tv, {L, 1}));
  // One Sin module is shared by every layer of both MLPs: one frequency vector.
  freq = register_parameter("implicit_filter.1.freq", full({c.order}, c.w));
  auto build = [&](const std::string& name, std::vector<std::shared_ptr<Linear>>& layers) {
    int64_t index = 0;
    layers.push_back(register_module(name + "." + std::to_string(index), std::make_shared<Linear>(c.emb_dim, c.order)));
    for (int64_t i = 0; i < c.inner_mlps; ++i) {
      index += 2;
      layers.push_back(register_module(name + "." + std::to_string(index), std::make_shared<Linear>(c.order, c.order)));
    }
    index += 2;
    layers.push_back(register_module(name + "." + std::to_string(index), std::make_shared<Linear>(c.order, c.d, false)));
  };
  build("implicit_filter", mlp);
  if (c.bidirectional) build("implicit_filter_rev", mlp_rev);
  // ExponentialModulation: deltas = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d), a buffer.
  std::vector<float> dv(c.d);
  const double min_decay = std::log(1e-2) / 1.5, max_decay = std::log(1e-2) / 0.3;
  for (int64_t i = 0; i < c.d; ++i)
    dv[i] = static_cast<float>(c.d == 1 ? min_decay : min_decay + (max_decay - min_decay) * i / (c.d - 1));
  deltas = register_buffer("modulation.deltas", from_vector<float>(dv, {c.d}));
}

Tensor HyenaFilter::run(const std::vector<std::shared_ptr<Linear>>& layers, int64_t L) const {
  DIMIX_CHECK(L >= 1 && L <= config.seq_len, "HyenaFilter: length ", L, " outside [1, seq_len = ", config.seq_len, "]");
  Tensor h = narrow(z, 0, 0, L);  // [L, emb_dim]
  for (size_t i = 0; i < layers.size(); ++i) {
    h = layers[i]->forward(h);
    if (i + 1 < layers.size()) h = sin(h * freq);
  }
  if (config.modulate) {
    Tensor decay;
    {
      NoGradGuard no_grad;  // buffers only
      decay = exp(neg(narrow(t, 0, 0, L) * abs(deltas)));  // [L, d]
    }
    h = h * decay;
  }
  return transpose(h, 0, 1);  // [d, L]
}

Tensor HyenaFilter::filter(int64_t L) const { return run(mlp, L); }
Tensor HyenaFilter::filter_rev(int64_t L) const {
  DIMIX_CHECK(config.bidirectional, "HyenaFilter: filter_rev needs a bidirectional filter");
  return run(mlp_rev, L);
}

Tensor HyenaFilter::forward(const Tensor& x) const {
  DIMIX_CHECK(x.dim() == 3 && x.sizes()[1] == config.d, "HyenaFilter: expected x [B, ", config.d, ", L], got ",
              x.shape_str());
  const int64_t L = x.sizes()[2];
  if (config.bidirectional) return fftconv_bidirectional(x, filter(L), filter_rev(L), bias);
  return fftconv(x, filter(L), bias);
}

// ---- M2 sequence mixer, MLP, layer -------------------------------------------------------------

M2SequenceMixer::M2SequenceMixer(const M2MixerConfig& c) : config(c) {
  DIMIX_CHECK(c.d > 0 && c.l_max > 0 && c.short_kernel > 0, "M2SequenceMixer: expected positive sizes, got d ", c.d,
              ", l_max ", c.l_max, ", short kernel ", c.short_kernel);
  HyenaFilterConfig f;
  f.d = c.d;
  f.seq_len = c.l_max;
  f.order = c.filter_order;
  f.emb_dim = c.emb_dim;
  f.w = c.w;
  f.bidirectional = c.bidirectional;
  filter_fn = register_module("filter_fn", std::make_shared<HyenaFilter>(f));
  if (c.residual_long_conv) filter_fn2 = register_module("filter_fn2", std::make_shared<HyenaFilter>(f));
  in_linear = register_module("in_linear", std::make_shared<Linear>(c.d, 3 * c.d));
  out_linear = register_module("out_linear", std::make_shared<Linear>(c.d, c.d));
  // Conv1d(3d, 3d, K, groups=3d): fan-in K.
  short_weight = register_parameter("short_filter.weight", init::kaiming_uniform({3 * c.d, c.short_kernel}, c.short_kernel));
  short_bias = register_parameter("short_filter.bias", init::kaiming_uniform({3 * c.d}, c.short_kernel));
}

Tensor M2SequenceMixer::forward(const Tensor& u) const {
  const int64_t d = config.d;
  DIMIX_CHECK(u.dim() == 3 && u.sizes()[2] == d && u.sizes()[1] >= 1 && u.sizes()[1] <= config.l_max,
              "M2SequenceMixer: expected u [B, L, ", d, "] with 1 <= L <= ", config.l_max, ", got ", u.shape_str());
  const Tensor h = in_linear->forward(u);                                                 // [B, L, 3d]
  const Tensor uc = causal_conv1d_depthwise(transpose(h, 1, 2), short_weight, short_bias);  // [B, 3d, L]
  const Tensor x1 = narrow(uc, 1, 0, d), x2 = narrow(uc, 1, d, d), v = narrow(uc, 1, 2 * d, d);
  Tensor y = filter_fn->forward(v * x1) * x2;
  if (filter_fn2) y = y + filter_fn2->forward(transpose(u, 1, 2));
  return out_linear->forward(transpose(y, 1, 2));
}

MonarchMLP::MonarchMLP(int64_t d, int64_t inter, int64_t nb, double dropout, double eps) : intermediate(inter) {
  gated = register_module("gated_layers", std::make_shared<BlockdiagLinear>(d, 2 * inter, nb, false));
  drop = register_module("dropout", std::make_shared<Dropout>(dropout));
  wo = register_module("wo", std::make_shared<BlockdiagLinear>(inter, d, nb));
  norm = register_module("layernorm", std::make_shared<LayerNorm>(d, eps));
}

Tensor MonarchMLP::forward(const Tensor& s) const {
  const Tensor h = gated->forward(s);
  const Tensor g = gelu(narrow(h, -1, 0, intermediate)) * narrow(h, -1, intermediate, intermediate);
  return norm->forward(wo->forward(drop->forward(g)) + s);
}

M2Layer::M2Layer(const M2LayerConfig& c) {
  mixer = register_module("mixer", std::make_shared<M2SequenceMixer>(c.mixer));
  mlp = register_module("mlp", std::make_shared<MonarchMLP>(c.mixer.d, c.intermediate, c.nblocks, c.dropout, c.eps));
}

Tensor M2Layer::forward(const Tensor& h) const { return mlp->forward(mixer->forward(h)); }

// ---- networks -------------------------------------------------------------------------------------

M2ImageClassifier::M2ImageClassifier(const M2ImageConfig& c) : config(c) {
  DIMIX_CHECK(c.image % c.patch == 0, "M2ImageClassifier: image size ", c.image, " is not a multiple of patch ", c.patch);
  tokens = (c.image / c.patch) * (c.image / c.patch);
  embed = register_module("embed", std::make_shared<PatchEmbedding>(c.channels, c.patch, c.dim));
  M2LayerConfig lc;
  lc.mixer.d = c.dim;
  lc.mixer.l_max = tokens;
  lc.mixer.filter_order = c.filter_order;
  lc.mixer.emb_dim = c.emb_dim;
  lc.intermediate = c.intermediate;
  lc.nblocks = c.nblocks;
  lc.eps = c.eps;
  for (int64_t i = 0; i < c.layers; ++i)
    layers.push_back(register_module("layers." + std::to_string(i), std::make_shared<M2Layer>(lc)));
  head = register_module("head", std::make_shared<Linear>(tokens * c.dim, c.classes));
}

Tensor M2ImageClassifier::forward(const Tensor& x, const Tensor&) const {
  Tensor h = embed->forward(x);
  for (const auto& l : layers) h = l->forward(h);
  return head->forward(flatten(h, 1));
}

M2LRAClassifier::M2LRAClassifier(const M2LRAConfig& c) : config(c) {
  word = register_module("word", std::make_shared<Embedding>(c.vocab, c.dim, 0.02));
  position = register_module("position", std::make_shared<Embedding>(c.max_len, c.dim, 0.02));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  M2LayerConfig lc;
  lc.mixer.d = c.dim;
  lc.mixer.l_max = c.max_len;
  lc.mixer.filter_order = c.filter_order;
  lc.mixer.emb_dim = c.emb_dim;
  lc.intermediate = c.hidden;
  lc.nblocks = c.nblocks;
  lc.dropout = c.dropout;
  lc.eps = c.eps;
  for (int64_t i = 0; i < c.layers; ++i)
    layers.push_back(register_module("layers." + std::to_string(i), std::make_shared<M2Layer>(lc)));
  norm = register_module("norm", std::make_shared<LayerNorm>(c.dim));
  head = register_module("head", std::make_shared<MLP>(c.dual ? 4 * c.dim : c.dim, c.hidden, "relu", c.classes));
}

Tensor M2LRAClassifier::encode(const Tensor& tokens) const {
  DIMIX_CHECK(tokens.dim() == 2 && tokens.size(1) == config.max_len, "M2LRAClassifier: expected tokens [N, ",
              config.max_len, "], got ", tokens.shape_str());
  const int64_t S = tokens.size(1);
  const Tensor keep = unsqueeze(not_equal(tokens, 0.0), 2);  // [N, S, 1]
  const Tensor pos = arange(S, DType::i64);
  Tensor h = word->forward(tokens) + position->forward(tokens.device().is_cpu() ? pos : to_device_raw(pos, tokens.device()));
  h = drop->forward(h);
  for (const auto& l : layers) h = l->forward(h * keep);
  h = norm->forward(h) * keep;
  return mean(h, {1});
}

Tensor M2LRAClassifier::forward(const Tensor& x, const Tensor& x2) const {
  if (!config.dual) return head->forward(encode(x));
  DIMIX_CHECK(x2.defined(), "M2LRAClassifier: the retrieval (dual) model needs two documents");
  const Tensor a = encode(x), b = encode(x2);
  return head->forward(cat({a, b, a * b, a - b}, 1));
}

}  // namespace dimix
