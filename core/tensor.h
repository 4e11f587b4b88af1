// Tensor: a cheap, shared handle to a TensorImpl (storage + sizes + strides +
// offset + dtype + device + autograd state).
//
// Copying a Tensor copies the handle, not the data. Views (see ops/shape.h for
// the differentiable ones) share storage and differ in sizes/strides/offset.
// Kernels either take strides into account or call contiguous() first; no code
// may read a non-contiguous tensor as if it were contiguous.
//
// This header is core: it knows nothing of ops or autograd beyond holding the
// graph node (`grad_fn`) that produced a tensor.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace dimix {

namespace autograd { struct Node; }
class Generator;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape sizes;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // Autograd state. `grad_fn` is set on tensors produced by a recorded op;
  // leaves that require grad have none and accumulate into `grad`.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::string name;  // optional, for error messages and printing
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata ------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t numel() const { return shape_numel(impl().sizes); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  std::string shape_str() const { return dimix::shape_str(sizes()); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Pointer to element [0,...,0]. Checks that T is the tensor's dtype.
  template <class T>
  T* data() const {
    DIMIX_CHECK(dtype_v<T> == dtype(), "data<", dtype_name(dtype_v<T>), ">: tensor has dtype ",
                dtype_name(dtype()));
    return static_cast<T*>(impl().storage->data()) + impl().offset;
  }
  void* raw_data() const {
    return static_cast<char*>(impl().storage->data()) + impl().offset * dtype_size(dtype());
  }

  // ---- element access (CPU; for tests and small host-side logic) -----------
  // The single element of a one-element tensor, converted to double.
  double item() const;
  template <class T> T item() const { return static_cast<T>(item()); }
  // Element at a full index, converted to double.
  double at(const std::vector<int64_t>& index) const;
  // All elements in row-major order, converted to T (any device).
  template <class T> std::vector<T> to_vector() const;

  // ---- raw views (not recorded by autograd; ops/shape.h has the recorded ones)
  Tensor as_strided(const Shape& sizes, const Shape& strides, int64_t offset) const;
  // A contiguous copy, or *this if already contiguous. Not recorded.
  Tensor contiguous_raw() const;

  // ---- autograd state -----------------------------------------------------
  bool requires_grad() const { return defined() && impl().requires_grad; }
  // Marks a leaf as requiring grad; returns *this for chaining.
  const Tensor& set_requires_grad(bool r) const;
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g) const { impl_->grad = g.impl_; }
  void zero_grad() const { impl_->grad.reset(); }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  // The same data, cut from the graph.
  Tensor detach() const;

  // ---- identity ------------------------------------------------------------
  TensorImpl& impl() const {
    DIMIX_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Multi-line printout with values (truncated for big tensors).
  std::string to_string(int64_t max_per_dim = 6) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories ---------------------------------------------------------------
Tensor empty(const Shape& sizes, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& sizes, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& sizes, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& sizes, double value, DType dtype = DType::f32, Device device = Device::cpu());
// 0, 1, ..., n-1 (or start..end step).
Tensor arange(int64_t n, DType dtype = DType::f32);
Tensor arange(double start, double end, double step, DType dtype = DType::f32);
// Uniform in [low, high) and normal(mean, std) from Philox (core/rng.h);
// `gen` defaults to the global generator.
Tensor rand(const Shape& sizes, DType dtype = DType::f32, Generator* gen = nullptr, double low = 0.0, double high = 1.0);
Tensor randn(const Shape& sizes, DType dtype = DType::f32, Generator* gen = nullptr, double mean = 0.0, double std = 1.0);
// Integers uniform in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& sizes, DType dtype = DType::i64, Generator* gen = nullptr);
// Copies `values` (row-major) into a new CPU tensor of `sizes`.
template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& sizes);
// A 0-d tensor.
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());
// Wraps external memory without copying; `release` (may be empty) frees it.
Tensor from_blob(void* data, const Shape& sizes, DType dtype, Device device = Device::cpu(),
                 std::function<void(void*)> release = {});

// Copies src into dst elementwise (same shape; dtypes may differ; any strides;
// both on the CPU or both on the same device). Not recorded by autograd.
void copy_(const Tensor& dst, const Tensor& src);
// Fills every element of t with value (any strides). Not recorded.
void fill_(const Tensor& t, double value);
// A new contiguous tensor with the same values converted to dtype. Not recorded.
Tensor cast_raw(const Tensor& t, DType dtype);
// Copy to another device (CPU <-> CUDA). Not recorded; ops/copy.h has `to`.
Tensor to_device_raw(const Tensor& t, Device device);

// ---- template definitions ----------------------------------------------------
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& sizes) {
  DIMIX_CHECK(static_cast<int64_t>(values.size()) == shape_numel(sizes), "from_vector: ",
              values.size(), " values do not fill shape ", dimix::shape_str(sizes));
  Tensor t = empty(sizes, dtype_v<T>);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = cast_raw(device().is_cpu() ? *this : to_device_raw(*this, Device::cpu()), dtype_v<T>);
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace dimix
