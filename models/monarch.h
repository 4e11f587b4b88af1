// Monarch Mixer (M2) layers and networks (PAPERS.md 2).
//
// Structured linear maps (feature axis last unless a dim is given):
//   MonarchMatrix    the paper's square M = P R P L P, n = m^2, 2 n^1.5 parameters
//   MonarchLinear    fly's rectangular two-factor Monarch layer in -> out (nblocks)
//   BlockdiagLinear  one block-diagonal factor (what M2-BERT's "Monarch MLP" uses)
// The M2 sequence mixer (M2-BERT, PAPERS.md 2.3), on u [B, L, d]:
//   HyenaFilter      implicit long kernel k [d, L] = MLP(z)[t] * exp(-t |delta|),
//                    z = [t, cos, -sin bands], Sin activations with a trainable
//                    frequency shared by every layer of the MLP; optional
//                    reverse kernel; its `bias` is the skip D of the convolution
//   M2SequenceMixer  in_linear d -> 3d, causal short depthwise conv (K = 3),
//                    v = v * x1, y = fftconv(v, k) + D v, y = y * x2,
//                    (+ a second filter's long conv of u: residual_long_conv),
//                    out_linear d -> d
//   MonarchMLP       the GLU dimension mixer with BlockdiagLinear (PAPERS.md 2.4):
//                    LN(wo(GELU(h[:I]) * h[I:]) + s), h = gated(s) of width 2I
//   M2Layer          s = sequence_mixer(h); h = MonarchMLP(s) (no norm or
//                    residual around the sequence mixer, as M2-BERT)
// Networks: M2ImageClassifier (patch embedding -> M2 layers -> flatten head,
// the head of this repository's MLP-Mixer / ViT) and M2LRAClassifier (the
// LRATransformer's embeddings, pooling and head around M2 layers).
//
// Initialisation follows the authors' code: MonarchLinear factors kaiming-
// uniform per block (U(+-1/sqrt(block fan-in))), BlockdiagLinear a dense
// kaiming-uniform(a = sqrt 5) scaled by sqrt(nblocks) (= U(+-1/sqrt(in/nblocks))),
// both biases U(+-1/sqrt(out_features)) (StructuredLinear takes the bias's own
// length as its fan-in); Hyena's bias ~ N(0, 1), Sin frequency w; Linear and
// Conv1d as PyTorch.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/networks.h"

namespace dimix {

class MonarchMatrix : public Module {
 public:
  explicit MonarchMatrix(int64_t n);
  Tensor forward(const Tensor& x, int64_t dim = -1) const;
  std::string type_name() const override { return "MonarchMatrix"; }
  int64_t n, m;
  Tensor L, R;  // [m, m, m]
};

class MonarchLinear : public Module {
 public:
  MonarchLinear(int64_t in, int64_t out, int64_t nblocks = 4, bool bias = true);
  // Maps dim `dim` of x from in to out features (inputs zero-padded to
  // nblocks * ceil(in / nblocks), outputs cut to out).
  Tensor forward(const Tensor& x, int64_t dim = -1) const;
  std::string type_name() const override { return "MonarchLinear"; }
  int64_t in_features, out_features, nblocks, in_extended, out_extended;
  Tensor blkdiag1, blkdiag2, bias;
};

class BlockdiagLinear : public Module {
 public:
  BlockdiagLinear(int64_t in, int64_t out, int64_t nblocks = 4, bool bias = true);
  Tensor forward(const Tensor& x) const;  // last dim
  std::string type_name() const override { return "BlockdiagLinear"; }
  int64_t in_features, out_features, nblocks, in_extended, out_extended;
  Tensor weight, bias;  // weight [nblocks, out/nblocks, in/nblocks]
};

struct HyenaFilterConfig {
  int64_t d = 64;         // channels
  int64_t seq_len = 128;  // longest L (the positional embedding's length)
  int64_t order = 16;     // width of the implicit MLP
  int64_t emb_dim = 3;    // 1 + 2 bands; odd, >= 3
  int64_t inner_mlps = 2;
  double w = 1.0;         // initial Sin frequency
  bool bidirectional = false;
  bool modulate = true;
};

class HyenaFilter : public Module {
 public:
  explicit HyenaFilter(const HyenaFilterConfig& c);
  // The kernels [d, L] for a length L <= seq_len.
  Tensor filter(int64_t L) const;
  Tensor filter_rev(int64_t L) const;
  // x [B, d, L] -> fftconv(x, k) + bias * x (bidirectional: k_fwd and k_rev).
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "HyenaFilter"; }
  HyenaFilterConfig config;
  Tensor bias, z, freq;  // bias [d] (the skip D), z [seq_len, emb_dim], freq [order]
  Tensor t, deltas;      // buffers: t [seq_len, 1] in [0, 1], deltas [d]
  std::vector<std::shared_ptr<Linear>> mlp, mlp_rev;

