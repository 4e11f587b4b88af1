// Image transforms (see transforms.h). Each works on a contiguous copy or
// view of one image and returns a new contiguous tensor; inputs are never
// written (they may be views of a dataset's buffer).
#include "data/transforms.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/bilinear.h"
#include "core/rng.h"

namespace dimix {

// ---- randomness ----------------------------------------------------------------------
namespace {
constexpr uint64_t kAugmentDomain = 0xA0C0E17Aull;
}

uint64_t augment_key(uint64_t seed, int64_t epoch) {
  uint32_t w[4];
  Philox4x32::generate(static_cast<uint64_t>(epoch), seed ^ kAugmentDomain, w);
  return (static_cast<uint64_t>(w[1]) << 32) | w[0];
}

AugmentRng::AugmentRng(uint64_t key, int64_t index, int slot)
    : key_(key), base_((static_cast<uint64_t>(index) << 16) | (static_cast<uint64_t>(slot & 0xFF) << 8)) {}

uint32_t AugmentRng::word(int k) const {
  uint32_t w[4];
  Philox4x32::generate(base_ + static_cast<uint64_t>((k >> 2) & 0xFF), key_, w);
  return w[k & 3];
}

double AugmentRng::uniform(int k) const { return philox_uniform_f32(word(k)); }

int64_t AugmentRng::randint(int64_t n, int k) const {
  if (n <= 1) return 0;
  const uint64_t bits = (static_cast<uint64_t>(word(k)) << 32) | word(k + 1);
  return static_cast<int64_t>(bits % static_cast<uint64_t>(n));
}

// ---- deterministic image functions ------------------------------------------------------
namespace {

void check_image(const Tensor& image, const char* op) {
  DIMIX_CHECK(image.defined(), op, ": expected an image [C, H, W], got an undefined tensor");
  DIMIX_CHECK(image.dim() == 3, op, ": expected an image [C, H, W], got shape ", image.shape_str());
  DIMIX_CHECK(image.device().is_cpu(), op, ": expected a CPU image, got one on ", image.device().str());
}

}  // namespace

Tensor image_to_float(const Tensor& image) {
  check_image(image, "to_float");
  DIMIX_CHECK(image.dtype() == DType::u8, "to_float: expected a u8 image, got ", dtype_name(image.dtype()));
  const Tensor x = image.contiguous_raw();
  Tensor out = empty(x.sizes(), DType::f32);
  const uint8_t* p = x.data<uint8_t>();
  float* o = out.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(p[i]) / 255.0f;  // as torchvision: float(x).div(255)
  return out;
}

Tensor image_normalize(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std) {
  check_image(image, "normalize");
  const int64_t C = image.size(0);
  const auto channels = static_cast<int64_t>(mean.size());
  DIMIX_CHECK(mean.size() == std.size() && (channels == C || channels == 1), "normalize: expected ", C,
              " (or 1) mean and std values for an image ", image.shape_str(), ", got ", mean.size(), " and ",
              std.size());
  const Tensor x = image.contiguous_raw();
  Tensor out = empty(x.sizes(), x.dtype());
  const int64_t plane = x.size(1) * x.size(2);
  dispatch_float(x.dtype(), "normalize", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = channels == 1 ? 0 : static_cast<size_t>(c);
      const T m = static_cast<T>(mean[k]), inv = static_cast<T>(1.0 / std[k]);
      for (int64_t i = 0; i < plane; ++i) o[c * plane + i] = (p[c * plane + i] - m) * inv;
    }
  });
  return out;
}

Tensor image_hflip(const Tensor& image) {
  check_image(image, "hflip");
  const Tensor x = image.contiguous_raw();
  Tensor out = empty(x.sizes(), x.dtype());
  const int64_t rows = x.size(0) * x.size(1), W = x.size(2);
  dispatch_all(x.dtype(), "hflip", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < W; ++j) o[r * W + j] = p[r * W + W - 1 - j];
  });
  return out;
}

