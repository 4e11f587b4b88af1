// Pathfinder / Path-X generation (DATA.md section 6, PAPERS.md 1.7): the
// parameter table and the curriculum interpolation, the metadata line
// (equal to the release's sample line), the files' format (8-bit grey PNGs of
// the right size decoded by stb_image, 11 metadata fields), byte-scaling,
// the two markers, determinism over thread counts, and the PNG codec.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "data/io.h"
#include "data/lra_pathfinder.h"
#include "data/png.h"
#include "tests/data/data_test_util.h"

using Catch::Matchers::Contains;
using namespace dimix;
using dimix::test::TempDir;

namespace {

std::vector<std::string> split_spaces(const std::string& line) {
  std::istringstream is(line);
  std::vector<std::string> f;
  for (std::string t; is >> t;) f.push_back(t);
  return f;
}

std::string read_text(const std::string& path) {
  const auto b = data::read_file_bytes(path);
  return std::string(b.begin(), b.end());
}

// 4-connected components of pixels equal to `value`.
int components(const std::vector<uint8_t>& px, int W, uint8_t value) {
  std::vector<int> seen(px.size(), 0);
  int count = 0;
  for (int s = 0; s < W * W; ++s) {
    if (px[s] != value || seen[s]) continue;
    ++count;
    std::vector<int> stack{s};
    seen[s] = 1;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      const int y = p / W, x = p % W;
      const int nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[1] < 0 || n[0] >= W || n[1] >= W) continue;
        const int q = n[0] * W + n[1];
        if (px[q] == value && !seen[q]) {
          seen[q] = 1;
          stack.push_back(q);
        }
      }
    }
  }
  return count;
}

}  // namespace

TEST_CASE("pathfinder: LRA parameters and the release's metadata line", "[data][lra]") {
  const auto p32 = lra::pathfinder_params(32, 6);
  CHECK(p32.distractor_length == 2);
  CHECK(p32.num_distractors == 10);  // 20 // 2
  // The real line from pathfinder32/curv_baseline/metadata (DATA.md section 6).
  CHECK(lra::pathfinder_metadata_line(p32, 0, 0, 0, 1) == "imgs/0 sample_0.png 0 0 1.0 6 2 2 0.5 1 1");
  const auto p32h = lra::pathfinder_params(32, 14);
  CHECK(p32h.distractor_length == 4);
  CHECK(p32h.num_distractors == 5);
  const auto p64 = lra::pathfinder_params(64, 9);
  CHECK(p64.num_distractors == 7);  // 22 // 3
  CHECK(lra::pathfinder_metadata_line(p64, 3, 17, 1, 1) == "imgs/3 sample_17.png 17 1 1.8 9 3 5 1 1 1");
  const auto p128 = lra::pathfinder_params(128, 14);
  CHECK(p128.num_distractors == 8);  // 35 // 4
  CHECK(p128.margins == std::vector<int>{2, 3});
  CHECK(lra::pathfinder_metadata_line(p128, 0, 1, 1, 3) == "imgs/0 sample_1.png 1 1 1.8 14 4 5 1.5 3 1");
  CHECK(lra::pathfinder_params(256, 14).num_distractors == 7);  // 30 // 4
  CHECK_THROWS_WITH(lra::pathfinder_params(48, 14), Contains("32, 64, 128 or 256"));
  CHECK_THROWS_WITH(lra::pathfinder_params(32, 7), Contains("6 (curv_baseline), 9 or 14"));
}

