// Walking N tensors of one shape with arbitrary strides (0 for broadcast
// dims), the building block of copy, cast and the elementwise kernels.
//
// strided_apply<N>(sizes, {strides...}, fn): dims of size 1 are dropped and
// adjacent dims that are contiguous for every operand are merged, so the
// common cases collapse to one long inner loop. fn(offsets, inner_strides,
// inner_len) is called once per outer index, in parallel over outer indices
// when there is enough work.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "core/shape.h"

namespace dimix {

template <size_t N>
struct StridedLayout {
  Shape sizes;                            // collapsed sizes, innermost last
  std::array<Shape, N> strides;           // per operand, collapsed
};

template <size_t N>
StridedLayout<N> collapse_layout(const Shape& sizes, const std::array<const Shape*, N>& strides) {
  StridedLayout<N> out;
  const int64_t nd = static_cast<int64_t>(sizes.size());
  for (int64_t d = 0; d < nd; ++d) {
    if (sizes[d] == 1) continue;
    if (!out.sizes.empty()) {
      // merge d into the previous kept dim if contiguous for all operands
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k)
        if (out.strides[k].back() != (*strides[k])[d] * sizes[d]) { mergeable = false; break; }
      if (mergeable) {
        out.sizes.back() *= sizes[d];
        for (size_t k = 0; k < N; ++k) out.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    out.sizes.push_back(sizes[d]);
    for (size_t k = 0; k < N; ++k) out.strides[k].push_back((*strides[k])[d]);
  }
  if (out.sizes.empty()) {  // a scalar (or all-ones shape)
    out.sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) out.strides[k].push_back(0);
  }
  return out;
}

// fn(const std::array<int64_t,N>& base_offsets, const std::array<int64_t,N>& inner_strides, int64_t inner_len)
// is called on disjoint runs of the collapsed innermost dim that together
// cover every element once (elementwise work only: a run may be part of a
// row). Rows are cut into pieces of kPiece elements, so a contiguous tensor,
// which collapses to a single row, is spread over the threads too.
template <size_t N, class F>
void strided_apply(const Shape& sizes, const std::array<const Shape*, N>& strides, F&& fn,
                   int64_t grain_elems = 32768) {
  if (shape_numel(sizes) == 0) return;
  const StridedLayout<N> L = collapse_layout<N>(sizes, strides);
  const int64_t nd = static_cast<int64_t>(L.sizes.size());
  const int64_t inner = L.sizes[nd - 1];
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = L.strides[k][nd - 1];
  int64_t outer = 1;
  for (int64_t d = 0; d < nd - 1; ++d) outer *= L.sizes[d];
  constexpr int64_t kPiece = 4096;  // a multiple of every vector width
  const int64_t pieces_per_row = (inner + kPiece - 1) / kPiece;
  const int64_t piece_len = std::min(inner, kPiece);
  const int64_t grain_pieces = std::max<int64_t>(1, grain_elems / piece_len);
  parallel_for(0, outer * pieces_per_row, grain_pieces, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e;) {
      const int64_t r = item / pieces_per_row, p0 = item % pieces_per_row;
      const int64_t p1 = std::min(pieces_per_row, p0 + (e - item));  // pieces of row r in this chunk
      std::array<int64_t, N> off{};
      int64_t rem = r;
      for (int64_t d = nd - 2; d >= 0; --d) {
        const int64_t i = rem % L.sizes[d];
        rem /= L.sizes[d];
        for (size_t k = 0; k < N; ++k) off[k] += i * L.strides[k][d];
      }
      const int64_t first = p0 * kPiece, last = std::min(inner, p1 * kPiece);
      for (size_t k = 0; k < N; ++k) off[k] += first * inner_strides[k];
      fn(off, inner_strides, last - first);
      item += p1 - p0;
    }
  });
}

}  // namespace dimix
