// What every op file includes: tensors, autograd recording, dtype and device
// dispatch, CPU loop helpers and the shared argument checks.
#pragma once
#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "core/kernel_table.h"
#include "core/parallel.h"
#include "core/strided.h"
#include "core/tensor.h"
#include "ops/registry.h"

namespace dimix {

using autograd::needs_grad;
using autograd::record;

// Errors naming the op and both operands when they do not share a device/dtype.
inline void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  DIMIX_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(), " ",
              a.shape_str(), " vs ", b.device().str(), " ", b.shape_str(), ")");
}
inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  DIMIX_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch (", dtype_name(a.dtype()), " ", a.shape_str(),
              " vs ", dtype_name(b.dtype()), " ", b.shape_str(), ")");
}
inline void check_floating(const char* op, const Tensor& x) {
  DIMIX_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor (f32 or f64), got ",
              dtype_name(x.dtype()), " ", x.shape_str());
}
inline void check_dim(const char* op, const Tensor& x, int64_t ndim, const char* what) {
  DIMIX_CHECK(x.dim() == ndim, op, ": expected ", what, " to be ", ndim, "-d, got shape ", x.shape_str());
}

// Strides of `t` seen as shape `target` (broadcast dims get stride 0).
Shape broadcast_strides(const Tensor& t, const Shape& target);

}  // namespace dimix
