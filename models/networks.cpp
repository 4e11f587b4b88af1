// The papers' networks and their named configurations (see networks.h).
#include "models/networks.h"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>

#include "models/init.h"
#include "models/monarch.h"
#include "models/sparsifiner.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace dimix {

// ---- MlpMixer -----------------------------------------------------------------------
MlpMixer::MlpMixer(const MlpMixerConfig& c) : config(c) {
  const int64_t size = c.resize > 0 ? c.resize : c.image;
  DIMIX_CHECK(size % c.patch == 0, "MlpMixer: image size ", size, " is not a multiple of patch ", c.patch);
  tokens = (size / c.patch) * (size / c.patch);
  hidden = c.hidden > 0 ? c.hidden
                        : static_cast<int64_t>(static_cast<double>(c.channels * c.patch * c.patch) * c.hidden_expansion);
  if (c.resize > 0) resize = register_module("resize", std::make_shared<UpsampleBilinear>(c.resize));
  embed = register_module("embed", std::make_shared<PatchEmbedding>(c.channels, c.patch, hidden));
  for (int64_t i = 0; i < c.layers; ++i)
    blocks.push_back(register_module("blocks." + std::to_string(i),
                                     std::make_shared<MixerBlock>(tokens, hidden, c.token_mixer, c.channel_mixer,
                                                                  c.mlp_expansion, c.capped_strides)));
  head = register_module("head", std::make_shared<Linear>(tokens * hidden, c.classes));
}

Tensor MlpMixer::forward(const Tensor& x, const Tensor&) const {
  Tensor h = embed->forward(resize ? resize->forward(x) : x);
  for (const auto& b : blocks) h = b->forward(h);
  return head->forward(flatten(h, 1));
}

// ---- Patch-Only -----------------------------------------------------------------------
PatchOnlyMixer::PatchOnlyMixer(const PatchOnlyConfig& c) : config(c) {
  resize = register_module("resize", std::make_shared<UpsampleBilinear>(c.resize));
  int64_t k = 0;
  for (int64_t i = 0; i < c.layers; ++i)
    for (int64_t p : c.patches)
      blocks.push_back(register_module("blocks." + std::to_string(k++), std::make_shared<PatchMixerBlock>(c.channels, p)));
  head = register_module("head", std::make_shared<Linear>(c.channels * c.resize * c.resize, c.classes));
}

Tensor PatchOnlyMixer::forward(const Tensor& x, const Tensor&) const {
  Tensor h = resize->forward(x);
  for (const auto& b : blocks) h = b->forward(h);
  return head->forward(flatten(h, 1));
}

// ---- ViT -------------------------------------------------------------------------------
ViT::ViT(const ViTConfig& c) : config(c) {
  DIMIX_CHECK(c.image % c.patch == 0, "ViT: image size ", c.image, " is not a multiple of patch ", c.patch);
  tokens = (c.image / c.patch) * (c.image / c.patch);
  embed = register_module("embed", std::make_shared<PatchEmbedding>(c.channels, c.patch, c.dim));
  for (int64_t i = 0; i < c.layers; ++i) {
    TransformerBlockSpec s;
    s.dim = c.dim;
    s.heads = c.heads;
    s.tokens = tokens;
    s.mlp_ratio = c.mlp_ratio;
    s.mixer = c.mixer;
    s.block = c.block;
    s.layer_index = i;
    blocks.push_back(register_module("blocks." + std::to_string(i), std::make_shared<TransformerBlock>(s)));
  }
  head = register_module("head", std::make_shared<Linear>(tokens * c.dim, c.classes));
}

Tensor ViT::forward(const Tensor& x, const Tensor&) const {
  Tensor h = embed->forward(x);
  for (const auto& b : blocks) h = b->forward(h);
  return head->forward(flatten(h, 1));
}

