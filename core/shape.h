// Shapes and strides: sizes are int64 vectors, strides count elements (not
// bytes). Broadcasting follows NumPy: align trailing dims; 1 stretches.
#pragma once
#include <cstdint>
#include <vector>
#include <string>

namespace dimix {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& sizes);
// Wraps a possibly negative dim into [0, ndim); Error naming `op` if out of range.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);
// The broadcast of two shapes; Error naming `op` and both shapes if they clash.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace dimix
