// Tensor metadata, factories, raw copies and printing (see tensor.h).
#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/parallel.h"
#include "core/rng.h"
#include "core/strided.h"
#include "core/kernel_table.h"

namespace dimix {

// ---- small helpers of error.h / dtype.h / device.h / shape.h ---------------------
std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

std::string Device::str() const {
  if (is_cpu()) return "cpu";
  return index == 0 ? "cuda" : "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string n = s.substr(5);
    DIMIX_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos,
                "device: expected 'cpu', 'cuda' or 'cuda:N', got '", s, "'");
    return cuda(std::stoi(n));
  }
  DIMIX_FAIL("device: expected 'cpu', 'cuda' or 'cuda:N', got '", s, "'");
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

Shape contiguous_strides(const Shape& sizes) {
  Shape st(sizes.size());
  int64_t acc = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= std::max<int64_t>(sizes[d], 1);
  }
  return st;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t lo = -std::max<int64_t>(ndim, 1), hi = std::max<int64_t>(ndim, 1) - 1;
  DIMIX_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " out of range for a ", ndim,
              "-d tensor (expected ", lo, "..", hi, ")");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    DIMIX_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---- rng globals ------------------------------------------------------
namespace {
Generator& process_generator() {
  static Generator g(0);
  return g;
}
thread_local Generator* t_scoped_generator = nullptr;
}  // namespace

Generator& default_generator() { return t_scoped_generator ? *t_scoped_generator : process_generator(); }
void manual_seed(uint64_t seed) { process_generator().manual_seed(seed); }

GeneratorScope::GeneratorScope(Generator& g) : previous_(t_scoped_generator) { t_scoped_generator = &g; }
GeneratorScope::~GeneratorScope() { t_scoped_generator = previous_; }

// ---- Tensor ------------------------------------------------------------------
int64_t Tensor::size(int64_t d) const { return sizes()[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (sizes()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= sizes()[d];
  }
  return true;
}

double Tensor::item() const {
  DIMIX_CHECK(numel() == 1, "item: expected a one-element tensor, got shape ", shape_str());
  return at(Shape(dim(), 0));
}

double Tensor::at(const std::vector<int64_t>& index) const {
  DIMIX_CHECK(static_cast<int64_t>(index.size()) == dim(), "at: expected ", dim(),
              " indices, got ", index.size());
  int64_t off = 0;
  for (int64_t d = 0; d < dim(); ++d) {
    DIMIX_CHECK(index[d] >= 0 && index[d] < sizes()[d], "at: index ", index[d], " out of range for dim ",
                d, " of size ", sizes()[d]);
    off += index[d] * strides()[d];
  }
  if (!device().is_cpu()) return to_device_raw(*this, Device::cpu()).at(index);
  return dispatch_all(dtype(), "at", [&]<class T>() {
    return static_cast<double>(static_cast<const T*>(impl().storage->data())[impl().offset + off]);
  });
}

Tensor Tensor::as_strided(const Shape& sizes, const Shape& strides, int64_t offset) const {
  DIMIX_CHECK(sizes.size() == strides.size(), "as_strided: ", sizes.size(), " sizes but ",
              strides.size(), " strides");
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = impl().storage;
  impl2->sizes = sizes;
  impl2->strides = strides;
  impl2->offset = offset;
  impl2->dtype = dtype();
  return Tensor(impl2);
}

Tensor Tensor::contiguous_raw() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(sizes(), dtype(), device());
  copy_(out, *this);
  return out;
}

const Tensor& Tensor::set_requires_grad(bool r) const {
  DIMIX_CHECK(!r || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got ",
              dtype_name(dtype()));
  DIMIX_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be marked; this one was produced by an op");
  impl().requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  Tensor t = as_strided(sizes(), strides(), offset());
  return t;
}

// ---- factories ----------------------------------------------------------------
Tensor empty(const Shape& sizes, DType dtype, Device device) {
  for (int64_t s : sizes) DIMIX_CHECK(s >= 0, "empty: negative size in shape ", shape_str(sizes));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(sizes)) * dtype_size(dtype), device);
  impl->sizes = sizes;
  impl->strides = contiguous_strides(sizes);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor full(const Shape& sizes, double value, DType dtype, Device device) {
  Tensor t = empty(sizes, dtype, device);  // filled in place on any device: no host copy
  fill_(t, value);
  return t;
}
Tensor zeros(const Shape& sizes, DType dtype, Device device) { return full(sizes, 0.0, dtype, device); }
Tensor ones(const Shape& sizes, DType dtype, Device device) { return full(sizes, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor arange(double start, double end, double step, DType dtype) {
  DIMIX_CHECK(step != 0, "arange: step must be non-zero");
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, "arange", [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + i * step);
  });
  return t;
}
Tensor arange(int64_t n, DType dtype) { return arange(0.0, static_cast<double>(n), 1.0, dtype); }

Tensor rand(const Shape& sizes, DType dtype, Generator* gen, double low, double high) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(sizes, dtype);
  const int64_t n = t.numel();
  const uint64_t seed = g.seed(), off = g.reserve(n);
  dispatch_float(dtype, "rand", [&]<class T>() {
    T* p = t.data<T>();
    parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        p[i] = static_cast<T>(low + (high - low) * philox_uniform<T>(seed, off, i));
    });
  });
  return t;
}

