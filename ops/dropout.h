// dropout: zeroes each element with probability p and scales the rest by
// 1/(1-p) when training; the identity otherwise (or when p == 0).
// The mask comes from Philox: with T the element type and i the row-major
// index into x's shape, element i is dropped when
// philox_uniform<T>(seed, offset, i) < static_cast<T>(p), and a kept element
// becomes x[i] * static_cast<T>(1.0 / (1.0 - p)). (seed, offset) are
// gen.seed() and gen.reserve(numel) (the default generator when null), so
// the CPU and CUDA draw the same mask and a run is reproducible from its seed.
// p outside [0, 1) is an Error.
#pragma once
#include "core/rng.h"
#include "core/tensor.h"

namespace dimix {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

}  // namespace dimix
