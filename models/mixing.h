// Mixing analysis: does a stack of select/mix levels let every output depend
// on every input? (the paper's complete-mixing condition, section III and
// Figs. 3a and 4).
//
// A level (block b, stride g) over n positions splits them into the groups of
// ops/block_linear.h (group a*g + s = positions a*b*g + s + j*g) and mixes
// each group completely. After levels 1..L, output t depends on input u iff u
// reaches t in the layered graph; mixing is complete when every output is
// reached by all n inputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dimix {

struct MixingLevel {
  int64_t block = 0, stride = 1;
};

// The group index of position t under a level (Error if the level does not
// tile n: n % (block*stride) != 0).
int64_t mixing_group(int64_t t, int64_t n, const MixingLevel& level);

struct MixingReport {
  bool complete = false;
  int64_t min_reach = 0, max_reach = 0;  // inputs reaching an output, over outputs
  std::vector<int64_t> reach;            // per output
};

MixingReport analyze_mixing(int64_t n, const std::vector<MixingLevel>& levels);

// "8x1,8x8" -> {{8,1},{8,8}} (block x stride, comma separated); Error on bad text.
std::vector<MixingLevel> parse_levels(const std::string& text);

// The panels of Fig. 4 (8x8 = 64 tokens), as we read the figure: a = rows
// (b 8, g 1), b = columns (8, 8), c = pairs of rows (16, 1), d = one token
// from each pair of rows (4, 16), e = every other token within two rows
// (8, 2), f = every fourth token of the image (16, 4).
MixingLevel fig4_panel(char panel);

}  // namespace dimix
