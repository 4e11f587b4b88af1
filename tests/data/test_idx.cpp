// IDX (MNIST / Fashion-MNIST) reading: round trips through raw and gzip files
// written here in the official layout, and every malformed-file error naming
// the file and the offset or record.
#include <catch2/catch.hpp>

#include "data/idx.h"
#include "data/image_dataset.h"
#include "tests/data/data_test_util.h"

using Catch::Matchers::Contains;
using namespace dimix;
using dimix::test::TempDir;

namespace {

// N records of rows x cols with pixel (n, i) = (n * 31 + i * 7) mod 256.
std::vector<uint8_t> pixel_data(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> d;
  for (uint32_t r = 0; r < n; ++r)
    for (uint32_t i = 0; i < rows * cols; ++i) d.push_back(static_cast<uint8_t>((r * 31 + i * 7) % 256));
  return d;
}

}  // namespace

TEST_CASE("idx: raw and gzip files round-trip exactly", "[data]") {
  TempDir dir;
  const std::vector<uint8_t> pixels = pixel_data(5, 4, 3);
  const std::vector<uint8_t> labels = {3, 0, 9, 1, 7};
  for (bool gz : {false, true}) {
    const std::string ip = dir.file(gz ? "img.gz" : "img"), lp = dir.file(gz ? "lab.gz" : "lab");
    auto write = gz ? test::write_gz : test::write_bytes;
    write(ip, test::idx_bytes({5, 4, 3}, pixels));
    write(lp, test::idx_bytes({5}, labels));

    Tensor raw = read_idx_u8(ip, 3);
    CHECK(raw.sizes() == Shape{5, 4, 3});
    CHECK(raw.to_vector<uint8_t>() == pixels);

    auto ds = load_idx_dataset(ip, lp, 10, "mnist");
    REQUIRE(ds->size() == 5);
    CHECK(ds->channels() == 1);
    CHECK(ds->height() == 4);
    CHECK(ds->width() == 3);
    CHECK(ds->images().sizes() == Shape{5, 1, 4, 3});
    CHECK(ds->labels() == std::vector<int64_t>{3, 0, 9, 1, 7});
    const Example ex = ds->get(2);
    CHECK(ex.label == 9);
    CHECK(ex.input.sizes() == Shape{1, 4, 3});
    CHECK(ex.input.dtype() == DType::u8);
    CHECK(ex.input.to_vector<uint8_t>() ==
          std::vector<uint8_t>(pixels.begin() + 2 * 12, pixels.begin() + 3 * 12));
    // get() is a view of the one buffer, not a copy.
    CHECK(ex.input.storage() == ds->images().storage());
  }
}

TEST_CASE("idx: the MNIST file names under a root, .gz preferred, raw accepted", "[data]") {
  TempDir dir;
  test::write_gz(dir.file("train-images-idx3-ubyte.gz"), test::idx_bytes({3, 2, 2}, pixel_data(3, 2, 2)));
  test::write_gz(dir.file("train-labels-idx1-ubyte.gz"), test::idx_bytes({3}, {1, 2, 3}));
  test::write_bytes(dir.file("t10k-images-idx3-ubyte"), test::idx_bytes({2, 2, 2}, pixel_data(2, 2, 2)));
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte"), test::idx_bytes({2}, {4, 5}));
  auto train = make_image_dataset("fashion-mnist", dir.str(), "train");
  CHECK(train->size() == 3);
  CHECK(train->name() == "fashion-mnist");
  CHECK(train->num_classes() == 10);
  CHECK(train->get(1).label == 2);
  auto test_split = make_image_dataset("mnist", dir.str(), "test");
  CHECK(test_split->size() == 2);
  CHECK(test_split->get(1).label == 5);
  CHECK_THROWS_WITH(make_image_dataset("mnist", dir.str(), "validation"),
                    Contains("mnist") && Contains("'validation'") && Contains("train or test"));
}

