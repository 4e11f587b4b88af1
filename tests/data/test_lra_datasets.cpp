// The LRA loaders on hand-written fixtures and generated data: Text (a tiny
// aclImdb tree), Retrieval (a 3-line AAN TSV), Image (CIFAR-10 files ->
// TF-grey tokens + 1, 45k/5k-style split), Pathfinder (generated images,
// numeric metadata order, 80/10/10 split, tokens = pixel + 1), and every
// error naming its file and line or example: malformed lines, missing,
// empty (skipped), corrupt and wrongly sized PNGs.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "data/io.h"
#include "data/lra_datasets.h"
#include "data/lra_pathfinder.h"
#include "data/png.h"
#include "tests/data/data_test_util.h"

using Catch::Matchers::Contains;
using namespace dimix;
using dimix::test::TempDir;

namespace {

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::vector<int64_t> tokens_of(const std::string& s, size_t pad_to) {
  std::vector<int64_t> t;
  for (unsigned char c : s) t.push_back(int64_t(c) + 1);
  t.resize(pad_to, 0);
  return t;
}

}  // namespace

TEST_CASE("lra text: aclImdb bytes + 1, neg then pos in id order, cut and padded", "[data][lra]") {
  TempDir dir;
  const std::string root = dir.file("aclImdb");
  test::write_bytes(root + "/train/pos/10_9.txt", bytes_of("\xc3\xa9t\xc3\xa9"));
  test::write_bytes(root + "/train/pos/1_7.txt", bytes_of("Good!"));
  test::write_bytes(root + "/train/neg/0_2.txt", bytes_of("bad"));
  test::write_bytes(root + "/train/neg/notes.md", bytes_of("ignored: not a .txt"));
  test::write_bytes(root + "/test/pos/3_8.txt", bytes_of("ok"));
  test::write_bytes(root + "/test/neg/4_1.txt", bytes_of("no"));

  const auto train = load_lra_text(dir.str(), "train", {4, 6});
  REQUIRE(train->size() == 3);
  CHECK(train->num_classes() == 2);
  CHECK(train->get(0).label == 0);
  CHECK(train->get(0).input.to_vector<int64_t>() == tokens_of("bad", 6));
  CHECK(train->get(1).label == 1);
  CHECK(train->get(1).input.to_vector<int64_t>() == tokens_of("Good", 6));  // cut to 4 bytes
  CHECK(train->get(2).input.to_vector<int64_t>() == std::vector<int64_t>{0xc3 + 1, 0xa9 + 1, 't' + 1, 0xc3 + 1, 0, 0});
  // val and test are both the test folder (LRA); the aclImdb folder itself also works as the root.
  const auto val = load_lra_text(root, "val", {4, 6});
  REQUIRE(val->size() == 2);
  CHECK(val->get(0).input.to_vector<int64_t>() == tokens_of("no", 6));
  CHECK(val->get(1).input.to_vector<int64_t>() == tokens_of("ok", 6));
  CHECK(make_lra_dataset("text", dir.str(), "test")->get(1).input.sizes() == Shape{4096});

  std::filesystem::remove_all(root + "/test/neg");
  CHECK_THROWS_WITH(load_lra_text(dir.str(), "test"), Contains("test/neg") && Contains("not found"));
  CHECK_THROWS_WITH(load_lra_text(dir.str(), "train", {8, 4}), Contains("max_length <= seq_len"));
}