Tensor image_crop_padded(const Tensor& image, int64_t pad, int64_t top, int64_t left, int64_t out_h, int64_t out_w) {
  check_image(image, "crop");
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  DIMIX_CHECK(pad >= 0 && out_h > 0 && out_w > 0 && top >= 0 && left >= 0 && top + out_h <= H + 2 * pad &&
                  left + out_w <= W + 2 * pad,
              "crop: window [", out_h, ", ", out_w, "] at (", top, ", ", left, ") does not fit the image ",
              image.shape_str(), " padded by ", pad);
  const Tensor x = image.contiguous_raw();
  Tensor out = zeros({C, out_h, out_w}, x.dtype());
  // Output column j reads source column left + j - pad; keep the in-range run.
  const int64_t j0 = std::max<int64_t>(0, pad - left), j1 = std::min<int64_t>(out_w, W + pad - left);
  const int64_t i0 = std::max<int64_t>(0, pad - top), i1 = std::min<int64_t>(out_h, H + pad - top);
  if (j0 >= j1 || i0 >= i1) return out;
  const size_t es = dtype_size(x.dtype());
  const char* p = static_cast<const char*>(x.raw_data());
  char* o = static_cast<char*>(out.raw_data());
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t sy = top + i - pad, sx = left + j0 - pad;
      std::memcpy(o + ((c * out_h + i) * out_w + j0) * es, p + ((c * H + sy) * W + sx) * es,
                  static_cast<size_t>(j1 - j0) * es);
    }
  return out;
}

Tensor image_resize(const Tensor& image, int64_t out_h, int64_t out_w) {
  check_image(image, "resize");
  DIMIX_CHECK(out_h > 0 && out_w > 0, "resize: expected a positive output size, got [", out_h, ", ", out_w, "]");
  DIMIX_CHECK(is_floating(image.dtype()), "resize: expected a float image (apply to_float first), got ",
              dtype_name(image.dtype()));
  const Tensor x = image.contiguous_raw();
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2);
  Tensor out = empty({C, out_h, out_w}, x.dtype());
  dispatch_float(x.dtype(), "resize", [&]<class T>() {
    for (int64_t c = 0; c < C; ++c)
      bilinear_plane<T, T>(x.data<T>() + c * H * W, H, W, out.data<T>() + c * out_h * out_w, out_h, out_w);
  });
  return out;
}

Tensor image_grayscale(const Tensor& image) {
  check_image(image, "grayscale");
  DIMIX_CHECK(image.size(0) == 3, "grayscale: expected an RGB image [3, H, W], got ", image.shape_str());
  const Tensor x = image.contiguous_raw();
  const int64_t H = x.size(1), W = x.size(2), plane = H * W;
  Tensor out = empty({1, H, W}, x.dtype());
  if (x.dtype() == DType::u8) {
    // TF: convert to float32 (x * 1/255), weighted sum, back with trunc(y * 255.5) saturated.
    const uint8_t* p = x.data<uint8_t>();
    uint8_t* o = out.data<uint8_t>();
    const float inv = 1.0f / 255.0f;
    for (int64_t i = 0; i < plane; ++i) {
      const float y = (p[i] * inv) * 0.2989f + (p[plane + i] * inv) * 0.587f + (p[2 * plane + i] * inv) * 0.114f;
      const float v = y * 255.5f;
      o[i] = static_cast<uint8_t>(v >= 255.0f ? 255.0f : v <= 0.0f ? 0.0f : v);
    }
    return out;
  }
  dispatch_float(x.dtype(), "grayscale", [&]<class T>() {
    const T* p = x.data<T>();
    T* o = out.data<T>();
    for (int64_t i = 0; i < plane; ++i)
      o[i] = p[i] * T(0.2989) + p[plane + i] * T(0.587) + p[2 * plane + i] * T(0.114);
  });
  return out;
}

Tensor image_to_tokens(const Tensor& image) {
  check_image(image, "to_tokens");
  DIMIX_CHECK(!is_floating(image.dtype()), "to_tokens: expected an integer image (u8 pixels), got ",
              dtype_name(image.dtype()));
  return cast_raw(image.contiguous_raw(), DType::i64).as_strided({image.numel()}, {1}, 0);
}