TEST_CASE("idx: malformed files are errors naming the file and the position", "[data]") {
  TempDir dir;
  const std::string ip = dir.file("images"), lp = dir.file("labels");
  const std::vector<uint8_t> pixels = pixel_data(5, 4, 3);  // records of 12 bytes after a 16-byte header
  test::write_bytes(lp, test::idx_bytes({5}, {0, 1, 2, 3, 4}));

  SECTION("missing file") {
    const std::string missing = dir.file("nope-idx3-ubyte.gz");
    CHECK_THROWS_WITH(read_idx_u8(missing, 3), Contains(missing) && Contains("No such file"));
    CHECK_THROWS_WITH(load_fashion_mnist(dir.str(), "train"),
                      Contains(dir.file("train-images-idx3-ubyte.gz")) && Contains("cannot open"));
  }
  SECTION("wrong magic: a label file where images are expected") {
    test::write_bytes(ip, test::idx_bytes({5}, {0, 1, 2, 3, 4}));
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("magic") && Contains("byte offset 0") &&
                                              Contains("expected 00 00 08 03") && Contains("got 00 00 08 01"));
  }
  SECTION("wrong magic: not unsigned bytes") {
    std::vector<uint8_t> b = test::idx_bytes({5, 4, 3}, pixels);
    b[2] = 0x0D;  // float
    test::write_bytes(ip, b);
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("byte offset 0") && Contains("got 00 00 0d 03"));
  }
  SECTION("truncated inside the header") {
    std::vector<uint8_t> b = test::idx_bytes({5, 4, 3}, {});
    b.resize(10);
    test::write_bytes(ip, b);
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("truncated") && Contains("byte offset 8") &&
                                              Contains("ends at byte offset 10"));
  }
  SECTION("truncated data (raw): names the end offset and the cut record") {
    std::vector<uint8_t> b = test::idx_bytes({5, 4, 3}, pixels);
    b.resize(16 + 3 * 12 + 6);  // half of record 3
    test::write_bytes(ip, b);
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("truncated") &&
                                              Contains("ends at byte offset 58") && Contains("record 3"));
  }
  SECTION("truncated data (gzip stream complete but short)") {
    std::vector<uint8_t> b = test::idx_bytes({5, 4, 3}, pixels);
    b.resize(16 + 12);
    test::write_gz(ip, b);
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("ends at byte offset 28") && Contains("record 1"));
  }
  SECTION("truncated gzip stream") {
    std::vector<uint8_t> data(16 + 5 * 4000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
    std::vector<uint8_t> b = test::idx_bytes({5, 40, 100}, data);
    const std::string gz = dir.file("cut.gz");
    test::write_gz(gz, b);
    std::vector<uint8_t> compressed(std::filesystem::file_size(gz));
    std::ifstream(gz, std::ios::binary).read(reinterpret_cast<char*>(compressed.data()), compressed.size());
    compressed.resize(compressed.size() / 2);
    test::write_bytes(gz, compressed);
    CHECK_THROWS_WITH(read_idx_u8(gz, 3), Contains(gz) && Contains("byte offset"));
  }
  SECTION("wrong record count: more data than the header declares") {
    std::vector<uint8_t> b = test::idx_bytes({5, 4, 3}, pixel_data(6, 4, 3));
    test::write_bytes(ip, b);
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("wrong record count") &&
                                              Contains("declares 5 records") && Contains("byte offset 76"));
  }
  SECTION("a zero image size") {
    test::write_bytes(ip, test::idx_bytes({5, 0, 3}, {}));
    CHECK_THROWS_WITH(read_idx_u8(ip, 3), Contains(ip) && Contains("size 1") && Contains("byte offset 8"));
  }
  SECTION("label out of range names the label file, the record and its offset") {
    test::write_bytes(ip, test::idx_bytes({5, 4, 3}, pixels));
    test::write_bytes(lp, test::idx_bytes({5}, {0, 1, 10, 3, 4}));
    CHECK_THROWS_WITH(load_idx_dataset(ip, lp, 10, "fashion-mnist"),
                      Contains(lp) && Contains("label 10") && Contains("record 2") && Contains("byte offset 10") &&
                          Contains("[0, 10)"));
  }
  SECTION("image and label counts differ") {
    test::write_bytes(ip, test::idx_bytes({5, 4, 3}, pixels));
    test::write_bytes(lp, test::idx_bytes({4}, {0, 1, 2, 3}));
    CHECK_THROWS_WITH(load_idx_dataset(ip, lp, 10, "mnist"),
                      Contains(ip) && Contains(lp) && Contains("holds 5 records") && Contains("holds 4"));
  }
}