Tensor randn(const Shape& sizes, DType dtype, Generator* gen, double mean, double std) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(sizes, dtype);
  const int64_t n = t.numel();
  const uint64_t seed = g.seed(), off = g.reserve(n);
  dispatch_float(dtype, "randn", [&]<class T>() {
    T* p = t.data<T>();
    parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<T>(mean + std * philox_normal<T>(seed, off, i));
    });
  });
  return t;
}

Tensor randint(int64_t low, int64_t high, const Shape& sizes, DType dtype, Generator* gen) {
  DIMIX_CHECK(high > low, "randint: expected low < high, got ", low, " and ", high);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(sizes, dtype);
  const uint64_t range = static_cast<uint64_t>(high - low);
  dispatch_all(dtype, "randint", [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(low + static_cast<int64_t>(g.randint(range)));
  });
  return t;
}

Tensor from_blob(void* data, const Shape& sizes, DType dtype, Device device, std::function<void(void*)> release) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(shape_numel(sizes)) * dtype_size(dtype),
                                            device, std::move(release));
  impl->sizes = sizes;
  impl->strides = contiguous_strides(sizes);
  impl->dtype = dtype;
  return Tensor(impl);
}

// ---- raw copies ---------------------------------------------------------------
namespace {
template <class D, class S>
void copy_cast(const Tensor& dst, const Tensor& src) {
  D* pd = static_cast<D*>(dst.storage()->data()) + dst.offset();
  const S* ps = static_cast<const S*>(src.storage()->data()) + src.offset();
  strided_apply<2>(dst.sizes(), {&dst.strides(), &src.strides()},
                   [&](const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st, int64_t n) {
                     D* d = pd + off[0];
                     const S* s = ps + off[1];
                     if (st[0] == 1 && st[1] == 1) {
                       for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
                     } else {
                       for (int64_t i = 0; i < n; ++i) d[i * st[0]] = static_cast<D>(s[i * st[1]]);
                     }
                   });
}
}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  DIMIX_CHECK(dst.sizes() == src.sizes(), "copy_: destination shape ", dst.shape_str(),
              " differs from source shape ", src.shape_str());
  if (dst.device().is_cuda() && src.device().is_cuda() &&
      !(dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous())) {
    // strided or casting copy on the GPU
    cuda_kernel<void(const Tensor&, const Tensor&)>("copy_strided")(dst, src);
    return;
  }
  if (!dst.device().is_cpu() || !src.device().is_cpu()) {
    DIMIX_CHECK(dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous(),
                "copy_: across devices both tensors must be contiguous and of one dtype (got ",
                dtype_name(dst.dtype()), " and ", dtype_name(src.dtype()), ")");
    const Device dev = dst.device().is_cpu() ? src.device() : dst.device();
    allocator_for(dev.kind).copy(dst.raw_data(), dst.device(), src.raw_data(), src.device(),
                                 dst.numel() * dtype_size(dst.dtype()));
    return;
  }
  dispatch_all(dst.dtype(), "copy_", [&]<class D>() {
    dispatch_all(src.dtype(), "copy_", [&]<class S>() { copy_cast<D, S>(dst, src); });
  });
}

void fill_(const Tensor& t, double value) {
  if (t.device().is_cuda()) {  // any strides, any dtype (cuda/elementwise.cu)
    cuda_kernel<void(const Tensor&, double)>("fill")(t, value);
    return;
  }
  DIMIX_CHECK(t.device().is_cpu(), "fill_: CPU tensors only here (got ", t.device().str(), ")");
  dispatch_all(t.dtype(), "fill_", [&]<class T>() {
    T* p = static_cast<T*>(t.storage()->data()) + t.offset();
    const T v = static_cast<T>(value);
    strided_apply<1>(t.sizes(), {&t.strides()},
                     [&](const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st, int64_t n) {
                       for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = v;
                     });
  });
}

Tensor cast_raw(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype && t.is_contiguous()) return t;
  Tensor out = empty(t.sizes(), dtype, t.device());
  copy_(out, t);
  return out;
}

Tensor to_device_raw(const Tensor& t, Device device) {
  if (t.device() == device) return t;
  // Transfers move contiguous bytes: a strided view is compacted on its own
  // device first (a GPU view through the "copy_strided" kernel).
  const Tensor src = t.contiguous_raw();
  Tensor out = empty(t.sizes(), t.dtype(), device);
  copy_(out, src);
  return out;
}

// ---- printing -----------------------------------------------------------------
std::string Tensor::to_string(int64_t max_per_dim) const {
  std::ostringstream os;
  os << "Tensor(" << shape_str() << ", " << dtype_name(dtype()) << ", " << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  Tensor c = device().is_cpu() ? *this : to_device_raw(*this, Device::cpu());
  std::vector<int64_t> idx(dim(), 0);
  std::function<void(int64_t, int)> rec = [&](int64_t d, int indent) {
    if (d == dim()) {
      os << std::setprecision(6) << c.at(idx);
      return;
    }
    os << "[";
    const int64_t n = sizes()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "..., ";
        i = n - max_per_dim / 2;
      }
      idx[d] = i;
      rec(d + 1, indent + 1);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
    }
    os << "]";
  };
  rec(0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace dimix
