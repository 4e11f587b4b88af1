// Image transforms on known inputs (hand-computed values), and the
// determinism of the random ones in (seed, epoch, index).
#include <catch2/catch.hpp>

#include <set>

#include "data/transforms.h"

using Catch::Matchers::Contains;
using namespace dimix;

namespace {

// [1, 2, 3] u8 image with values 1..6.
Tensor image_2x3() { return from_vector<uint8_t>({1, 2, 3, 4, 5, 6}, {1, 2, 3}); }

}  // namespace

TEST_CASE("transforms: horizontal flip of a 2x3 image", "[data]") {
  CHECK(image_hflip(image_2x3()).to_vector<int>() == std::vector<int>{3, 2, 1, 6, 5, 4});
  // Two channels, float, and a non-contiguous (transposed) input.
  Tensor two = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  CHECK(image_hflip(two).to_vector<float>() == std::vector<float>{2, 1, 4, 3, 6, 5, 8, 7});
  Tensor t = two.as_strided({2, 2, 2}, {4, 1, 2}, 0);  // each plane transposed: [[1,3],[2,4]]
  CHECK(image_hflip(t).to_vector<float>() == std::vector<float>{3, 1, 4, 2, 7, 5, 8, 6});
  RandomHorizontalFlip always(1.0), never(0.0);
  const AugmentRng rng(augment_key(1, 0), 0, 0);
  CHECK(always.apply(image_2x3(), rng).to_vector<int>() == std::vector<int>{3, 2, 1, 6, 5, 4});
  CHECK(never.apply(image_2x3(), rng).to_vector<int>() == std::vector<int>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("transforms: crop with zero padding at known offsets", "[data]") {
  // Padded by 1 the image is
  //   0 0 0 0 0
  //   0 1 2 3 0
  //   0 4 5 6 0
  //   0 0 0 0 0
  CHECK(image_crop_padded(image_2x3(), 1, 0, 0, 2, 2).to_vector<int>() == std::vector<int>{0, 0, 0, 1});
  CHECK(image_crop_padded(image_2x3(), 1, 1, 2, 2, 3).to_vector<int>() == std::vector<int>{2, 3, 0, 5, 6, 0});
  CHECK(image_crop_padded(image_2x3(), 1, 2, 0, 2, 5).to_vector<int>() ==
        std::vector<int>{0, 4, 5, 6, 0, 0, 0, 0, 0, 0});
  CHECK(image_crop_padded(image_2x3(), 0, 0, 1, 2, 2).to_vector<int>() == std::vector<int>{2, 3, 5, 6});
  CHECK_THROWS_WITH(image_crop_padded(image_2x3(), 1, 2, 0, 3, 2),
                    Contains("crop") && Contains("[3, 2]") && Contains("[1, 2, 3]"));

  // RandomCrop(32, pad 4) on an image whose pixel value encodes its position:
  // every offset lies in [0, 8], both ends occur, and the window is exact.
  std::vector<float> v(3 * 32 * 32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 1024 + 1);
  const Tensor img = from_vector<float>(v, {3, 32, 32});
  RandomCrop crop(32, 4);
  std::set<int64_t> tops, lefts;
  const uint64_t key = augment_key(7, 3);
  for (int64_t index = 0; index < 400; ++index) {
    const Tensor out = crop.apply(img, AugmentRng(key, index, 0));
    REQUIRE(out.sizes() == Shape{3, 32, 32});
    // Find the offset from the first non-zero pixel of channel 0.
    const std::vector<float> o = out.to_vector<float>();
    int64_t first = 0;
    while (o[first] == 0) ++first;
    const int64_t src = static_cast<int64_t>(o[first]) - 1;  // y * 32 + x in the source
    const int64_t top = src / 32 - first / 32 + 4, left = src % 32 - first % 32 + 4;
    tops.insert(top);
    lefts.insert(left);
    REQUIRE(out.to_vector<float>() == image_crop_padded(img, 4, top, left, 32, 32).to_vector<float>());
  }
  CHECK(*tops.begin() == 0);
  CHECK(*tops.rbegin() == 8);
  CHECK(*lefts.begin() == 0);
  CHECK(*lefts.rbegin() == 8);
  CHECK(tops.size() == 9);
}

TEST_CASE("transforms: to_float and normalise", "[data]") {
  const Tensor x = from_vector<uint8_t>({0, 51, 255, 102}, {2, 1, 2});
  CHECK(image_to_float(x).to_vector<float>() == std::vector<float>{0.0f, 0.2f, 1.0f, 0.4f});
  const Tensor f = from_vector<float>({0.5f, 1.0f, 0.25f, 0.75f}, {2, 1, 2});
  const std::vector<float> n = image_normalize(f, {0.25, 0.5}, {0.5, 0.25}).to_vector<float>();
  CHECK(n == std::vector<float>{0.5f, 1.5f, -1.0f, 1.0f});
  CHECK(image_normalize(f, {0.5}, {0.5}).to_vector<float>() == std::vector<float>{0.0f, 1.0f, -0.5f, 0.5f});
  CHECK_THROWS_WITH(image_normalize(f, {0.1, 0.2, 0.3}, {1, 1, 1}), Contains("normalize") && Contains("expected 2"));
  CHECK_THROWS_WITH(image_normalize(x, {0.5}, {0.5}), Contains("normalize") && Contains("u8"));
  CHECK_THROWS_WITH(Normalize({0.5}, {0.0}), Contains("positive"));
  CHECK_THROWS_WITH(image_to_float(f), Contains("to_float") && Contains("u8"));
}

TEST_CASE("transforms: grayscale of known pixels (TF weights and rounding)", "[data]") {
  // Pixels (R, G, B): (100, 150, 200), (255, 255, 255), (0, 0, 0), (10, 0, 0).
  const Tensor rgb = from_vector<uint8_t>({100, 255, 0, 10, 150, 255, 0, 0, 200, 255, 0, 0}, {3, 1, 4});
  // (0.2989*100 + 0.587*150 + 0.114*200) / 255 * 255.5 = 141.016 -> 141;
  // white: 0.9999 * 255.5 = 255.47 -> 255; (10,0,0): 2.989/255*255.5 = 2.9949 -> 2.
  CHECK(image_grayscale(rgb).to_vector<int>() == std::vector<int>{141, 255, 0, 2});
  CHECK(image_grayscale(rgb).sizes() == Shape{1, 1, 4});
  const Tensor f = image_to_float(rgb);
  const std::vector<float> g = image_grayscale(f).to_vector<float>();
  CHECK(g[0] == Approx((0.2989 * 100 + 0.587 * 150 + 0.114 * 200) / 255).epsilon(1e-6));
  CHECK(g[1] == Approx(0.9999).epsilon(1e-6));
  CHECK_THROWS_WITH(image_grayscale(image_2x3()), Contains("grayscale") && Contains("[3, H, W]"));
  // LRA Image: grayscale tokens, row-major.
  const Tensor tokens = image_to_tokens(image_grayscale(rgb));
  CHECK(tokens.dtype() == DType::i64);
  CHECK(tokens.to_vector<int64_t>() == std::vector<int64_t>{141, 255, 0, 2});
}

TEST_CASE("transforms: bilinear resize, identity and 2 -> 3", "[data]") {
  const Tensor f = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {1, 3, 4});
  CHECK(image_resize(f, 3, 4).to_vector<float>() == f.to_vector<float>());
  // align_corners=True: corners stay, the middle row/column average.
  const Tensor s = from_vector<float>({0, 1, 2, 3, 10, 20, 30, 40}, {2, 2, 2});
  CHECK(image_resize(s, 3, 3).to_vector<float>() ==
        std::vector<float>{0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3, 10, 15, 20, 20, 25, 30, 30, 35, 40});
  // 1 x 2 -> 1 x 5: quarters.
  CHECK(image_resize(from_vector<float>({0, 4}, {1, 1, 2}), 1, 5).to_vector<float>() ==
        std::vector<float>{0, 1, 2, 3, 4});
  CHECK(Resize(36, 36).apply(image_to_float(image_2x3()), AugmentRng(0, 0, 0)).sizes() == Shape{1, 36, 36});
  CHECK_THROWS_WITH(image_resize(image_2x3(), 3, 3), Contains("resize") && Contains("u8"));
}

TEST_CASE("transforms: Compose is a pure function of (seed, epoch, index)", "[data]") {
  Compose pipe;
  pipe.add<RandomCrop>(4, 2).add<RandomHorizontalFlip>().add<ToFloat>().add<Normalize>(std::vector<double>{0.5},
                                                                                          std::vector<double>{0.25});
  CHECK(pipe.size() == 4);
  CHECK(pipe.describe() == "random_crop(4x4, padding=2), random_hflip(p=0.5), to_float, normalize(mean=[0.5], std=[0.25])");
  std::vector<uint8_t> v(16);
  for (int i = 0; i < 16; ++i) v[i] = static_cast<uint8_t>(i * 16);
  const Tensor img = from_vector<uint8_t>(v, {1, 4, 4});

  const auto a = pipe.apply(img, 5, 2, 123).to_vector<float>();
  CHECK(a == pipe.apply(img, 5, 2, 123).to_vector<float>());
  int differ_epoch = 0, differ_index = 0, differ_seed = 0, flips = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const auto x = pipe.apply(img, 5, 2, i).to_vector<float>();
    differ_epoch += x != pipe.apply(img, 5, 3, i).to_vector<float>();
    differ_seed += x != pipe.apply(img, 6, 2, i).to_vector<float>();
    differ_index += x != pipe.apply(img, 5, 2, i + 1).to_vector<float>();
    flips += AugmentRng(augment_key(5, 2), i, 1).uniform(0) < 0.5;
  }
  // 25 crop offsets x 2 flips: a repeat has probability about 1/50.
  CHECK(differ_epoch > 180);
  CHECK(differ_seed > 180);
  CHECK(differ_index > 180);
  CHECK(flips > 70);
  CHECK(flips < 130);
  // Values: normalise after to_float maps 0 -> -2 and 255 -> 2.
  const auto n = Compose().add<ToFloat>().add<Normalize>(std::vector<double>{0.5}, std::vector<double>{0.25})
                     .apply(from_vector<uint8_t>({0, 255}, {1, 1, 2}), 0, 0, 0).to_vector<float>();
  CHECK(n == std::vector<float>{-2.0f, 2.0f});
}
