// dropout: zeroes each element with probability p and scales the rest by
// 1/(1-p) when training; the identity otherwise (or when p == 0).
// The mask comes from Philox: element i is dropped when
// philox_uniform(seed, offset, i) < p, with (seed, offset) reserved from
// `gen` (the default generator when null), so the CPU and CUDA draw the same
// mask and a run is reproducible from its seed.
#pragma once
#include "core/rng.h"
#include "core/tensor.h"

namespace dimix {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

}  // namespace dimix