TEST_CASE("lra retrieval: AAN pairs, float labels, two documents, errors with lines", "[data][lra]") {
  TempDir dir;
  test::write_bytes(dir.file("new_aan_pairs.train.tsv"),
                    bytes_of("1\tid_a\tid_b\tab\tcd\n0.0\tx\ty\t\tzzz\r\n1.0\tp\tq\thello\tw\n"));
  const auto ds = load_lra_retrieval(dir.str(), "train", {4, 5});
  REQUIRE(ds->size() == 3);
  CHECK(ds->num_classes() == 2);
  const Example e0 = ds->get(0);
  CHECK(e0.label == 1);
  CHECK(e0.input.to_vector<int64_t>() == tokens_of("ab", 5));
  CHECK(e0.input2.to_vector<int64_t>() == tokens_of("cd", 5));
  const Example e1 = ds->get(1);
  CHECK(e1.label == 0);
  CHECK(e1.input.to_vector<int64_t>() == tokens_of("", 5));
  CHECK(e1.input2.to_vector<int64_t>() == tokens_of("zzz", 5));  // the "\r" is not text
  const Example e2 = ds->get(2);
  CHECK(e2.label == 1);
  CHECK(e2.input.to_vector<int64_t>() == tokens_of("hell", 5));
  CHECK(e2.input2.to_vector<int64_t>() == tokens_of("w", 5));
  CHECK(parse_label("1.0", 2) == 1);
  CHECK(parse_label("0", 2) == 0);
  CHECK(parse_label("2", 2) == -1);
  CHECK(parse_label("0.5", 2) == -1);
  CHECK(parse_label("x", 2) == -1);

  // "val" reads the eval file; tsv_data/ is searched too.
  test::write_bytes(dir.file("tsv_data/new_aan_pairs.eval.tsv"), bytes_of("0\ta\tb\tq\tr\n1\ta\tb\tc\n"));
  CHECK_THROWS_WITH(load_lra_retrieval(dir.str(), "val"),
                    Contains("new_aan_pairs.eval.tsv") && Contains("line 2") && Contains("5 tab-separated columns"));
  test::write_bytes(dir.file("new_aan_pairs.test.tsv"), bytes_of("0\ta\tb\tq\tr\n\n2\ta\tb\tc\td\n"));
  CHECK_THROWS_WITH(load_lra_retrieval(dir.str(), "test"),
                    Contains("new_aan_pairs.test.tsv") && Contains("line 3") && Contains("label must be 0 or 1"));
  std::filesystem::remove(dir.file("new_aan_pairs.test.tsv"));
  CHECK_THROWS_WITH(load_lra_retrieval(dir.str(), "test"), Contains("new_aan_pairs.test.tsv") && Contains("not found"));
}

TEST_CASE("lra image: CIFAR-10 to TF grey tokens + 1 with the last 5000 as val", "[data][lra]") {
  CHECK(tf_rgb_to_gray(0, 0, 0) == 0);
  CHECK(tf_rgb_to_gray(255, 255, 255) == 255);
  CHECK(tf_rgb_to_gray(100, 150, 200) == 141);  // (29.89 + 88.05 + 22.8) / 255 * 255.5 = 141.02
  CHECK(tf_rgb_to_gray(255, 0, 0) == 76);       // 0.2989 * 255.5 = 76.37

  TempDir dir;
  // 5 files of 1001 records: 5005 training images -> train 5, val 5000.
  auto pixel = [](int file, int rec, int i) { return uint8_t((file * 131 + rec * 7 + i * 13) % 256); };
  for (int b = 1; b <= 5; ++b) {
    std::vector<uint8_t> f;
    for (int r = 0; r < 1001; ++r) {
      f.push_back(uint8_t((b + r) % 10));
      for (int i = 0; i < 3072; ++i) f.push_back(pixel(b, r, i));
    }
    test::write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), f);
  }
  std::vector<uint8_t> t;
  t.push_back(3);
  for (int i = 0; i < 3072; ++i) t.push_back(pixel(0, 0, i));
  test::write_bytes(dir.file("test_batch.bin"), t);

  auto expect = [&](int file, int rec, int i) {
    const double y = (0.2989 * pixel(file, rec, i) + 0.587 * pixel(file, rec, 1024 + i) + 0.114 * pixel(file, rec, 2048 + i)) /
                     255.0 * 255.5;
    return int64_t(std::floor(y)) + 1;
  };
  const auto train = load_lra_image(dir.str(), "train");
  REQUIRE(train->size() == 5);
  const auto x0 = train->get(0).input.to_vector<int64_t>();
  REQUIRE(x0.size() == 1024);
  for (int i : {0, 1, 33, 500, 1023}) CHECK(x0[i] == expect(1, 0, i));
  CHECK(train->get(4).label == (1 + 4) % 10);
  const auto val = make_lra_dataset("image", dir.str(), "val");
  REQUIRE(val->size() == 5000);
  // val starts at training image 5: file 1, record 5.
  CHECK(val->get(0).input.to_vector<int64_t>()[7] == expect(1, 5, 7));
  CHECK(val->get(0).label == 6);
  CHECK(val->get(4999).input.to_vector<int64_t>()[1000] == expect(5, 1000, 1000));
  const auto test_set = load_lra_image(dir.str(), "test");
  REQUIRE(test_set->size() == 1);
  CHECK(test_set->get(0).label == 3);
  CHECK(test_set->get(0).input.to_vector<int64_t>()[2] == expect(0, 0, 2));
  CHECK_THROWS_WITH(make_lra_dataset("image", dir.str(), "train", {2048, 2048}), Contains("fixed sequence length"));
}

