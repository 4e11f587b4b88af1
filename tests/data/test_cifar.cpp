// CIFAR-10 / CIFAR-100 binary reading: files written here in the release's
// record layout read back exactly; malformed files are errors naming the file
// and its size or the record. Also the synthetic dataset and the factory.
#include <catch2/catch.hpp>

#include <cstring>

#include "data/cifar.h"
#include "data/image_dataset.h"
#include "tests/data/data_test_util.h"

using Catch::Matchers::Contains;
using namespace dimix;
using dimix::test::TempDir;

namespace {

uint8_t pixel(int file, int record, int i) { return static_cast<uint8_t>((file * 97 + record * 31 + i * 7) % 256); }

// CIFAR records: the label bytes, then 3072 pixels.
std::vector<uint8_t> cifar_file(int file, const std::vector<std::vector<uint8_t>>& label_bytes) {
  std::vector<uint8_t> out;
  for (size_t r = 0; r < label_bytes.size(); ++r) {
    out.insert(out.end(), label_bytes[r].begin(), label_bytes[r].end());
    for (int i = 0; i < 3072; ++i) out.push_back(pixel(file, static_cast<int>(r), i));
  }
  return out;
}

void check_pixels(const ImageDataset& ds, int64_t index, int file, int record) {
  const std::vector<uint8_t> got = ds.get(index).input.to_vector<uint8_t>();
  REQUIRE(got.size() == 3072);
  int bad = 0;
  for (int i = 0; i < 3072; ++i) bad += got[i] != pixel(file, record, i);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cifar10: batches read back exactly, in file order", "[data]") {
  TempDir dir;
  const std::string bin = dir.file("cifar-10-batches-bin");  // the release's folder, found under the root
  for (int b = 1; b <= 5; ++b)
    test::write_bytes(bin + "/data_batch_" + std::to_string(b) + ".bin",
                      cifar_file(b, {{uint8_t(b)}, {uint8_t(9 - b)}, {0}}));
  test::write_bytes(bin + "/test_batch.bin", cifar_file(0, {{7}, {2}}));

  auto train = load_cifar10(dir.str(), "train");
  REQUIRE(train->size() == 15);
  CHECK(train->images().sizes() == Shape{15, 3, 32, 32});
  CHECK(train->num_classes() == 10);
  CHECK(train->labels() == std::vector<int64_t>{1, 8, 0, 2, 7, 0, 3, 6, 0, 4, 5, 0, 5, 4, 0});
  check_pixels(*train, 0, 1, 0);
  check_pixels(*train, 7, 3, 1);
  check_pixels(*train, 14, 5, 2);
  // The R plane comes first: pixel (c=1, y=0, x=2) is byte 1024 + 2 of the record.
  CHECK(train->get(4).input.at({1, 0, 2}) == pixel(2, 1, 1026));

  auto test_split = make_image_dataset("cifar10", bin, "test");
  CHECK(test_split->size() == 2);
  CHECK(test_split->get(0).label == 7);
  CHECK(test_split->get(1).label == 2);
  CHECK(test_split->channels() == 3);
  CHECK(test_split->height() == 32);
  CHECK(test_split->width() == 32);
  check_pixels(*test_split, 1, 0, 1);
}

TEST_CASE("cifar100: fine labels by default, coarse by option", "[data]") {
  TempDir dir;
  test::write_bytes(dir.file("train.bin"), cifar_file(1, {{3, 99}, {19, 0}, {0, 42}, {7, 7}}));
  test::write_bytes(dir.file("test.bin"), cifar_file(2, {{1, 2}}));
  auto fine = load_cifar100(dir.str(), "train");
  REQUIRE(fine->size() == 4);
  CHECK(fine->num_classes() == 100);
  CHECK(fine->labels() == std::vector<int64_t>{99, 0, 42, 7});
  check_pixels(*fine, 2, 1, 2);
  ImageDatasetOptions opt;
  opt.cifar100_coarse = true;
  auto coarse = make_image_dataset("cifar100", dir.str(), "train", opt);
  CHECK(coarse->num_classes() == 20);
  CHECK(coarse->get(0).label == 3);
  CHECK(coarse->get(1).label == 19);
  check_pixels(*coarse, 3, 1, 3);
  CHECK(load_cifar100(dir.str(), "test")->get(0).label == 2);
}

TEST_CASE("cifar: malformed files are errors naming the file and the size or record", "[data]") {
  TempDir dir;
  SECTION("size not a multiple of the record") {
    std::vector<uint8_t> b = cifar_file(0, {{1}, {2}});
    b.resize(b.size() + 5);
    test::write_bytes(dir.file("test_batch.bin"), b);
    CHECK_THROWS_WITH(load_cifar10(dir.str(), "test"), Contains(dir.file("test_batch.bin")) &&
                                                           Contains("6151 bytes") && Contains("3073-byte record"));
    std::vector<uint8_t> c = cifar_file(0, {{1, 1}});
    c.pop_back();
    test::write_bytes(dir.file("test.bin"), c);
    CHECK_THROWS_WITH(load_cifar100(dir.str(), "test"),
                      Contains(dir.file("test.bin")) && Contains("3073 bytes") && Contains("3074-byte record"));
  }
  SECTION("cifar10 label out of range") {
    test::write_bytes(dir.file("test_batch.bin"), cifar_file(0, {{1}, {10}, {2}}));
    CHECK_THROWS_WITH(load_cifar10(dir.str(), "test"), Contains(dir.file("test_batch.bin")) && Contains("record 1") &&
                                                           Contains("byte offset 3073") && Contains("label 10"));
  }
  SECTION("cifar100 fine and coarse labels out of range") {
    test::write_bytes(dir.file("train.bin"), cifar_file(0, {{1, 1}, {2, 2}, {3, 100}}));
    CHECK_THROWS_WITH(load_cifar100(dir.str(), "train"), Contains(dir.file("train.bin")) && Contains("record 2") &&
                                                             Contains("byte offset 6149") && Contains("fine label 100"));
    test::write_bytes(dir.file("test.bin"), cifar_file(0, {{20, 1}}));
    CHECK_THROWS_WITH(load_cifar100(dir.str(), "test"), Contains(dir.file("test.bin")) && Contains("record 0") &&
                                                            Contains("coarse label 20"));
  }
  SECTION("a missing batch") {
    for (int b = 1; b <= 4; ++b)
      test::write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), cifar_file(b, {{1}}));
    CHECK_THROWS_WITH(load_cifar10(dir.str(), "train"),
                      Contains(dir.file("data_batch_5.bin")) && Contains("No such file"));
  }
  SECTION("no root") {
    CHECK_THROWS_WITH(make_image_dataset("cifar10", "", "train"), Contains("cifar10") && Contains("data_batch_1.bin"));
  }
}

