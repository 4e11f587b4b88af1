// Mixing analysis (see mixing.h). Reachability is propagated level by level
// as one bitset of inputs per position: n^2 bits (32 MiB at n = 16384).
#include "models/mixing.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"

namespace dimix {

int64_t mixing_group(int64_t t, int64_t n, const MixingLevel& l) {
  DIMIX_CHECK(l.block > 0 && l.stride > 0 && n % (l.block * l.stride) == 0, "mixing level ", l.block, "x", l.stride,
              ": block * stride must divide n = ", n);
  const int64_t span = l.block * l.stride;
  const int64_t a = t / span, s = t % l.stride;
  return a * l.stride + s;
}

MixingReport analyze_mixing(int64_t n, const std::vector<MixingLevel>& levels) {
  DIMIX_CHECK(n > 0, "analyze_mixing: n must be positive, got ", n);
  const int64_t words = (n + 63) / 64;
  std::vector<uint64_t> reach(n * words, 0), next;
  for (int64_t t = 0; t < n; ++t) reach[t * words + t / 64] |= uint64_t(1) << (t % 64);
  for (const MixingLevel& l : levels) {
    const int64_t groups = n / l.block;
    std::vector<uint64_t> group_union(groups * words, 0);
    for (int64_t t = 0; t < n; ++t) {
      const int64_t g = mixing_group(t, n, l);
      for (int64_t w = 0; w < words; ++w) group_union[g * words + w] |= reach[t * words + w];
    }
    for (int64_t t = 0; t < n; ++t) {
      const int64_t g = mixing_group(t, n, l);
      std::copy_n(group_union.begin() + g * words, words, reach.begin() + t * words);
    }
  }
  MixingReport r;
  r.reach.resize(n);
  for (int64_t t = 0; t < n; ++t) {
    int64_t c = 0;
    for (int64_t w = 0; w < words; ++w) c += __builtin_popcountll(reach[t * words + w]);
    r.reach[t] = c;
  }
  r.min_reach = *std::min_element(r.reach.begin(), r.reach.end());
  r.max_reach = *std::max_element(r.reach.begin(), r.reach.end());
  r.complete = r.min_reach == n;
  return r;
}

std::vector<MixingLevel> parse_levels(const std::string& text) {
  std::vector<MixingLevel> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto x = item.find('x');
    DIMIX_CHECK(x != std::string::npos, "levels: expected BLOCKxSTRIDE items like 8x1,8x8, got '", item, "'");
    try {
      size_t p1 = 0, p2 = 0;
      const std::string bs = item.substr(0, x), gs = item.substr(x + 1);
      const int64_t b = std::stoll(bs, &p1), g = std::stoll(gs, &p2);
      DIMIX_CHECK(p1 == bs.size() && p2 == gs.size() && b > 0 && g > 0, "");
      out.push_back({b, g});
    } catch (...) {
      DIMIX_FAIL("levels: expected BLOCKxSTRIDE with positive integers, got '", item, "'");
    }
  }
  DIMIX_CHECK(!out.empty(), "levels: no levels given");
  return out;
}

MixingLevel fig4_panel(char panel) {
  switch (panel) {
    case 'a': return {8, 1};
    case 'b': return {8, 8};
    case 'c': return {16, 1};
    case 'd': return {4, 16};
    case 'e': return {8, 2};
    case 'f': return {16, 4};
  }
  DIMIX_FAIL("fig4: panels are a..f, got '", std::string(1, panel), "'");
}

}  // namespace dimix