TEST_CASE("lra pathfinder: generated data, numeric metadata order, split, tokens", "[data][lra]") {
  TempDir dir;
  lra::PathfinderRunOptions o;
  o.params = lra::pathfinder_params(32, 6);
  o.count = 22;
  o.per_batch = 2;  // metadata 0..10: numeric order differs from the names' order
  o.seed = 9;
  o.threads = 2;
  lra::generate_pathfinder(dir.str(), o);

  const auto train = make_lra_dataset("pathfinder32", dir.str(), "train");
  const auto val = load_lra_pathfinder(dir.str(), "val", 32);
  const auto test_set = load_lra_pathfinder(dir.str(), "test", 32);
  CHECK(train->size() == 17);  // floor(22 * 0.8)
  CHECK(val->size() == 2);
  CHECK(test_set->size() == 3);
  CHECK(train->num_classes() == 2);
  // Example j of the whole order is image j: train 2 = imgs/1/sample_0, test 2 = imgs/10/sample_1.
  auto check_example = [&](const Dataset& ds, int64_t at, int64_t image) {
    const auto img = data::read_png_gray(dir.file("imgs/" + std::to_string(image / 2) + "/sample_" +
                                                  std::to_string(image % 2) + ".png"));
    const Example ex = ds.get(at);
    REQUIRE(ex.input.sizes() == Shape{1024});
    const auto got = ex.input.to_vector<int64_t>();
    int bad = 0;
    for (size_t i = 0; i < 1024; ++i) bad += got[i] != int64_t(img.pixels[i]) + 1;
    CHECK(bad == 0);
    CHECK(ex.label == lra::generate_pathfinder_image(o.params, o.seed, static_cast<uint64_t>(image)).label);
  };
  check_example(*train, 2, 2);
  check_example(*train, 16, 16);
  check_example(*val, 0, 17);
  check_example(*test_set, 2, 21);

  // An empty PNG is skipped (LRA's filter).
  test::write_bytes(dir.file("imgs/0/sample_1.png"), {});
  CHECK(load_lra_pathfinder(dir.str(), "train", 32)->size() == 16);  // floor(21 * 0.8)
  check_example(*load_lra_pathfinder(dir.str(), "train", 32), 1, 2);

  // A corrupt or wrongly sized PNG: Error at get() naming the file and the example.
  test::write_bytes(dir.file("imgs/1/sample_1.png"), {0x89, 'P', 'N', 'G', 0, 0, 0});
  const auto damaged = load_lra_pathfinder(dir.str(), "train", 32);
  CHECK_THROWS_WITH(damaged->get(2), Contains("imgs/1/sample_1.png") && Contains("example 2") &&
                                         Contains("metadata/1.npy") && Contains("line 2"));
  std::vector<uint8_t> small(16 * 16, 7);
  data::write_png_gray(dir.file("imgs/1/sample_1.png"), 16, 16, small.data());
  CHECK_THROWS_WITH(damaged->get(2), Contains("imgs/1/sample_1.png") && Contains("16x16") && Contains("expects 32x32"));
  CHECK_THROWS_WITH(load_lra_pathfinder(dir.str(), "train", 64)->get(0), Contains("expects 64x64"));

  // A missing PNG and a malformed metadata line: Errors naming file and line.
  std::filesystem::remove(dir.file("imgs/2/sample_0.png"));
  CHECK_THROWS_WITH(load_lra_pathfinder(dir.str(), "train", 32),
                    Contains("imgs/2/sample_0.png") && Contains("metadata/2.npy") && Contains("line 1") && Contains("missing"));
  test::write_bytes(dir.file("metadata/2.npy"), bytes_of("imgs/1 sample_0.png 0 1 1.0 6 2 2 0.5 1 1\nimgs/1 sample_0.png 0\n"));
  CHECK_THROWS_WITH(load_lra_pathfinder(dir.str(), "train", 32),
                    Contains("metadata/2.npy") && Contains("line 2") && Contains("at least 4"));
  test::write_bytes(dir.file("metadata/2.npy"), bytes_of("imgs/1 sample_0.png 0 yes\n"));
  CHECK_THROWS_WITH(load_lra_pathfinder(dir.str(), "train", 32),
                    Contains("metadata/2.npy") && Contains("line 1") && Contains("must be 0 or 1"));
  CHECK_THROWS_WITH(load_lra_pathfinder(dir.file("nowhere"), "train", 32), Contains("nowhere/metadata") && Contains("not found"));
}

