// Tests of block_linear's CPU kernel paths (ops/block_linear.cpp): each path
// the forward, input gradient and weight gradient can take, chosen by block
// sizes, strides, row counts and element strides, against the authors'
// composite (view / transpose / bmm / un-permute, PAPERS.md 1.1) in f64 and
// f32. Shapes are picked to cross the kernels' internal boundaries: 32-row
// weight-gradient sub-chunks and 16/32-row forward tiles with ragged ends,
// lane choices (b_out = 8 -> 16 puts lanes over dy, b = 11 over x), register
// tiles of 4 x 4 with ragged edges (b = 3, 5, 7, 14), inner dims below, at
// and above one vector (5, 16, 33, 121), several slices per L1 pass (inner
// 100 with b 8: 3 slices) and the per-group accumulator layout for large
// G * b_in * b_out. Plus: the weight gradient is bitwise reproducible.
#include <catch2/catch.hpp>

#include "tests/ops/block_linear_oracle.h"

using namespace dimix;
using namespace dimix::test;

namespace {

using Case = BlockLinearCase;

void check_cases(const std::vector<Case>& cases) { check_block_linear_cases(cases, 3e-5); }

}  // namespace

TEST_CASE("block_linear kernels: last-dim levels over many rows (sub-chunks, tiles, lane choices)",
          "[butterfly][block_linear]") {
  check_cases({
      // T2 channel levels, b = 11, 77 rows: 2 full 32-row sub-chunks and a
      // ragged one, forward tiles with a ragged end; lanes over x, over dy
      // and the gathered copy.
      {{77, 121}, 1, 11, 11, 11, 1, 1, true, false},
      {{77, 121}, 1, 11, 11, 11, 1, 11, true, false},
      {{77, 121}, 1, 11, 11, 11, 11, 1, true, false},
      {{77, 121}, 1, 11, 11, 11, 11, 11, false, false},
      // 300 rows: several chunks per thread and sub-chunks per chunk.
      {{300, 121}, 1, 11, 11, 11, 1, 1, true, false},
      {{300, 121}, 1, 11, 11, 11, 11, 11, true, false},
      // b 8 -> 16, both sides contiguous: the weight gradient puts the lanes
      // over dy (16 of 16) rather than x (8 of 16); the forward uses lanes
      // over jo. 16 -> 8: lanes over x; the forward transposes tiles.
      {{70, 64}, 1, 8, 8, 16, 1, 1, true, false},
      {{70, 128}, 1, 8, 16, 8, 1, 1, true, false},
      {{70, 64}, 1, 8, 8, 16, 8, 1, true, false},
      {{70, 128}, 1, 8, 16, 8, 1, 8, true, false},
      // b_out = 14 fills 14 of 16 lanes (forward lanes over jo), 7 does not.
      {{41, 98}, 1, 7, 14, 7, 1, 1, true, false},
      {{41, 49}, 1, 7, 7, 14, 1, 1, true, false},
      // Odd blocks, b_in != b_out, strides that differ, a size-1 leading dim.
      {{1, 40, 15}, 2, 5, 3, 5, 1, 5, true, false},
      {{33, 15}, 1, 5, 3, 7, 5, 1, false, false},
      // Non-contiguous x (element stride 2): x is never the lane side.
      {{45, 121}, 1, 11, 11, 11, 1, 1, true, true},
      {{45, 121}, 1, 11, 11, 11, 1, 11, true, true},
      {{45, 64}, 1, 8, 8, 16, 8, 1, true, true},
      // One row; one group (dense).
      {{1, 121}, 1, 11, 11, 11, 1, 11, true, false},
      {{37, 20}, 1, 1, 20, 9, 1, 1, true, false},
      // gemm-sized blocks (b_in * b_out >= 48 * 48) over more rows than one
      // 256-row sub-chunk; just past the threshold, with a ragged 14-row tile.
      {{300, 256}, 1, 2, 128, 128, 1, 1, true, false},
      {{61, 98}, 1, 2, 49, 49, 1, 1, true, false},
  });
}

TEST_CASE("block_linear kernels: middle-dim levels (dot-product tiles)", "[butterfly][block_linear]") {
  check_cases({
      // T2 token levels: inner 121 = 7 vectors and a ragged end.
      {{5, 64, 121}, 1, 8, 8, 8, 1, 1, true, false},
      {{5, 64, 121}, 1, 8, 8, 8, 1, 8, true, false},
      {{5, 64, 121}, 1, 8, 8, 8, 8, 1, true, false},
      // Dense token mixing with gemm-sized blocks (mixer0: 81 tokens -> 162).
      {{3, 81, 37}, 1, 1, 81, 162, 1, 1, true, false},
      {{3, 162, 37}, 1, 1, 162, 81, 1, 1, true, false},
      // Mixer token levels: b 7 <-> 14, ragged 4 x 4 tiles.
      {{3, 49, 64}, 1, 7, 7, 14, 1, 1, true, false},
      {{3, 98, 64}, 1, 7, 14, 7, 1, 7, true, false},
      // inner below one vector, exactly one, just above; b = 3 and 5.
      {{4, 12, 5}, 1, 4, 3, 5, 2, 4, true, false},
      {{4, 12, 16}, 1, 4, 3, 5, 1, 1, true, false},
      {{4, 15, 33}, 1, 3, 5, 3, 3, 1, false, false},
      // inner 100 with b 8 + 8: 3 slices per L1 pass, 7 slices in all.
      {{7, 16, 100}, 1, 2, 8, 8, 1, 1, true, false},
      // G * b_in * b_out = 8 * 24 * 24 > 4096: per-group accumulators.
      {{3, 192, 5}, 1, 8, 24, 24, 1, 8, true, false},
      {{3, 192, 5}, 1, 8, 24, 24, 8, 1, false, false},
      // Non-contiguous inner dim (copied once), dim 0 and a size-1 dim.
      {{2, 16, 3, 7}, 1, 4, 4, 6, 2, 4, true, true},
      {{12, 1, 9}, 0, 4, 3, 3, 2, 2, true, false},
      {{2, 1, 16, 1, 33}, 2, 4, 4, 4, 2, 2, true, false},
  });
}

TEST_CASE("block_linear kernels: the weight gradient is the same bit for bit on every run",
          "[butterfly][block_linear]") {
  // Chunk partial sums are added in a fixed order: two runs agree exactly.
  for (const Case& c : {Case{{300, 121}, 1, 11, 11, 11, 1, 1, false, false},
                        Case{{9, 64, 121}, 1, 8, 8, 8, 8, 1, false, false}}) {
    const auto in = block_linear_inputs(c, DType::f32);
    Generator gen(3);
    const Tensor y0 = block_linear(in[0], in[1], Tensor(), c.dim, c.g_in, c.g_out);
    const Tensor weighting = randn(y0.sizes(), DType::f32, &gen);
    std::vector<std::vector<float>> dw;
    for (int run = 0; run < 3; ++run) {
      in[1].zero_grad();
      backward(block_linear(in[0], in[1], Tensor(), c.dim, c.g_in, c.g_out), weighting);
      dw.push_back(in[1].grad().to_vector<float>());
    }
    CHECK(dw[0] == dw[1]);
    CHECK(dw[0] == dw[2]);
  }
}
