// The op registry (see registry.h).
#include "ops/registry.h"

#include <mutex>

namespace dimix {
namespace {
std::vector<OpCase>& cases() {
  static std::vector<OpCase> c;
  return c;
}
}  // namespace

void register_op_cases(std::vector<OpCase> new_cases) {
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  for (auto& c : new_cases) cases().push_back(std::move(c));
}

const std::vector<OpCase>& op_registry() { return cases(); }

Tensor randn_input(Generator& g, const Shape& shape, DType t, bool requires_grad) {
  Tensor x = randn(shape, t, &g);
  if (requires_grad) x.set_requires_grad(true);
  return x;
}

Tensor uniform_input(Generator& g, const Shape& shape, DType t, double lo, double hi, bool requires_grad) {
  Tensor x = rand(shape, t, &g, lo, hi);
  if (requires_grad) x.set_requires_grad(true);
  return x;
}

Tensor noncontig_input(Generator& g, const Shape& shape, DType t, bool requires_grad) {
  DIMIX_CHECK(shape.size() >= 2, "noncontig_input: needs at least 2 dims, got ", shape_str(shape));
  Shape swapped = shape;
  std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
  Tensor base = randn(swapped, t, &g);
  Shape st = base.strides();
  std::swap(st[st.size() - 1], st[st.size() - 2]);
  Tensor x = base.as_strided(shape, st, 0);
  if (requires_grad) x.set_requires_grad(true);
  return x;
}

Tensor index_input(Generator& g, const Shape& shape, int64_t high, DType t) {
  return randint(0, high, shape, t, &g);
}

}  // namespace dimix
