// Tensor metadata, views, factories, the Philox RNG and error messages.
#include <catch2/catch.hpp>

#include "core/rng.h"
#include "core/tensor.h"
#include "ops/elementwise.h"
#include "ops/shape.h"

using namespace dimix;
using Catch::Matchers::Contains;

TEST_CASE("tensor: factories, strides and element access", "[core]") {
  Tensor t = arange(6).as_strided({2, 3}, {3, 1}, 0);
  CHECK(t.sizes() == Shape{2, 3});
  CHECK(t.is_contiguous());
  CHECK(t.at({1, 2}) == 5.0);
  CHECK(zeros({2, 2}).at({1, 1}) == 0.0);
  CHECK(full({3}, 2.5, DType::f64).at({2}) == 2.5);
  CHECK(arange(1.0, 2.0, 0.25).numel() == 4);
  CHECK(reinterpret_cast<uintptr_t>(empty({7}).raw_data()) % 64 == 0);
  Tensor v = from_vector<int32_t>({1, 2, 3, 4}, {2, 2});
  CHECK(v.dtype() == DType::i32);
  CHECK(v.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(scalar_tensor(3.0).item() == 3.0);
  CHECK_THROWS_WITH(t.item(), Contains("one-element") && Contains("[2, 3]"));
  CHECK_THROWS_WITH(t.data<double>(), Contains("f32"));
}

TEST_CASE("tensor: views share storage and respect strides", "[core]") {
  Tensor x = arange(12).as_strided({3, 4}, {4, 1}, 0);
  Tensor tt = transpose(x, 0, 1);
  CHECK(!tt.is_contiguous());
  CHECK(tt.at({3, 2}) == x.at({2, 3}));
  CHECK(tt.storage() == x.storage());
  Tensor c = contiguous(tt);
  CHECK(c.is_contiguous());
  CHECK(c.to_vector<float>() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  Tensor s = slice(x, 1, 1, 4, 2);
  CHECK(s.sizes() == Shape{3, 2});
  CHECK(s.to_vector<float>() == std::vector<float>{1, 3, 5, 7, 9, 11});
  Tensor e = expand(from_vector<float>({1, 2}, {2, 1}), {2, 3});
  CHECK(e.strides()[1] == 0);
  CHECK(e.to_vector<float>() == std::vector<float>{1, 1, 1, 2, 2, 2});
  CHECK(reshape(tt, {-1}).numel() == 12);
  CHECK(unsqueeze(x, 1).sizes() == Shape{3, 1, 4});
  CHECK(squeeze(unsqueeze(x, 0), 0).sizes() == Shape{3, 4});
  CHECK_THROWS_WITH(reshape(x, {5, -1}), Contains("cannot reshape [3, 4]"));
  CHECK_THROWS_WITH(permute(x, {0, 0}), Contains("repeated"));
}

TEST_CASE("tensor: broadcasting and its errors", "[core]") {
  Tensor a = ones({4, 1, 3});
  Tensor b = ones({5, 3});
  CHECK((a + b).sizes() == Shape{4, 5, 3});
  CHECK_THROWS_WITH(add(ones({2, 3}), ones({4})), Contains("add") && Contains("[2, 3]") && Contains("[4]"));
  CHECK_THROWS_WITH(add(ones({2}), ones({2}, DType::f64)), Contains("dtype mismatch"));
}

TEST_CASE("rng: Philox is counter-based and reproducible", "[core][rng]") {
  // Known-answer test from the Random123 distribution (philox4x32_10, zero
  // counter and key): 0x6627e8d5 0xe169c58d 0xbc57ac4c 0x9b00dbd8.
  uint32_t w[4];
  Philox4x32::generate(0, 0, w);
  CHECK(w[0] == 0x6627e8d5u);
  CHECK(w[1] == 0xe169c58du);
  CHECK(w[2] == 0xbc57ac4cu);
  CHECK(w[3] == 0x9b00dbd8u);
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, DType::f32, &g1), b = randn({1000}, DType::f32, &g2);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  // element i depends only on (seed, offset + i): a second draw continues the stream
  Generator g3(42);
  Tensor first = rand({10}, DType::f64, &g3);
  Tensor second = rand({10}, DType::f64, &g3);
  Generator g4(42);
  Tensor both = rand({20}, DType::f64, &g4);
  CHECK(both.to_vector<double>()[15] == second.to_vector<double>()[5]);
  // moments of 100k normals
  Generator g5(7);
  auto v = randn({100000}, DType::f64, &g5).to_vector<double>();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= v.size();
  for (double x : v) s += (x - m) * (x - m);
  s /= v.size();
  CHECK(std::abs(m) < 0.01);
  CHECK(std::abs(s - 1) < 0.02);
  auto u = rand({100000}, DType::f32, &g5).to_vector<float>();
  for (float x : u) REQUIRE((x >= 0.0f && x < 1.0f));
}

TEST_CASE("allocator: freed CPU blocks are reused", "[core]") {
  Allocator& a = allocator_for(DeviceKind::CPU);
  { Tensor t = empty({1 << 20}); }
  const auto before = a.stats();
  { Tensor t = empty({1 << 20}); }
  const auto after = a.stats();
#ifndef DIMIX_NO_CACHING_ALLOCATOR
  if (std::getenv("DIMIX_NO_ALLOC_CACHE") == nullptr) CHECK(after.num_cache_hits == before.num_cache_hits + 1);
#endif
  CHECK(after.current_bytes == before.current_bytes);
  if (!has_allocator(DeviceKind::CUDA)) CHECK_THROWS_WITH(allocator_for(DeviceKind::CUDA), Contains("CUDA"));
}

TEST_CASE("device: parse and errors", "[core]") {
  CHECK(Device::parse("cpu").is_cpu());
  CHECK(Device::parse("cuda:1").index == 1);
  CHECK_THROWS_WITH(Device::parse("tpu"), Contains("expected 'cpu'") && Contains("tpu"));
}
