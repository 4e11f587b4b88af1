// Parameter initialisation (see init.h).
#include "models/init.h"

#include <cmath>

namespace dimix::init {

Generator& generator() {
  static Generator g(0);
  return g;
}
void seed(uint64_t s) { generator().manual_seed(s); }

Tensor uniform(const Shape& shape, double bound) { return rand(shape, DType::f32, &generator(), -bound, bound); }
Tensor normal(const Shape& shape, double std) { return randn(shape, DType::f32, &generator(), 0.0, std); }

}  // namespace dimix::init
