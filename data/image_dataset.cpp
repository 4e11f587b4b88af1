// In-memory and synthetic image datasets, and the by-name factory (see
// image_dataset.h).
#include "data/image_dataset.h"

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "data/cifar.h"
#include "data/idx.h"

namespace dimix {

// ---- InMemoryImageDataset --------------------------------------------------------
InMemoryImageDataset::InMemoryImageDataset(std::string name, Tensor images, std::vector<int64_t> labels,
                                           int64_t num_classes)
    : name_(std::move(name)), images_(std::move(images)), labels_(std::move(labels)), num_classes_(num_classes) {
  DIMIX_CHECK(images_.dim() == 4 && images_.dtype() == DType::u8 && images_.is_contiguous(), name_,
              ": expected contiguous u8 images [N, C, H, W], got ", dtype_name(images_.dtype()), " ",
              images_.shape_str());
  DIMIX_CHECK(images_.size(0) == static_cast<int64_t>(labels_.size()), name_, ": ", images_.size(0), " images but ",
              labels_.size(), " labels");
  for (size_t i = 0; i < labels_.size(); ++i)
    DIMIX_CHECK(labels_[i] >= 0 && labels_[i] < num_classes_, name_, ": label ", labels_[i], " of example ", i,
                " is out of range [0, ", num_classes_, ")");
}

Example InMemoryImageDataset::get(int64_t index) const {
  DIMIX_CHECK(index >= 0 && index < size(), name_, ": index ", index, " out of range [0, ", size(), ")");
  const int64_t C = channels(), H = height(), W = width();
  Example ex;
  ex.input = images_.as_strided({C, H, W}, {H * W, W, 1}, images_.offset() + index * C * H * W);
  ex.label = labels_[static_cast<size_t>(index)];
  return ex;
}

std::shared_ptr<InMemoryImageDataset> InMemoryImageDataset::slice(int64_t begin, int64_t end) const {
  DIMIX_CHECK(0 <= begin && begin <= end && end <= size(), name_, ": slice [", begin, ", ", end,
              ") out of range [0, ", size(), "]");
  const int64_t per = channels() * height() * width();
  Tensor part = images_.as_strided({end - begin, channels(), height(), width()}, images_.strides(),
                                   images_.offset() + begin * per);
  return std::make_shared<InMemoryImageDataset>(
      name_, part, std::vector<int64_t>(labels_.begin() + begin, labels_.begin() + end), num_classes_);
}

// ---- SyntheticImageDataset ---------------------------------------------------------
namespace {
// Separate Philox keys for prototypes and per-example noise.
constexpr uint64_t kPrototypeDomain = 0x5EED0001ull, kNoiseDomain = 0x5EED0002ull;
}  // namespace

SyntheticImageDataset::SyntheticImageDataset(const SyntheticImageOptions& o) : options_(o) {
  DIMIX_CHECK(o.size >= 0 && o.channels > 0 && o.height > 0 && o.width > 0 && o.num_classes > 0,
              "synthetic: expected size >= 0 and positive channels/height/width/classes, got size ", o.size, ", [",
              o.channels, ", ", o.height, ", ", o.width, "], ", o.num_classes, " classes");
  DIMIX_CHECK(o.noise >= 0 && o.noise <= 1, "synthetic: expected noise in [0, 1], got ", o.noise);
  const int64_t C = o.channels, H = o.height, W = o.width;
  prototypes_.resize(static_cast<size_t>(o.num_classes * C * H * W));
  for (int64_t k = 0; k < o.num_classes; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      uint32_t w[4];
      Philox4x32::generate(static_cast<uint64_t>(k * C + c), o.seed ^ kPrototypeDomain, w);
      const double fy = 1 + w[0] % 3, fx = 1 + w[1] % 3;
      const double phase = philox_uniform_f32(w[2]) * 6.283185307179586;
      float* p = prototypes_.data() + (k * C + c) * H * W;
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          p[y * W + x] = static_cast<float>(
              0.5 + 0.35 * std::sin(6.283185307179586 * (fy * y / H + fx * x / W) + phase));
    }
  }
}