// ---- LRA -------------------------------------------------------------------------------
LRATransformer::LRATransformer(const LRAConfig& c) : config(c) {
  word = register_module("word", std::make_shared<Embedding>(c.vocab, c.dim, 0.02));
  position = register_module("position", std::make_shared<Embedding>(c.max_len, c.dim, 0.02));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  for (int64_t i = 0; i < c.layers; ++i) {
    TransformerBlockSpec s;
    s.dim = c.dim;
    s.heads = c.heads;
    s.tokens = c.max_len;
    s.mlp_ratio = static_cast<double>(c.hidden) / static_cast<double>(c.dim);
    s.mixer = c.mixer;
    s.block = c.radix;
    s.layer_index = i;
    s.pre_norm = true;
    s.dropout = c.dropout;
    s.attn_dropout = c.attn_dropout;
    blocks.push_back(register_module("blocks." + std::to_string(i), std::make_shared<TransformerBlock>(s)));
  }
  norm = register_module("norm", std::make_shared<LayerNorm>(c.dim));
  head = register_module("head", std::make_shared<MLP>(c.dual ? 4 * c.dim : c.dim, c.hidden, "relu", c.classes));
}

Tensor LRATransformer::encode(const Tensor& tokens) const {
  DIMIX_CHECK(tokens.dim() == 2 && tokens.size(1) == config.max_len, "LRATransformer: expected tokens [N, ",
              config.max_len, "], got ", tokens.shape_str());
  const int64_t S = tokens.size(1);
  const Tensor keep = not_equal(tokens, 0.0);  // [N, S], 1 = real token
  const Tensor pos = arange(S, DType::i64);
  Tensor h = word->forward(tokens) + position->forward(tokens.device().is_cpu() ? pos : to_device_raw(pos, tokens.device()));
  h = drop->forward(h);
  for (const auto& b : blocks) h = b->forward(h, keep);
  // Final LN, zero the padding, mean over all positions (PAPERS.md 1.6).
  h = norm->forward(h) * unsqueeze(keep, 2);
  return mean(h, {1});
}

Tensor LRATransformer::forward(const Tensor& x, const Tensor& x2) const {
  if (!config.dual) return head->forward(encode(x));
  DIMIX_CHECK(x2.defined(), "LRATransformer: the retrieval (dual) model needs two documents");
  const Tensor a = encode(x), b = encode(x2);
  return head->forward(cat({a, b, a * b, a - b}, 1));
}

// ---- named configurations ----------------------------------------------------------------
namespace {

using Builder = std::function<std::shared_ptr<Network>(const NetworkInput&, const std::string&)>;
struct Entry {
  std::string description;
  Builder build;
};

std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}

void add(const std::string& name, const std::string& description, Builder b) { table()[name] = {description, std::move(b)}; }

std::string or_default(const std::string& mixer, const std::string& def) { return mixer.empty() ? def : mixer; }

