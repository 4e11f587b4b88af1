// Parameter initialisation as the authors' PyTorch code does it (PyTorch
// defaults): kaiming_uniform(a=sqrt(5)) for weights, i.e. U(+-1/sqrt(fan_in)),
// the same bound for biases, LayerNorm ones/zeros, normal(0, 0.02) for the LRA
// embeddings. All draws come from one Philox generator so a model is a pure
// function of its seed.
#pragma once
#include "core/rng.h"
#include "core/tensor.h"

namespace dimix::init {

// The generator every layer draws from (seed it before building a model).
Generator& generator();
void seed(uint64_t s);

Tensor uniform(const Shape& shape, double bound);  // U(-bound, bound)
Tensor normal(const Shape& shape, double std);
// PyTorch's default Linear / Conv weight and bias: U(+-1/sqrt(fan_in)).
inline Tensor kaiming_uniform(const Shape& shape, int64_t fan_in) {
  return uniform(shape, fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0);
}

}  // namespace dimix::init