Example SyntheticImageDataset::get(int64_t index) const {
  DIMIX_CHECK(index >= 0 && index < size(), "synthetic: index ", index, " out of range [0, ", size(), ")");
  const int64_t n = options_.channels * options_.height * options_.width;
  Example ex;
  ex.label = index % options_.num_classes;
  ex.input = empty({options_.channels, options_.height, options_.width}, DType::u8);
  uint8_t* out = ex.input.data<uint8_t>();
  const float* proto = prototypes_.data() + ex.label * n;
  const uint64_t key = (options_.seed * 0x9E3779B97F4A7C15ull) ^ (options_.stream << 32) ^ kNoiseDomain;
  const uint64_t blocks = static_cast<uint64_t>((n + 15) / 16);  // one Philox call gives 16 noise bytes
  const float amp = static_cast<float>(options_.noise) / 127.5f;
  for (int64_t b = 0; b < static_cast<int64_t>(blocks); ++b) {
    uint32_t w[4];
    Philox4x32::generate(static_cast<uint64_t>(index) * blocks + b, key, w);
    for (int64_t j = 0; j < 16 && b * 16 + j < n; ++j) {
      const int64_t i = b * 16 + j;
      const float u = static_cast<float>((w[j / 4] >> (8 * (j % 4))) & 0xFF) - 127.5f;  // [-127.5, 127.5]
      const float v = (proto[i] + amp * u) * 255.0f;
      out[i] = static_cast<uint8_t>(v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5f);
    }
  }
  return ex;
}

// ---- the factory -------------------------------------------------------------------
std::vector<std::string> image_dataset_names() { return {"fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"}; }

std::shared_ptr<ImageDataset> make_image_dataset(const std::string& name, const std::string& root,
                                                 const std::string& split, const ImageDatasetOptions& options) {
  if (name == "fashion-mnist") return load_fashion_mnist(root, split);
  if (name == "mnist") return load_mnist(root, split);
  if (name == "cifar10") return load_cifar10(root, split);
  if (name == "cifar100") return load_cifar100(root, split, options.cifar100_coarse);
  if (name == "synthetic") {
    DIMIX_CHECK(split == "train" || split == "test", "synthetic: unknown split '", split,
                "'; expected train or test");
    SyntheticImageOptions o = options.synthetic;
    if (split == "test") {
      o.size = options.synthetic_test_size;
      o.stream = options.synthetic.stream + 1;
    }
    return std::make_shared<SyntheticImageDataset>(o);
  }
  std::string known;
  for (const std::string& n : image_dataset_names()) known += (known.empty() ? "" : ", ") + n;
  DIMIX_FAIL("make_image_dataset: unknown dataset '", name, "'; known: ", known);
}

ChannelStats image_dataset_stats(const std::string& name) {
  if (name == "fashion-mnist") return {{0.2860}, {0.3530}};
  if (name == "mnist") return {{0.1307}, {0.3081}};
  if (name == "cifar10") return {{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}};
  if (name == "cifar100") return {{0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}};
  if (name == "synthetic") return {{0.5}, {0.25}};
  std::string known;
  for (const std::string& n : image_dataset_names()) known += (known.empty() ? "" : ", ") + n;
  DIMIX_FAIL("image_dataset_stats: unknown dataset '", name, "'; known: ", known);
}

ChannelStats measure_channel_stats(const ImageDataset& dataset) {
  const int64_t C = dataset.channels(), plane = dataset.height() * dataset.width();
  // Integer sums are exact, whatever the order.
  std::vector<uint64_t> sum(static_cast<size_t>(C), 0), sum_sq(static_cast<size_t>(C), 0);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const Tensor x = dataset.get(i).input.contiguous_raw();
    DIMIX_CHECK(x.dtype() == DType::u8 && x.numel() == C * plane, "measure_channel_stats: ", dataset.name(),
                " example ", i, " is ", dtype_name(x.dtype()), " ", x.shape_str(), ", expected u8 [", C, ", ",
                dataset.height(), ", ", dataset.width(), "]");
    const uint8_t* p = x.data<uint8_t>();
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < plane; ++j) {
        const uint64_t v = p[c * plane + j];
        sum[c] += v;
        sum_sq[c] += v * v;
      }
  }
  ChannelStats stats;
  const double n = static_cast<double>(dataset.size() * plane);
  for (int64_t c = 0; c < C; ++c) {
    const double mean = sum[c] / n / 255.0;
    stats.mean.push_back(mean);
    stats.std.push_back(std::sqrt(std::max(0.0, sum_sq[c] / n / (255.0 * 255.0) - mean * mean)));
  }
  return stats;
}

}  // namespace dimix