bool register_all() {
  // Table II: MLP-Mixer, patch 4, C = int(48 * 2.53) = 121, 7 blocks, mixers in both branches.
  for (int h : {1, 2}) {
    for (const auto& [kind, mixer] : std::vector<std::pair<std::string, std::string>>{
             {"dense", "dense-mlp"}, {"butterfly-mlp", "butterfly-mlp"}, {"butterfly-linear", "butterfly-linear"}}) {
      add("t2-" + kind + "-h" + std::to_string(h),
          "Table II MLP-Mixer, " + kind + " mixing, expansion " + std::to_string(h),
          [h, mixer = mixer](const NetworkInput& in, const std::string& m) {
            MlpMixerConfig c;
            c.channels = in.channels;
            c.image = in.image;
            c.classes = in.classes;
            c.token_mixer = c.channel_mixer = or_default(m, mixer);
            c.mlp_expansion = h;
            c.capped_strides = mixer != "butterfly-mlp";  // the Table II class uses b^i uncapped
            return std::make_shared<MlpMixer>(c);
          });
    }
  }
  // Table III: ViT, no position encoding, post-LN, 8 heads, MLP ratio 2.
  for (const auto& [patch, layers] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {4, 8}, {2, 4}, {1, 4}}) {
    for (const auto& [kind, mixer] :
         std::vector<std::pair<std::string, std::string>>{{"dense", "attention"}, {"butterfly", "butterfly-attention"}}) {
      add("vit-p" + std::to_string(patch) + "-l" + std::to_string(layers) + "-" + kind,
          "Table III ViT, patch " + std::to_string(patch) + ", " + std::to_string(layers) + " layers, " + kind +
              " attention",
          [patch = patch, layers = layers, mixer = mixer](const NetworkInput& in, const std::string& m) {
            ViTConfig c;
            c.channels = in.channels;
            c.image = in.image;
            c.classes = in.classes;
            c.patch = patch;
            c.layers = layers;
            c.dim = patch == 4 ? 128 : 64;
            c.mixer = or_default(m, mixer);
            return std::make_shared<ViT>(c);
          });
    }
  }
  // Table V: the two MLP-Mixer baselines and Patch-Only, 7 and 10 layers.
  for (int64_t layers : {7, 10}) {
    const std::string L = "-l" + std::to_string(layers);
    // c1 and c2 differ only in input size and channel expansion.
    for (const auto& [name, resize, expansion, what] :
         std::vector<std::tuple<std::string, int64_t, double, std::string>>{
             {"mixer0", 36, 3.0, "c1: resize 36, 81 tokens, 144 channels"},
             {"mixer1", 32, 3.2, "c2: 32x32, 64 tokens, 153 channels"}}) {
      add(name + L, "Table V MLP-Mixer " + what + ", ratio 2",
          [layers, resize = resize, expansion = expansion](const NetworkInput& in, const std::string& m) {
            MlpMixerConfig c;
            c.channels = in.channels;
            c.image = in.image;
            c.classes = in.classes;
            c.resize = resize;
            c.hidden_expansion = expansion;
            c.layers = layers;
            c.mlp_expansion = 2.0;
            c.token_mixer = c.channel_mixer = or_default(m, "dense-mlp");
            return std::make_shared<MlpMixer>(c);
          });
    }
    add("patch-only" + L, "Table V Patch-Only MLP-Mixer: resize 35, patch MLPs at 5 and 7",
        [layers](const NetworkInput& in, const std::string& m) {
          DIMIX_CHECK(m.empty(), "patch-only: has no replaceable mixer (got --mixer ", m, ")");
          PatchOnlyConfig c;
          c.channels = in.channels;
          c.image = in.image;
          c.classes = in.classes;
          c.layers = layers;
          return std::make_shared<PatchOnlyMixer>(c);
        });
  }
  // The default model of the default job: a small butterfly MLP-Mixer.
  add("butterfly-mixer-s", "small MLP-Mixer with Butterfly-MLP token and channel mixing (patch 4, 64 channels, 6 blocks)",
      [](const NetworkInput& in, const std::string& m) {
        MlpMixerConfig c;
        c.channels = in.channels;
        c.image = in.image;
        c.classes = in.classes;
        c.patch = 4;
        c.hidden = 64;
        c.layers = 6;
        c.mlp_expansion = 2.0;
        c.token_mixer = c.channel_mixer = or_default(m, "butterfly-mlp");
        return std::make_shared<MlpMixer>(c);
      });
  // LRA (PAPERS.md 1.6): the same model for dense and butterfly attention.
  struct Task {
    std::string name;
    int64_t vocab, len, classes, radix;
    bool dual;
  };
  for (const Task& t : std::vector<Task>{{"listops", 32, 2048, 10, 64, false},
                                          {"text", 512, 4096, 2, 256, false},
                                          {"retrieval", 512, 4096, 2, 128, true},
                                          {"image", 512, 1024, 10, 32, false},
                                          {"pathfinder32", 512, 1024, 2, 128, false}}) {
    for (const auto& [kind, mixer] :
         std::vector<std::pair<std::string, std::string>>{{"dense", "attention"}, {"butterfly", "butterfly-attention"}}) {
      add("lra-" + t.name + "-" + kind, "LRA " + t.name + " transformer, " + kind + " attention",
          [t, mixer = mixer](const NetworkInput&, const std::string& m) {
            LRAConfig c;
            c.vocab = t.vocab;
            c.max_len = t.len;
            c.classes = t.classes;
            c.dual = t.dual;
            c.radix = t.radix;
            c.mixer = or_default(m, mixer);
            return std::make_shared<LRATransformer>(c);
          });
    }
  }
  // Sparsifiner (PAPERS.md 3, models/sparsifiner.h).
  add("sparsifiner-vit-s",
      "small Sparsifiner ViT: patch 4, CLS token, 128 dim, 4 pre-LN layers, 4 heads, 25% of keys per query",
      [](const NetworkInput& in, const std::string& m) {
        DIMIX_CHECK(m.empty(), "sparsifiner-vit-s: its attention is Sparsifiner's (got --mixer ", m, ")");
        SparsifinerViTConfig c;
        c.channels = in.channels;
        c.image = in.image;
        c.classes = in.classes;
        c.patch = 4;
        c.dim = 128;
        c.layers = 4;
        c.heads = 4;
        c.mlp_ratio = 2.0;
        c.attention.reduce_n = 4;  // 50 tokens (28 px) -> 12 bases, so the top-8 coefficient cut still selects
        return std::make_shared<SparsifinerViT>(c);
      });
  add("sparsifiner-deit-s", "Sparsifiner-S: DeiT-S (384 dim, 12 layers, 6 heads, patch 16; 224 px -> 197 tokens)",
      [](const NetworkInput& in, const std::string& m) {
        DIMIX_CHECK(m.empty(), "sparsifiner-deit-s: its attention is Sparsifiner's (got --mixer ", m, ")");
        SparsifinerViTConfig c;  // the defaults are DeiT-S with the authors' predictor settings
        c.channels = in.channels;
        c.image = in.image;
        c.classes = in.classes;
        return std::make_shared<SparsifinerViT>(c);
      });
  for (const char* task : {"listops", "text", "retrieval", "image", "pathfinder32"}) {
    const std::string dense = std::string("lra-") + task + "-dense";
    add(std::string("lra-") + task + "-sparsifiner", std::string("LRA ") + task + " transformer, Sparsifiner attention",
        [dense](const NetworkInput& in, const std::string& m) {
          return table().at(dense).build(in, m.empty() ? "sparsifiner" : m);
        });
  }
  // Monarch Mixer (PAPERS.md 2, models/monarch.h): M2 layers (sequence mixer +
  // Monarch GLU MLP) on 4x4 patches, and in place of the LRA transformer's blocks.
  add("m2-mixer-s", "small Monarch Mixer: patch 4, 64 channels, 6 M2 layers (Hyena long conv + block-diagonal GLU)",
      [](const NetworkInput& in, const std::string& m) {
        DIMIX_CHECK(m.empty(), "m2-mixer-s: has no replaceable mixer (got --mixer ", m, ")");
        M2ImageConfig c;
        c.channels = in.channels;
        c.image = in.image;
        c.classes = in.classes;
        return std::make_shared<M2ImageClassifier>(c);
      });
  struct M2Task {
    std::string name;
    int64_t vocab, len, classes;
    bool dual;
  };
  for (const M2Task& t : std::vector<M2Task>{{"listops", 32, 2048, 10, false},
                                              {"text", 512, 4096, 2, false},
                                              {"retrieval", 512, 4096, 2, true},
                                              {"image", 512, 1024, 10, false},
                                              {"pathfinder32", 512, 1024, 2, false}}) {
    add("lra-" + t.name + "-m2", "LRA " + t.name + ": the LRA transformer's embeddings, pooling and head around 2 M2 layers",
        [t](const NetworkInput&, const std::string& m) {
          DIMIX_CHECK(m.empty(), "lra-", t.name, "-m2: has no replaceable mixer (got --mixer ", m, ")");
          M2LRAConfig c;
          c.vocab = t.vocab;
          c.max_len = t.len;
          c.classes = t.classes;
          c.dual = t.dual;
          return std::make_shared<M2LRAClassifier>(c);
        });
  }
  return true;
}

}  // namespace

std::shared_ptr<Network> make_network(const std::string& name, const NetworkInput& input, const std::string& mixer) {
  static const bool registered = register_all();
  (void)registered;
  auto it = table().find(name);
  if (it == table().end()) {
    std::ostringstream known;
    for (const auto& [n, e] : table()) known << (known.tellp() ? ", " : "") << n;
    DIMIX_FAIL("unknown model '", name, "' (known: ", known.str(), ")");
  }
  return it->second.build(input, mixer);
}

std::vector<std::pair<std::string, std::string>> network_names() {
  static const bool registered = register_all();
  (void)registered;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [n, e] : table()) out.emplace_back(n, e.description);
  return out;
}

}  // namespace dimix
