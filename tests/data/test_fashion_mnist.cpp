// The real Fashion-MNIST files from Debian's dataset-fashion-mnist (DATA.md
// section 8): sizes, 6000 training images per class, and values checked
// against an independent reader (Python's gzip) once. Skips with a warning
// when the package is not installed.
#include <catch2/catch.hpp>

#include "data/idx.h"
#include "data/io.h"

using namespace dimix;

TEST_CASE("fashion-mnist: the installed files load", "[data]") {
  if (!data::file_exists(std::string(kFashionMnistDefaultRoot) + "/train-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST not installed at " << kFashionMnistDefaultRoot << " (apt install dataset-fashion-mnist); skipped");
    return;
  }
  auto train = load_fashion_mnist("", "train");
  auto test = load_fashion_mnist("", "test");
  REQUIRE(train->size() == 60000);
  REQUIRE(test->size() == 10000);
  CHECK(train->images().sizes() == Shape{60000, 1, 28, 28});
  CHECK(train->images().is_contiguous());
  std::vector<int64_t> per_class(10, 0);
  for (int64_t l : train->labels()) ++per_class[l];
  CHECK(per_class == std::vector<int64_t>(10, 6000));
  CHECK(std::vector<int64_t>(test->labels().begin(), test->labels().begin() + 5) ==
        std::vector<int64_t>{9, 2, 1, 1, 6});
  CHECK(std::vector<int64_t>(train->labels().begin(), train->labels().begin() + 5) ==
        std::vector<int64_t>{9, 0, 0, 3, 0});
  // Pixel sums from Python: sum(gzip.open(path).read()[16:]).
  auto sum = [](const InMemoryImageDataset& ds) {
    const uint8_t* p = ds.images().data<uint8_t>();
    uint64_t s = 0;
    for (int64_t i = 0; i < ds.images().numel(); ++i) s += p[i];
    return s;
  };
  CHECK(sum(*train) == 3431114169ull);
  CHECK(sum(*test) == 573469082ull);
  CHECK(fashion_mnist_class_names()[9] == "Ankle boot");
  // Mean/std from Python over the same bytes: 0.2860406, 0.3530242.
  const ChannelStats measured = measure_channel_stats(*train);
  CHECK(measured.mean[0] == Approx(0.2860406).epsilon(1e-6));
  CHECK(measured.std[0] == Approx(0.3530242).epsilon(1e-6));
  CHECK(image_dataset_stats("fashion-mnist").mean[0] == Approx(measured.mean[0]).margin(1e-4));
  CHECK(image_dataset_stats("fashion-mnist").std[0] == Approx(measured.std[0]).margin(1e-4));
}
