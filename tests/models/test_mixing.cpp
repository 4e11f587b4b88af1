// The complete-mixing analysis against the paper's Fig. 3a and Fig. 4.
#include <catch2/catch.hpp>

#include "models/mixing.h"
#include "ops/block_linear.h"

using namespace dimix;
using Catch::Matchers::Contains;

TEST_CASE("mixing: Fig. 4 verdicts on 8x8 = 64 tokens", "[models][mixing]") {
  auto complete = [](const char* pair) {
    return analyze_mixing(64, {fig4_panel(pair[0]), fig4_panel(pair[1])}).complete;
  };
  CHECK(complete("ab"));
  CHECK(complete("cd"));
  CHECK(complete("cb"));
  CHECK(complete("cf"));
  CHECK_FALSE(complete("ae"));
  CHECK_FALSE(complete("aa"));
  // (a, e) reaches exactly the two rows of each band: 16 inputs per output.
  const MixingReport ae = analyze_mixing(64, {fig4_panel('a'), fig4_panel('e')});
  CHECK(ae.min_reach == 16);
  CHECK(ae.max_reach == 16);
}

TEST_CASE("mixing: Fig. 3a radix-4 butterfly on 16 tokens needs two levels", "[models][mixing]") {
  const auto strides = butterfly_strides(16, 4, true);
  REQUIRE(strides == std::vector<int64_t>{1, 4});
  CHECK_FALSE(analyze_mixing(16, {{4, strides[0]}}).complete);
  CHECK(analyze_mixing(16, {{4, strides[0]}, {4, strides[1]}}).complete);
  // the capped rule keeps non-power sizes complete: 2048 with b = 64 -> [1, 32]
  const auto s2 = butterfly_strides(2048, 64, true);
  REQUIRE(s2 == std::vector<int64_t>{1, 32});
  CHECK(analyze_mixing(2048, {{64, s2[0]}, {64, s2[1]}}).complete);
}

TEST_CASE("mixing: level parsing and errors", "[models][mixing]") {
  const auto l = parse_levels("8x1,8x8");
  REQUIRE(l.size() == 2);
  CHECK(l[1].block == 8);
  CHECK(l[1].stride == 8);
  CHECK_THROWS_WITH(parse_levels("8-1"), Contains("BLOCKxSTRIDE"));
  CHECK_THROWS_WITH(analyze_mixing(60, {{8, 1}}), Contains("must divide n = 60"));
}
