// Image datasets: the ImageDataset interface (a Dataset whose examples are
// u8 images [C, H, W]), the in-memory form every file format loads into (one
// contiguous u8 buffer [N, C, H, W] plus int64 labels; get(i) is a view, not a
// copy), a seeded synthetic dataset for tests and GPU checks, and the factory
// that picks a dataset by name.
//
// Letters: N examples, C channels, H height, W width.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace dimix {

class ImageDataset : public Dataset {
 public:
  virtual int64_t channels() const = 0;
  virtual int64_t height() const = 0;
  virtual int64_t width() const = 0;
};

class InMemoryImageDataset final : public ImageDataset {
 public:
  // images: contiguous u8 [N, C, H, W]; labels: N values in [0, num_classes).
  InMemoryImageDataset(std::string name, Tensor images, std::vector<int64_t> labels, int64_t num_classes);

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  Example get(int64_t index) const override;  // input: u8 [C, H, W] view of the buffer
  int64_t num_classes() const override { return num_classes_; }
  std::string name() const override { return name_; }
  int64_t channels() const override { return images_.size(1); }
  int64_t height() const override { return images_.size(2); }
  int64_t width() const override { return images_.size(3); }

  const Tensor& images() const { return images_; }
  const std::vector<int64_t>& labels() const { return labels_; }
  // Examples [begin, end), sharing this buffer (e.g. a 45k/5k train/val cut).
  std::shared_ptr<InMemoryImageDataset> slice(int64_t begin, int64_t end) const;

 private:
  std::string name_;
  Tensor images_;
  std::vector<int64_t> labels_;
  int64_t num_classes_;
};

// Class-dependent patterns plus per-pixel noise, generated on the fly: example
// i is a pure function of (seed, stream, i). Each class has a prototype per
// channel, 0.5 + 0.35 sin(2 pi (fy y / H + fx x / W) + phase), with integer
// frequencies and a phase drawn from the seed; the label of example i is
// i mod num_classes. `noise` is the half-width of the uniform pixel noise as a
// fraction of 255. Train and test share prototypes and differ in `stream`.
struct SyntheticImageOptions {
  int64_t size = 1024;
  int64_t channels = 3, height = 32, width = 32;
  int64_t num_classes = 10;
  uint64_t seed = 0;
  uint64_t stream = 0;
  double noise = 0.25;
};

class SyntheticImageDataset final : public ImageDataset {
 public:
  explicit SyntheticImageDataset(const SyntheticImageOptions& options);
  int64_t size() const override { return options_.size; }
  Example get(int64_t index) const override;  // input: u8 [C, H, W]
  int64_t num_classes() const override { return options_.num_classes; }
  std::string name() const override { return "synthetic"; }
  int64_t channels() const override { return options_.channels; }
  int64_t height() const override { return options_.height; }
  int64_t width() const override { return options_.width; }
  const SyntheticImageOptions& options() const { return options_; }

 private:
  SyntheticImageOptions options_;
  std::vector<float> prototypes_;  // [num_classes, C, H, W]
};

// ---- the factory ------------------------------------------------------------
struct ImageDatasetOptions {
  bool cifar100_coarse = false;         // CIFAR-100: 20 coarse labels instead of 100 fine
  SyntheticImageOptions synthetic;      // "synthetic": shape, classes, seed; `size` is the train size
  int64_t synthetic_test_size = 1000;
};

// name: "fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic";
// split: "train" or "test". An empty root means the default location
// (/usr/share/datasets/fashion-mnist for Fashion-MNIST, /usr/share/datasets/mnist
// for MNIST); the CIFAR sets need one. Unknown names list the known ones.
std::shared_ptr<ImageDataset> make_image_dataset(const std::string& name, const std::string& root,
                                                 const std::string& split,
                                                 const ImageDatasetOptions& options = {});
std::vector<std::string> image_dataset_names();

// Per-channel mean and std of the training pixels scaled to [0, 1], for
// Normalize: the usual published values (Fashion-MNIST's checked against the
// installed files in tests/data); "synthetic" gets 0.5 / 0.25.
struct ChannelStats {
  std::vector<double> mean, std;
};
ChannelStats image_dataset_stats(const std::string& name);
// The same measured over a dataset (population std), e.g. for a new one.
ChannelStats measure_channel_stats(const ImageDataset& dataset);

}  // namespace dimix
