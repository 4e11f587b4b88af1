// dropout (see dropout.h), inverted dropout as torch.nn.functional.dropout:
// kept elements are scaled by 1/(1-p) so the expectation is unchanged.
//
// Mask rule, shared with the CUDA kernel: with T the element type, element i
// (row-major index into x's shape) is dropped when
//   philox_uniform<T>(seed, offset, i) < static_cast<T>(p)
// and kept ones become x[i] * static_cast<T>(1 / (1 - p)) (scale computed in
// double). (seed, offset) come from gen.reserve(numel), so the next draw from
// the same generator gets fresh numbers.
// No mask tensor is stored: the backward is the same masked scaling applied
// to the gradient, recomputed from (seed, offset), so forward and backward
// share one kernel.
//
// CUDA kernel dispatched to (tensors contiguous, same shape):
//   "dropout_forward" void(const Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t offset)
#include "ops/dropout.h"

#include "ops/common.h"

namespace dimix {
namespace {

template <class T>
void dropout_rows(T* __restrict out, const T* __restrict x, int64_t b, int64_t e, T threshold, T scale, uint64_t seed,
                  uint64_t offset) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const T u = philox_uniform<T>(seed, offset, static_cast<uint64_t>(i));
    out[i] = u < threshold ? T(0) : x[i] * scale;
  }
}

template <class T>
void dropout_cpu(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const T threshold = static_cast<T>(p), scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(0, n, 8192, [=](int64_t b, int64_t e) { dropout_rows<T>(out, x, b, e, threshold, scale, seed, offset); });
}

// out = mask(seed, offset) * x * scale on any device; x contiguous.
Tensor dropout_raw(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  Tensor out = empty(x.sizes(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, double, uint64_t, uint64_t)>("dropout_forward")(out, x, p, seed,
                                                                                                  offset);
    return out;
  }
  dispatch_float(x.dtype(), "dropout",
                 [&]<class T>() { dropout_cpu<T>(out.data<T>(), x.data<T>(), x.numel(), p, seed, offset); });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x_in, double p, bool training, Generator* gen) {
  DIMIX_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  check_floating("dropout", x_in);
  if (!training || p == 0.0) return x_in;
  Generator& g = gen ? *gen : default_generator();
  const uint64_t seed = g.seed();
  const uint64_t offset = g.reserve(static_cast<uint64_t>(x_in.numel()));
  Tensor out = dropout_raw(x_in.contiguous_raw(), p, seed, offset);
  if (needs_grad({x_in}))
    record(out, "dropout", {x_in}, [p, seed, offset](const Tensor& g_out) -> std::vector<Tensor> {
      return {dropout_raw(g_out.contiguous_raw(), p, seed, offset)};
    });
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"dropout/train_fixed_seed", [](Generator& g, DType t) { return std::vector{randn_input(g, {4, 7}, t)}; },
     [](const std::vector<Tensor>& x) {
       Generator gen(3);
       return dropout(x[0], 0.3, true, &gen);
     }},
    {"dropout/train_noncontig_high_p", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {5, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       Generator gen(11);
       gen.reserve(5);  // a non-zero offset
       return dropout(x[0], 0.75, true, &gen);
     }},
    {"dropout/eval_identity", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return dropout(x[0], 0.5, false); }},
});

}  // namespace dimix
