// safetensors I/O: bit-exact round-trips of every dtype and awkward shapes,
// the exact bytes the writer produces, a file written by hand (reordered
// keys, whitespace, escapes) and every load error, each naming the file.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/rng.h"
#include "core/safetensors.h"

using namespace dimix;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("dimix_safetensors_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  // Removes the directory when the test binary exits.
  static const struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  return dir;
}
std::string temp_file(const std::string& name) { return (temp_dir() / name).string(); }

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>(n >> (8 * k));
  return s;
}
template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
// A file from a header text and a data section.
std::string file_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// The bytes of a tensor's elements in row-major order.
std::string element_bytes(const Tensor& t) {
  Tensor c = t.contiguous_raw();
  return std::string(static_cast<const char*>(c.raw_data()), c.numel() * dtype_size(c.dtype()));
}

}  // namespace

TEST_CASE("safetensors: bit-exact round-trip of every dtype and shape", "[safetensors]") {
  Tensor f32 = from_vector<float>({1.5f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                                   std::numeric_limits<float>::infinity(), 1e-45f, 3.14159265f},
                                  {2, 3});
  Tensor f64 = randn({2, 2, 3}, DType::f64);
  Tensor i32 = from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0, 7}, {4});
  Tensor i64 = from_vector<int64_t>({int64_t{1} << 40, -(int64_t{1} << 50), 3}, {3, 1});
  Tensor u8 = from_vector<uint8_t>({0, 1, 128, 255, 42}, {5});
  Tensor scalar = scalar_tensor(2.75, DType::f64);
  Tensor empty_2d = empty({0, 3}, DType::f32);
  Tensor empty_1d = empty({0}, DType::i64);
  Tensor base = arange(12, DType::f32);
  Tensor transposed = base.as_strided({4, 3}, {1, 4}, 0);  // a non-contiguous view
  REQUIRE(!transposed.is_contiguous());

  const NamedTensors in = {{"weights.f32", f32}, {"f64", f64},       {"i32", i32},
                           {"i64", i64},         {"u8", u8},         {"scalar", scalar},
                           {"empty", empty_2d},  {"empty1", empty_1d}, {"transposed", transposed}};
  const std::string path = temp_file("roundtrip.safetensors");
  save_safetensors(path, in, {{"epoch", "3"}});
  CHECK(!fs::exists(path + ".tmp"));

  const SafetensorsContents out = load_safetensors(path);
  REQUIRE(out.tensors.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO(in[i].first);
    CHECK(out.tensors[i].first == in[i].first);  // file order is the given order
    const Tensor& t = out.tensors[i].second;
    CHECK(t.dtype() == in[i].second.dtype());
    CHECK(t.sizes() == in[i].second.sizes());
    CHECK(t.is_contiguous());
    CHECK(element_bytes(t) == element_bytes(in[i].second));
  }
  CHECK(out.at("transposed").to_vector<float>() ==
        std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(out.at("scalar").dim() == 0);
  CHECK(out.at("scalar").item() == 2.75);
  CHECK(out.metadata == std::map<std::string, std::string>{{"epoch", "3"}});
  CHECK(out.contains("u8"));
  CHECK(!out.contains("nope"));
  CHECK_THROWS_WITH(out.at("nope"), Contains("'nope'") && Contains("roundtrip.safetensors"));
}

TEST_CASE("safetensors: metadata with awkward strings round-trips", "[safetensors]") {
  const std::map<std::string, std::string> meta = {
      {"quote\"key", "back\\slash"}, {"newline", "a\nb\tc\r"}, {"ctrl", std::string("x\x01y", 3)},
      {"utf8", "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"}, {"empty", ""}};
  const std::string path = temp_file("meta.safetensors");
  save_safetensors(path, {{"weird \"name\"\\", zeros({1})}}, meta);
  const auto out = load_safetensors(path);
  CHECK(out.metadata == meta);
  CHECK(out.tensors.at(0).first == "weird \"name\"\\");
}

