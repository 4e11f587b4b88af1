// Recorded device transfer (see copy.h).
#include "ops/copy.h"

#include "ops/common.h"
#include "ops/elementwise.h"

namespace dimix {
namespace {
// A contiguous copy on `device` (to_device_raw compacts a strided view on its
// own device first).
Tensor move_raw(const Tensor& x, Device device) { return to_device_raw(x, device); }
}  // namespace

Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = move_raw(x, device);
  if (needs_grad({x}))
    record(out, "to", {x}, [from = x.device()](const Tensor& g) -> std::vector<Tensor> { return {move_raw(g, from)}; });
  return out;
}

// On the CPU both transfers are the identity and gradcheck sees 1.5 * x; the
// CUDA parity run sends a GPU input to the host and back, so the forward and
// the gradient both cross the bus twice.
DIMIX_REGISTER_OP_CASES({
    {"to/roundtrip",
     [](Generator& g, DType t) { return std::vector{noncontig_input(g, {3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return mul(to(to(x[0], Device::cpu()), x[0].device()), 1.5); }},
});

}  // namespace dimix