TEST_CASE("lra pathfinder: metadata also read from a real NPY string array", "[data][lra]") {
  TempDir dir;
  std::vector<uint8_t> px(32 * 32, 0);
  px[5] = 255;
  data::write_png_gray(dir.file("p.png"), 32, 32, px.data());
  // np.save(np.array([["", "p.png", "0", "1"]])): '<U5', shape (1, 4), UTF-32LE.
  std::string header = "{'descr': '<U5', 'fortran_order': False, 'shape': (1, 4), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::vector<uint8_t> npy = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, uint8_t(header.size()), uint8_t(header.size() >> 8)};
  npy.insert(npy.end(), header.begin(), header.end());
  for (const std::string cell : {".", "p.png", "0", "1"})
    for (size_t k = 0; k < 5; ++k) {
      const uint32_t c = k < cell.size() ? uint8_t(cell[k]) : 0;
      for (int b = 0; b < 4; ++b) npy.push_back(uint8_t(c >> (8 * b)));
    }
  test::write_bytes(dir.file("metadata/0.npy"), npy);
  const auto ds = load_lra_pathfinder(dir.str(), "test", 32);  // one image: all in test
  REQUIRE(ds->size() == 1);
  CHECK(ds->get(0).label == 1);
  CHECK(ds->get(0).input.to_vector<int64_t>()[5] == 256);
  CHECK(ds->get(0).input.to_vector<int64_t>()[6] == 1);
}

TEST_CASE("lra tasks: names, lengths and vocabularies", "[data][lra]") {
  CHECK(lra_task_info("listops").lengths.seq_len == 2048);
  CHECK(lra_task_info("listops").vocab == 17);
  CHECK(lra_task_info("text").lengths.max_length == 4000);
  CHECK(lra_task_info("retrieval").dual);
  CHECK(lra_task_info("image").classes == 10);
  CHECK(lra_task_info("pathx").name == "pathfinder128");
  CHECK(lra_task_info("pathx").lengths.seq_len == 16384);
  CHECK(lra_task_info("pathfinder64").resolution == 64);
  CHECK_THROWS_WITH(lra_task_info("pathfinder48"), Contains("unknown task 'pathfinder48'") && Contains("listops"));
}