 private:
  Tensor run(const std::vector<std::shared_ptr<Linear>>& layers, int64_t L) const;
};

struct M2MixerConfig {
  int64_t d = 64, l_max = 128;
  int64_t filter_order = 32, emb_dim = 5, short_kernel = 3;
  double w = 10.0;
  bool bidirectional = true, residual_long_conv = true;
};

class M2SequenceMixer : public Module {
 public:
  explicit M2SequenceMixer(const M2MixerConfig& c);
  Tensor forward(const Tensor& u) const;  // [B, L, d] -> [B, L, d], L <= l_max
  std::string type_name() const override { return "M2SequenceMixer"; }
  M2MixerConfig config;
  std::shared_ptr<Linear> in_linear, out_linear;
  Tensor short_weight, short_bias;  // [3d, K], [3d]
  std::shared_ptr<HyenaFilter> filter_fn, filter_fn2;
};

class MonarchMLP : public Module {
 public:
  MonarchMLP(int64_t d, int64_t intermediate, int64_t nblocks = 4, double dropout = 0.0, double eps = 1e-12);
  Tensor forward(const Tensor& s) const;  // [..., d]
  std::string type_name() const override { return "MonarchMLP"; }
  int64_t intermediate;
  std::shared_ptr<BlockdiagLinear> gated, wo;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<LayerNorm> norm;
};

struct M2LayerConfig {
  M2MixerConfig mixer;
  int64_t intermediate = 128, nblocks = 4;
  double dropout = 0.0, eps = 1e-12;
};

class M2Layer : public Module {
 public:
  explicit M2Layer(const M2LayerConfig& c);
  Tensor forward(const Tensor& h) const;  // [B, L, d]
  std::string type_name() const override { return "M2Layer"; }
  std::shared_ptr<M2SequenceMixer> mixer;
  std::shared_ptr<MonarchMLP> mlp;
};

// ---- networks -----------------------------------------------------------------------------
struct M2ImageConfig {
  int64_t channels = 3, image = 32, patch = 4, dim = 64, layers = 6, classes = 10;
  int64_t intermediate = 128, nblocks = 4, filter_order = 32, emb_dim = 5;
  double eps = 1e-5;
};

class M2ImageClassifier : public Network {
 public:
  explicit M2ImageClassifier(const M2ImageConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  std::string type_name() const override { return "M2ImageClassifier"; }
  M2ImageConfig config;
  int64_t tokens;
  std::shared_ptr<PatchEmbedding> embed;
  std::vector<std::shared_ptr<M2Layer>> layers;
  std::shared_ptr<Linear> head;
};

// LRATransformer's word + position embeddings (normal 0.02), final LN,
// masked mean pooling and head, with M2 layers; the padding (token 0) is
// zeroed before every layer so the long convolutions never read it.
struct M2LRAConfig {
  int64_t vocab = 512, max_len = 1024, dim = 64, hidden = 128, layers = 2, classes = 10;
  bool dual = false;
  int64_t nblocks = 4, filter_order = 32, emb_dim = 5;
  double dropout = 0.0, eps = 1e-5;
};

class M2LRAClassifier : public Network {
 public:
  explicit M2LRAClassifier(const M2LRAConfig& c);
  Tensor forward(const Tensor& x, const Tensor& x2 = Tensor()) const override;
  Tensor encode(const Tensor& tokens) const;  // [N, S] -> [N, D]
  std::string type_name() const override { return "M2LRAClassifier"; }
  M2LRAConfig config;
  std::shared_ptr<Embedding> word, position;
  std::shared_ptr<Dropout> drop;
  std::vector<std::shared_ptr<M2Layer>> layers;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<MLP> head;
};

}  // namespace dimix