TEST_CASE("pathfinder: Path-X curriculum variants interpolate as LRA_pathfinder.py", "[data][lra]") {
  const auto nogap = lra::pathx_curriculum_params("nogap");
  CHECK(nogap.window == 128);
  CHECK(nogap.margins == std::vector<int>{1});
  CHECK(nogap.num_distractors == 5);
  CHECK(nogap.snake_contrasts[0] == Approx(0.9));
  const auto a0 = lra::pathx_curriculum_params("0.0");  // the "with gap" end point
  CHECK(a0.margins == std::vector<int>{2});
  CHECK(a0.num_distractors == Approx(5));
  CHECK(a0.snake_contrasts[0] == Approx(0.9));
  const auto a75 = lra::pathx_curriculum_params("0.75");
  CHECK(a75.margins == std::vector<int>{2, 3});                 // round(2.75) = 3
  CHECK(a75.num_distractors == Approx(0.25 * 5 + 0.75 * 17));  // 14
  CHECK(a75.snake_contrasts[0] == Approx(0.25 * 0.9 + 0.75 * 0.76666666666));
  CHECK(a75.thickness == 1.5);
  CHECK(a75.seed_distance == 20);
  const auto a125 = lra::pathx_curriculum_params("1.25");  // extrapolated past Path-X
  CHECK(a125.margins == std::vector<int>{2, 3});
  CHECK(a125.num_distractors == Approx(20));
  CHECK(a125.snake_contrasts[0] == Approx(-0.25 * 0.9 + 1.25 * 0.76666666666));
  CHECK(lra::pathx_curriculum_params("0.5").margins == std::vector<int>{2});  // np.round(2.5) = 2
  CHECK_THROWS_WITH(lra::pathx_curriculum_params("wide"), Contains("'nogap' or an interpolation weight"));
  lra::PathfinderParams bad = lra::pathfinder_params(32, 14);
  bad.thickness = 0.75;  // 1.5 at aa 2
  CHECK_THROWS_WITH(lra::validate(bad), Contains("does not break even"));
}

TEST_CASE("pathfinder: generated files have the release layout and format", "[data][lra]") {
  TempDir dir;
  lra::PathfinderRunOptions o;
  o.params = lra::pathfinder_params(32, 14);
  o.count = 14;
  o.per_batch = 10;
  o.seed = 5;
  o.threads = 2;
  int64_t reports = 0, last_done = 0;
  const int64_t positives = lra::generate_pathfinder(dir.str(), o, [&](int64_t d, int64_t t) {
    ++reports;
    last_done = d;
    CHECK(t == 14);
  });
  CHECK(reports >= 1);
  CHECK(last_done == 14);
  int64_t labels_seen[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    const std::string meta = read_text(dir.file("metadata/" + std::to_string(k) + ".npy"));
    REQUIRE(!meta.empty());
    CHECK(meta.back() == '\n');
    std::istringstream is(meta);
    int i = 0;
    for (std::string line; std::getline(is, line); ++i) {
      const auto f = split_spaces(line);
      REQUIRE(f.size() == 11);
      CHECK(f[0] == "imgs/" + std::to_string(k));
      CHECK(f[1] == "sample_" + std::to_string(i) + ".png");
      CHECK(f[2] == std::to_string(i));
      REQUIRE((f[3] == "0" || f[3] == "1"));
      ++labels_seen[f[3] == "1"];
      CHECK(std::vector<std::string>(f.begin() + 4, f.end()) ==
            std::vector<std::string>{"1.0", "14", "4", "2", "0.5", "1", "1"});
      // The PNG: 8-bit greyscale (IHDR bit depth 8, colour type 0), 32 x 32.
      const std::string png = dir.file(f[0] + "/" + f[1]);
      const auto bytes = data::read_file_bytes(png);
      REQUIRE(bytes.size() > 33);
      CHECK(bytes[24] == 8);
      CHECK(bytes[25] == 0);
      const data::GrayImage img = data::read_png_gray(png);
      CHECK(img.width == 32);
      CHECK(img.height == 32);
      CHECK(img.channels_in_file == 1);
      // Byte-scaled: black background, brightest element at 255.
      CHECK(*std::min_element(img.pixels.begin(), img.pixels.end()) == 0);
      CHECK(*std::max_element(img.pixels.begin(), img.pixels.end()) == 255);
      // The image equals the single-image generator's for that index.
      const auto again = lra::generate_pathfinder_image(o.params, o.seed, static_cast<uint64_t>(k * 10 + i));
      CHECK(again.pixels == img.pixels);
      CHECK(again.label == std::stoi(f[3]));
    }
    CHECK(i == (k == 0 ? 10 : 4));
  }
  CHECK(labels_seen[1] == positives);
  CHECK(labels_seen[0] + labels_seen[1] == 14);
  CHECK(labels_seen[0] > 0);
  CHECK(labels_seen[1] > 0);

  // Same seed -> identical bytes on another thread count; another seed differs.
  TempDir again, other;
  o.threads = 3;
  lra::generate_pathfinder(again.str(), o);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.str())) {
    if (!e.is_regular_file()) continue;
    const std::string rel = std::filesystem::relative(e.path(), dir.str()).string();
    CHECK(read_text(e.path().string()) == read_text(again.file(rel)));
  }
  o.seed = 6;
  lra::generate_pathfinder(other.str(), o);
  CHECK(read_text(dir.file("imgs/0/sample_0.png")) != read_text(other.file("imgs/0/sample_0.png")));
}

