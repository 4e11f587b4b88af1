// Slabs: the unit of work of the fused block ops (block_mlp, block_chain).
//
// x is viewed as [outer, n, inner] around the mixed dim (view_around_dim,
// block_linear.h). A slab is the n positions of one unit of work, W values
// each, position p at ptr + p * ps with its W values contiguous (the vector
// lanes):
//  - inner > 1 (mixing a middle dim): one row of `outer`, in place, W = inner;
//  - inner == 1 (mixing the last dim): W rows of x transposed into a tile
//    [n, W] (16 x 16 register blocks), so that rows become lanes.
// A fused op reads a slab, runs all its products on it in cache, and writes
// the result once; its backward recomputes what it needs per slab. Parameter
// gradients are summed per chunk of slabs whose size depends on the shape
// only, and the chunks are added in order: bitwise the same on any number
// of threads.
#pragma once
#include <algorithm>
#include <cstdint>

#include "ops/tile_gemm.h"

namespace dimix::slab {

// Elements of x per chunk of the parameter-gradient sums.
inline constexpr int64_t kChunkElems = 32768;

// Units of work per gradient chunk, for slabs of n x W elements.
inline int64_t units_per_chunk(int64_t n, int64_t W) { return std::max<int64_t>(1, kChunkElems / (n * W)); }

template <class T>
T row_sum(const T* v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// Rows [r0, r0 + rows) of x3 (inner == 1, row stride so, element stride sn)
// into the tile xt [n, W], lanes past `rows` zero (so that they add nothing
// to any gradient sum).
template <class T>
void load_tile(const T* x, int64_t so, int64_t sn, int64_t n, int64_t r0, int64_t rows, int64_t W, T* xt) {
  if (rows < W) std::fill(xt, xt + n * W, T(0));
  if (sn == 1) {
    tile::transpose(x + r0 * so, so, xt, W, rows, n);
  } else {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < rows; ++r) xt[p * W + r] = x[(r0 + r) * so + p * sn];
  }
}

// The tile [n, W] back into rows [r0, r0 + rows) of the contiguous y [outer, n].
template <class T>
void store_tile(const T* yt, int64_t n, int64_t r0, int64_t rows, int64_t W, T* y) {
  tile::transpose(yt, W, y + r0 * n, n, n, rows);
}

}  // namespace dimix::slab