// ---- transforms ------------------------------------------------------------------------------
Normalize::Normalize(std::vector<double> mean, std::vector<double> std) : mean_(std::move(mean)), std_(std::move(std)) {
  DIMIX_CHECK(!mean_.empty() && mean_.size() == std_.size(), "normalize: expected as many means as stds (at least 1), got ",
              mean_.size(), " and ", std_.size());
  for (double s : std_) DIMIX_CHECK(s > 0 && std::isfinite(s), "normalize: expected positive stds, got ", s);
}

Tensor Normalize::apply(const Tensor& image, const AugmentRng&) const { return image_normalize(image, mean_, std_); }

std::string Normalize::describe() const {
  std::ostringstream os;
  os << "normalize(mean=[";
  for (size_t i = 0; i < mean_.size(); ++i) os << (i ? ", " : "") << mean_[i];
  os << "], std=[";
  for (size_t i = 0; i < std_.size(); ++i) os << (i ? ", " : "") << std_[i];
  os << "])";
  return os.str();
}

RandomCrop::RandomCrop(int64_t out_h, int64_t out_w, int64_t padding) : out_h_(out_h), out_w_(out_w), pad_(padding) {
  DIMIX_CHECK(out_h > 0 && out_w > 0 && padding >= 0, "random_crop: expected a positive size and padding >= 0, got [",
              out_h, ", ", out_w, "] padding ", padding);
}

Tensor RandomCrop::apply(const Tensor& image, const AugmentRng& rng) const {
  check_image(image, "random_crop");
  const int64_t room_h = image.size(1) + 2 * pad_ - out_h_, room_w = image.size(2) + 2 * pad_ - out_w_;
  DIMIX_CHECK(room_h >= 0 && room_w >= 0, "random_crop: window [", out_h_, ", ", out_w_, "] is larger than the image ",
              image.shape_str(), " padded by ", pad_);
  const int64_t top = rng.randint(room_h + 1, 0), left = rng.randint(room_w + 1, 2);
  return image_crop_padded(image, pad_, top, left, out_h_, out_w_);
}

std::string RandomCrop::describe() const {
  return detail::concat("random_crop(", out_h_, "x", out_w_, ", padding=", pad_, ")");
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  DIMIX_CHECK(p >= 0 && p <= 1, "random_hflip: expected a probability in [0, 1], got ", p);
}

Tensor RandomHorizontalFlip::apply(const Tensor& image, const AugmentRng& rng) const {
  return rng.uniform(0) < p_ ? image_hflip(image) : image;
}

std::string RandomHorizontalFlip::describe() const { return detail::concat("random_hflip(p=", p_, ")"); }

Resize::Resize(int64_t out_h, int64_t out_w) : out_h_(out_h), out_w_(out_w) {
  DIMIX_CHECK(out_h > 0 && out_w > 0, "resize: expected a positive output size, got [", out_h, ", ", out_w, "]");
}

std::string Resize::describe() const { return detail::concat("resize(", out_h_, "x", out_w_, ")"); }

// ---- Compose ---------------------------------------------------------------------------------------
Compose::Compose(std::vector<std::shared_ptr<const Transform>> steps) {
  for (auto& s : steps) add(std::move(s));
}

Compose& Compose::add(std::shared_ptr<const Transform> step) {
  DIMIX_CHECK(step != nullptr, "compose: null transform");
  DIMIX_CHECK(steps_.size() < 256, "compose: at most 256 transforms");
  steps_.push_back(std::move(step));
  return *this;
}

Tensor Compose::apply(const Tensor& image, uint64_t seed, int64_t epoch, int64_t index) const {
  return apply_keyed(image, augment_key(seed, epoch), index);
}

Tensor Compose::apply_keyed(const Tensor& image, uint64_t key, int64_t index) const {
  DIMIX_CHECK(index >= 0 && index < (int64_t(1) << 48), "compose: example index ", index, " out of range [0, 2^48)");
  Tensor x = image;
  for (size_t i = 0; i < steps_.size(); ++i) x = steps_[i]->apply(x, AugmentRng(key, index, static_cast<int>(i)));
  return x;
}

std::string Compose::describe() const {
  std::string s;
  for (const auto& t : steps_) s += (s.empty() ? "" : ", ") + t->describe();
  return s.empty() ? "identity" : s;
}

}  // namespace dimix
