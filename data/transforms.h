// Image transforms for the data pipeline, on one example image [C, H, W] at a
// time (C channels, H height, W width), and Compose, which chains them.
//
// Randomness: a random transform draws from AugmentRng, a Philox stream keyed
// by (seed, epoch) and counted by (example index, transform slot, draw), so an
// example's augmentation is a pure function of (seed, epoch, index): it does
// not depend on worker count, batch composition or the order of work.
//
// Conventions follow torchvision: ToTensor scaling x / 255, Normalize
// (x - mean) / std per channel, RandomCrop with zero padding, horizontal flip
// with p = 0.5, bilinear resize with align_corners=True (core/bilinear.h).
// Grayscale uses TF's rgb_to_grayscale weights 0.2989/0.587/0.114 (DATA.md
// section 5): on u8 images trunc(y / 255 * 255.5) in float32, as LRA does.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dimix {

// The random words of one transform slot for one example.
class AugmentRng {
 public:
  // key from augment_key(seed, epoch); index < 2^48, slot < 256.
  AugmentRng(uint64_t key, int64_t index, int slot);
  uint32_t word(int k) const;               // k-th random word, k < 1024
  double uniform(int k) const;              // [0, 1) from word k
  int64_t randint(int64_t n, int k) const;  // [0, n) from words k, k+1
 private:
  uint64_t key_, base_;
};
uint64_t augment_key(uint64_t seed, int64_t epoch);

class Transform {
 public:
  virtual ~Transform() = default;
  virtual Tensor apply(const Tensor& image, const AugmentRng& rng) const = 0;
  virtual std::string describe() const = 0;
};

// ---- deterministic image functions (what the transforms call) -------------------
// u8 [C, H, W] -> f32 in [0, 1].
Tensor image_to_float(const Tensor& image);
// float [C, H, W]: (x - mean[c]) / std[c]; mean/std have C entries (or 1).
Tensor image_normalize(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std);
// Any dtype: columns reversed.
Tensor image_hflip(const Tensor& image);
// Any dtype: the [C, out_h, out_w] window at (top, left) of the image padded
// by `pad` zeros on every side (top/left count in padded coordinates).
Tensor image_crop_padded(const Tensor& image, int64_t pad, int64_t top, int64_t left, int64_t out_h, int64_t out_w);
// Float [C, H, W] -> [C, out_h, out_w], bilinear, align_corners=True.
Tensor image_resize(const Tensor& image, int64_t out_h, int64_t out_w);
// [3, H, W] -> [1, H, W]; u8 stays u8 (TF rounding), float stays float.
Tensor image_grayscale(const Tensor& image);
// Integer [C, H, W] -> i64 tokens [C*H*W] (row-major), e.g. LRA Image.
Tensor image_to_tokens(const Tensor& image);

// ---- the transforms ------------------------------------------------------------------
class ToFloat final : public Transform {
 public:
  Tensor apply(const Tensor& image, const AugmentRng&) const override { return image_to_float(image); }
  std::string describe() const override { return "to_float"; }
};

class Normalize final : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor apply(const Tensor& image, const AugmentRng&) const override;
  std::string describe() const override;
 private:
  std::vector<double> mean_, std_;
};

// A uniform random [out_h, out_w] window of the zero-padded image.
class RandomCrop final : public Transform {
 public:
  RandomCrop(int64_t size, int64_t padding) : RandomCrop(size, size, padding) {}
  RandomCrop(int64_t out_h, int64_t out_w, int64_t padding);
  Tensor apply(const Tensor& image, const AugmentRng& rng) const override;
  std::string describe() const override;
 private:
  int64_t out_h_, out_w_, pad_;
};

class RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor apply(const Tensor& image, const AugmentRng& rng) const override;
  std::string describe() const override;
 private:
  double p_;
};

class Resize final : public Transform {
 public:
  Resize(int64_t out_h, int64_t out_w);
  Tensor apply(const Tensor& image, const AugmentRng&) const override { return image_resize(image, out_h_, out_w_); }
  std::string describe() const override;
 private:
  int64_t out_h_, out_w_;
};

class Grayscale final : public Transform {
 public:
  Tensor apply(const Tensor& image, const AugmentRng&) const override { return image_grayscale(image); }
  std::string describe() const override { return "grayscale"; }
};

class ToTokens final : public Transform {
 public:
  Tensor apply(const Tensor& image, const AugmentRng&) const override { return image_to_tokens(image); }
  std::string describe() const override { return "to_tokens"; }
};

// Transforms applied in order; step i draws from slot i.
class Compose {
 public:
  Compose() = default;
  explicit Compose(std::vector<std::shared_ptr<const Transform>> steps);
  Compose& add(std::shared_ptr<const Transform> step);
  template <class T, class... Args>
  Compose& add(Args&&... args) { return add(std::make_shared<const T>(std::forward<Args>(args)...)); }

  // Pure in (image, seed, epoch, index).
  Tensor apply(const Tensor& image, uint64_t seed, int64_t epoch, int64_t index) const;
  // The same with the key from augment_key(seed, epoch) computed once by the caller.
  Tensor apply_keyed(const Tensor& image, uint64_t key, int64_t index) const;
  size_t size() const { return steps_.size(); }
  bool empty() const { return steps_.empty(); }
  std::string describe() const;  // "to_float, normalize(...)"
 private:
  std::vector<std::shared_ptr<const Transform>> steps_;
};

}  // namespace dimix