TEST_CASE("make_image_dataset: an unknown name lists the known ones", "[data]") {
  CHECK_THROWS_WITH(make_image_dataset("imagenet", "/tmp", "train"),
                    Contains("'imagenet'") && Contains("fashion-mnist") && Contains("mnist") &&
                        Contains("cifar10") && Contains("cifar100") && Contains("synthetic"));
}

TEST_CASE("synthetic images: seeded, class-dependent, any shape", "[data]") {
  ImageDatasetOptions opt;
  opt.synthetic.size = 50;
  opt.synthetic.channels = 2;
  opt.synthetic.height = 5;
  opt.synthetic.width = 7;
  opt.synthetic.num_classes = 4;
  opt.synthetic.seed = 11;
  opt.synthetic_test_size = 20;
  auto train = make_image_dataset("synthetic", "", "train", opt);
  auto train2 = make_image_dataset("synthetic", "", "train", opt);
  auto test_split = make_image_dataset("synthetic", "", "test", opt);
  CHECK(train->size() == 50);
  CHECK(test_split->size() == 20);
  CHECK(train->num_classes() == 4);
  CHECK(train->channels() == 2);
  CHECK(train->height() == 5);
  CHECK(train->width() == 7);
  const Example a = train->get(13);
  CHECK(a.label == 1);
  CHECK(a.input.sizes() == Shape{2, 5, 7});
  CHECK(a.input.dtype() == DType::u8);
  CHECK(a.input.to_vector<uint8_t>() == train2->get(13).input.to_vector<uint8_t>());
  CHECK(a.input.to_vector<uint8_t>() != test_split->get(13).input.to_vector<uint8_t>());
  CHECK(a.input.to_vector<uint8_t>() != train->get(17).input.to_vector<uint8_t>());  // same class, other noise

  // Class signal: an example is nearer (L2) to its class's mean than to another's.
  std::vector<std::vector<double>> mean(4, std::vector<double>(70, 0.0));
  for (int64_t i = 0; i < 48; ++i) {
    const auto v = train->get(i).input.to_vector<double>();
    for (size_t j = 0; j < 70; ++j) mean[i % 4][j] += v[j] / 12;
  }
  int correct = 0;
  for (int64_t i = 0; i < 20; ++i) {
    const auto v = test_split->get(i).input.to_vector<double>();
    int best = -1;
    double best_d = 1e300;
    for (int k = 0; k < 4; ++k) {
      double d = 0;
      for (size_t j = 0; j < 70; ++j) d += (v[j] - mean[k][j]) * (v[j] - mean[k][j]);
      if (d < best_d) { best_d = d; best = k; }
    }
    correct += best == i % 4;
  }
  CHECK(correct >= 18);
  CHECK_THROWS_WITH(train->get(50), Contains("synthetic") && Contains("index 50"));
}

TEST_CASE("InMemoryImageDataset::slice shares the buffer", "[data]") {
  SyntheticImageOptions o;
  o.size = 6;
  o.channels = 1;
  o.height = 2;
  o.width = 2;
  SyntheticImageDataset syn(o);
  Tensor images = empty({6, 1, 2, 2}, DType::u8);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 6; ++i) {
    copy_(images.as_strided({1, 2, 2}, {4, 2, 1}, i * 4), syn.get(i).input);
    labels.push_back(syn.get(i).label);
  }
  auto ds = std::make_shared<InMemoryImageDataset>("toy", images, labels, 10);
  auto tail = ds->slice(4, 6);
  CHECK(tail->size() == 2);
  CHECK(tail->get(1).label == 5);
  CHECK(tail->get(1).input.to_vector<uint8_t>() == syn.get(5).input.to_vector<uint8_t>());
  CHECK(tail->get(0).input.storage() == images.storage());
  CHECK_THROWS_WITH(ds->slice(3, 7), Contains("toy") && Contains("slice [3, 7)"));

  // Channel stats over a hand-checkable set: pixels 0 and 255 in equal numbers.
  Tensor bw = empty({2, 1, 1, 2}, DType::u8);
  std::vector<uint8_t> v = {0, 255, 255, 0};
  std::memcpy(bw.raw_data(), v.data(), 4);
  const ChannelStats st = measure_channel_stats(InMemoryImageDataset("bw", bw, {0, 1}, 2));
  CHECK(st.mean == std::vector<double>{0.5});
  CHECK(st.std == std::vector<double>{0.5});
  CHECK(image_dataset_stats("cifar10").mean.size() == 3);
  CHECK_THROWS_WITH(image_dataset_stats("svhn"), Contains("'svhn'") && Contains("cifar100"));
}