TEST_CASE("pathfinder: Path-X images carry exactly two markers", "[data][lra]") {
  // In Path-X the markers (contrast 1.0) outshine the snakes (0.9), so the
  // pixels at 255 are the two marker discs and nothing else.
  const auto p = lra::pathfinder_params(128, 14);
  int labels[2] = {0, 0};
  for (uint64_t i = 0; i < 6; ++i) {
    const auto img = lra::generate_pathfinder_image(p, 21, i);
    REQUIRE(img.pixels.size() == 128u * 128u);
    CHECK((img.margin == 2 || img.margin == 3));
    ++labels[img.label];
    const int blobs = components(img.pixels, 128, 255);
    CHECK((blobs == 2 || blobs == 1));  // 1 only if the discs touch
    int bright = 0;
    for (uint8_t v : img.pixels) bright += v == 255;
    CHECK(bright >= 2);
    CHECK(bright <= 2 * 29);  // a disc of radius 3 covers about 29 px, its solid core fewer
  }
  CHECK(labels[0] + labels[1] == 6);
}

TEST_CASE("pathfinder: a positive and a negative differ only in the terminal marker", "[data][lra]") {
  for (int window : {32, 128}) {
    const auto p = lra::pathfinder_params(window, 14);
    const int reach = static_cast<int>(std::ceil(p.marker_radius)) + 1;  // a marker's footprint half-width
    for (uint64_t i = 0; i < 3; ++i) {
      const auto neg = lra::generate_pathfinder_image(p, 8, i, 0), pos = lra::generate_pathfinder_image(p, 8, i, 1);
      CHECK(neg.label == 0);
      CHECK(pos.label == 1);
      CHECK(neg.margin == pos.margin);
      // The differing pixels fit in two marker footprints (the old and the new terminal marker).
      std::vector<std::pair<int, int>> diff;
      for (int y = 0; y < window; ++y)
        for (int x = 0; x < window; ++x)
          if (neg.pixels[static_cast<size_t>(y * window + x)] != pos.pixels[static_cast<size_t>(y * window + x)])
            diff.emplace_back(y, x);
      CHECK(!diff.empty());
      const int side = 2 * reach + 1;
      CHECK(diff.size() <= static_cast<size_t>(2 * side * side));
      // Greedy cover by two footprints: every differing pixel is near the first one or near one other.
      auto near = [&](std::pair<int, int> a, std::pair<int, int> b) {
        return std::abs(a.first - b.first) <= 2 * reach && std::abs(a.second - b.second) <= 2 * reach;
      };
      std::vector<std::pair<int, int>> rest;
      for (const auto& d : diff)
        if (!near(d, diff.front())) rest.push_back(d);
      for (const auto& d : rest) CHECK(near(d, rest.front()));
    }
  }
  CHECK_THROWS_WITH(lra::generate_pathfinder_image(lra::pathfinder_params(32, 6), 0, 0, 2), Contains("force_label"));
}

TEST_CASE("png: grey round trip and decoding errors name the file", "[data][lra]") {
  TempDir dir;
  std::vector<uint8_t> px(5 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 17);
  data::write_png_gray(dir.file("a.png"), 5, 3, px.data());
  const auto img = data::read_png_gray(dir.file("a.png"));
  CHECK(img.width == 5);
  CHECK(img.height == 3);
  CHECK(img.channels_in_file == 1);
  CHECK(img.pixels == px);
  test::write_bytes(dir.file("bad.png"), {0x89, 'P', 'N', 'G', 1, 2, 3});
  CHECK_THROWS_WITH(data::read_png_gray(dir.file("bad.png")), Contains("bad.png") && Contains("cannot decode"));
  test::write_bytes(dir.file("empty.png"), {});
  CHECK_THROWS_WITH(data::read_png_gray(dir.file("empty.png")), Contains("empty.png") && Contains("empty"));
  CHECK_THROWS_WITH(data::read_png_gray(dir.file("none.png")), Contains("none.png"));
}