TEST_CASE("safetensors: the writer's exact bytes", "[safetensors]") {
  const std::string path = temp_file("exact.safetensors");
  save_safetensors(path, {{"x", from_vector<float>({1.0f, 2.0f}, {2})}, {"n", from_vector<uint8_t>({9}, {1})}});
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("n":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  REQUIRE(padded.size() % 8 == 0);
  const std::string want = file_bytes(padded, raw(std::vector<float>{1.0f, 2.0f}) + std::string(1, '\x09'));
  CHECK(read_bytes(path) == want);
}

TEST_CASE("safetensors: a file written by hand loads", "[safetensors]") {
  // Keys in any order, whitespace everywhere, escapes in names, metadata in
  // the middle, and header order unlike data order: tensors come back in
  // data order.
  const std::string header =
      "{\n  \"b\\u00e9\" : { \"data_offsets\" : [ 8 , 16 ], \"shape\":[2] ,\"dtype\":\"I32\" },\n"
      "  \"__metadata__\": {\"format\": \"pt\", \"note\": \"tab\\there\"},\n"
      "\t\"a\": {\"shape\": [], \"dtype\": \"F64\", \"data_offsets\": [0, 8]},\r\n"
      "  \"e\": {\"dtype\": \"F32\", \"shape\": [2, 0], \"data_offsets\": [16, 16], \"extra\": [null, true, {\"x\": -1.5e3}]}\n"
      "}   ";
  const std::string data = raw(std::vector<double>{-0.25}) + raw(std::vector<int32_t>{17, -4});
  const std::string path = temp_file("by_hand.safetensors");
  write_bytes(path, file_bytes(header, data));
  const auto out = load_safetensors(path);
  REQUIRE(out.tensors.size() == 3);
  CHECK(out.tensors[0].first == "a");
  CHECK(out.tensors[1].first == "b\xc3\xa9");
  CHECK(out.tensors[2].first == "e");
  CHECK(out.tensors[0].second.dim() == 0);
  CHECK(out.tensors[0].second.item() == -0.25);
  CHECK(out.tensors[1].second.to_vector<int32_t>() == std::vector<int32_t>{17, -4});
  CHECK(out.tensors[2].second.sizes() == Shape{2, 0});
  CHECK(out.metadata.at("format") == "pt");
  CHECK(out.metadata.at("note") == "tab\there");
}

TEST_CASE("safetensors: every load error names the file and the problem", "[safetensors]") {
  const std::string path = temp_file("bad.safetensors");
  auto load_bytes = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    return load_safetensors(path);
  };
  const std::string good_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');

  CHECK_THROWS_WITH(load_safetensors(temp_file("missing.safetensors")),
                    Contains("missing.safetensors") && Contains("cannot open"));
  CHECK_THROWS_WITH(load_bytes("abc"), Contains("bad.safetensors") && Contains("truncated header"));
  CHECK_THROWS_WITH(load_bytes(le64(1000) + "{}"), Contains("bad.safetensors") && Contains("header length 1000") &&
                                                       Contains("beyond the end of the file"));
  CHECK_THROWS_WITH(load_bytes(le64(~uint64_t{0}) + "{}"), Contains("beyond the end of the file"));
  // Bad JSON, with the byte offset of the trouble.
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t" 1})", "")),
                    Contains("bad.safetensors") && Contains("bad JSON") && Contains("at byte 5") && Contains("':'"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32",}})", "")), Contains("at byte 20"));
  CHECK_THROWS_WITH(load_bytes(file_bytes("{" + good_entry, eight)), Contains("bad JSON") && Contains("end of the header"));
  CHECK_THROWS_WITH(load_bytes(file_bytes("{" + good_entry + "} x", eight)), Contains("after the end"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"a":"\q"})", "")), Contains("bad escape"));
  CHECK_THROWS_WITH(load_bytes(file_bytes("{" + good_entry + "," + good_entry + "}", eight)),
                    Contains("duplicate key \"t\""));
  CHECK_THROWS_WITH(load_bytes(file_bytes("[1, 2]", "")), Contains("not a JSON object"));
  // Well-formed JSON that is not a valid safetensors header.
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", eight)),
                    Contains("bad.safetensors") && Contains("'t'") && Contains("unknown dtype \"BF16\""));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", eight)),
                    Contains("'t'") && Contains("[0, 16]") && Contains("outside the data section of 8 bytes"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,4]}})", eight)),
                    Contains("outside the data section"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)),
                    Contains("span 8 bytes") && Contains("[3]") && Contains("needs 12"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight)),
                    Contains("non-negative integer") && Contains("-2"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", eight)),
                    Contains("non-negative integer"));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", eight)),
                    Contains("\"dtype\""));
  CHECK_THROWS_WITH(load_bytes(file_bytes(R"({"__metadata__":{"k":1}})", "")), Contains("metadata value of \"k\""));
  CHECK_THROWS_WITH(
      load_bytes(file_bytes(R"({"t":{"dtype":"F32","shape":[99999999999,99999999999],"data_offsets":[0,8]}})", eight)),
      Contains("too large"));
}

TEST_CASE("safetensors: save refuses bad input and never leaves a partial file", "[safetensors]") {
  const std::string path = temp_file("keep.safetensors");
  save_safetensors(path, {{"a", ones({2})}});
  const std::string before = read_bytes(path);
  CHECK_THROWS_WITH(save_safetensors(path, {{"a", ones({2})}, {"a", zeros({2})}}), Contains("'a' appears twice"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", ones({2})}}), Contains("reserved"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"u", Tensor()}}), Contains("'u' is undefined"));
  CHECK(read_bytes(path) == before);
  CHECK(!fs::exists(path + ".tmp"));
  const std::string nowhere = temp_file("no/such/dir/x.safetensors");
  CHECK_THROWS_WITH(save_safetensors(nowhere, {{"a", ones({2})}}), Contains("cannot create") && Contains("x.safetensors.tmp"));
  // Overwriting goes through the rename: the new contents replace the old.
  save_safetensors(path, {{"b", full({3}, 2.0, DType::f64)}});
  const auto out = load_safetensors(path);
  REQUIRE(out.tensors.size() == 1);
  CHECK(out.tensors[0].first == "b");
  CHECK(out.tensors[0].second.to_vector<double>() == std::vector<double>{2, 2, 2});
}

TEST_CASE("safetensors: corrupted files are Errors, never crashes", "[safetensors]") {
  // Every truncation and many random byte flips of a valid file either load
  // or throw dimix::Error (run under the sanitizer build to catch overreads).
  const std::string path = temp_file("fuzz.safetensors");
  save_safetensors(path, {{"a", arange(6, DType::f32)}, {"b\"", from_vector<int64_t>({1, 2}, {2, 1})}},
                   {{"k", "v\\"}});
  const std::string good = read_bytes(path);
  int loaded = 0, rejected = 0;
  auto attempt = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      load_safetensors(path);
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  };
  for (size_t n = 0; n < good.size(); ++n) attempt(good.substr(0, n));
  CHECK(rejected == static_cast<int>(good.size()));  // every strict prefix is incomplete
  Generator gen(11);
  for (int k = 0; k < 3000; ++k) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(gen.randint(3));
    for (int f = 0; f < flips; ++f) {
      // Mostly the length and the header, where the parser lives.
      const size_t limit = gen.randint(4) == 0 ? bytes.size() : std::min<size_t>(bytes.size(), 8 + 120);
      bytes[gen.randint(limit)] = static_cast<char>(gen.randint(256));
    }
    attempt(bytes);
  }
  CHECK(loaded + rejected == static_cast<int>(good.size()) + 3000);
  CHECK(rejected > 1000);
}
