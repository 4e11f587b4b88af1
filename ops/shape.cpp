// Shape ops (see shape.h). Index ops view their operands as
// [outer, n, inner] around the indexed dim so one loop serves every dim.
#include "ops/shape.h"

#include <algorithm>
#include <numeric>

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace dimix {
namespace {

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      DIMIX_CHECK(infer < 0, op, ": only one dim can be -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      DIMIX_CHECK(out[i] >= 0, op, ": invalid size ", out[i], " in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    DIMIX_CHECK(known > 0 && numel % known == 0, op, ": cannot reshape ", shape_str(from), " (", numel,
                " elements) to ", shape_str(shape));
    out[infer] = numel / known;
  }
  DIMIX_CHECK(shape_numel(out) == numel, op, ": cannot reshape ", shape_str(from), " (", numel, " elements) to ",
              shape_str(shape));
  return out;
}

// Outer/inner extents around dim d of a shape.
void split_at(const Shape& s, int64_t d, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[i];
  for (size_t i = d + 1; i < s.size(); ++i) inner *= s[i];
}

template <class I>
int64_t checked_index(const I* idx, int64_t i, int64_t n, const char* op) {
  const int64_t v = static_cast<int64_t>(idx[i]);
  DIMIX_CHECK(v >= 0 && v < n, op, ": index ", v, " out of range for a dim of size ", n);
  return v;
}

void check_index_dtype(const char* op, const Tensor& index) {
  DIMIX_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
              ": expected an integer index tensor (i64 or i32), got ", dtype_name(index.dtype()));
}

template <class Fn>
void dispatch_index(const Tensor& index, const char* op, Fn&& fn) {
  if (index.dtype() == DType::i64) fn.template operator()<int64_t>();
  else if (index.dtype() == DType::i32) fn.template operator()<int32_t>();
  else check_index_dtype(op, index);
}

}  // namespace

// ---- views ----------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape_in) {
  const Shape shape = infer_shape(shape_in, x.numel(), "reshape", x.sizes());
  Tensor out;
  if (x.is_contiguous()) out = x.as_strided(shape, contiguous_strides(shape), x.offset());
  else {
    const Tensor c = x.contiguous_raw();
    out = c.as_strided(shape, contiguous_strides(shape), c.offset());
  }
  if (needs_grad({x}))
    record(out, "reshape", {x}, [in = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor c = g.contiguous_raw();
      return {c.as_strided(in, contiguous_strides(in), c.offset())};
    });
  return out;
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  const int64_t s = normalize_dim(start_dim, x.dim(), "flatten"), e = normalize_dim(end_dim, x.dim(), "flatten");
  DIMIX_CHECK(s <= e, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape shape;
  for (int64_t d = 0; d < s; ++d) shape.push_back(x.sizes()[d]);
  int64_t m = 1;
  for (int64_t d = s; d <= e; ++d) m *= x.sizes()[d];
  shape.push_back(m);
  for (int64_t d = e + 1; d < x.dim(); ++d) shape.push_back(x.sizes()[d]);
  return reshape(x, shape);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  DIMIX_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: expected ", x.dim(), " dims for shape ",
              x.shape_str(), ", got ", dims.size());
  std::vector<int64_t> nd(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape sizes(dims.size()), strides(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    nd[i] = normalize_dim(dims[i], x.dim(), "permute");
    DIMIX_CHECK(!seen[nd[i]], "permute: dim ", dims[i], " repeated");
    seen[nd[i]] = true;
    sizes[i] = x.sizes()[nd[i]];
    strides[i] = x.strides()[nd[i]];
    inverse[nd[i]] = static_cast<int64_t>(i);
  }
  Tensor out = x.as_strided(sizes, strides, x.offset());
  if (needs_grad({x}))
    record(out, "permute", {x}, [inverse](const Tensor& g) -> std::vector<Tensor> {
      Shape s(inverse.size()), st(inverse.size());
      for (size_t i = 0; i < inverse.size(); ++i) { s[i] = g.sizes()[inverse[i]]; st[i] = g.strides()[inverse[i]]; }
      return {g.as_strided(s, st, g.offset())};
    });
  return out;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_dim(d0, x.dim(), "transpose")], dims[normalize_dim(d1, x.dim(), "transpose")]);
  return permute(x, dims);
}

Tensor expand_raw(const Tensor& x, const Shape& shape_in) {
  DIMIX_CHECK(shape_in.size() >= static_cast<size_t>(x.dim()), "expand: cannot expand ", x.shape_str(), " to ",
              shape_str(shape_in));
  Shape shape = shape_in;
  const size_t lead = shape.size() - x.dim();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      DIMIX_CHECK(shape[i] >= 0, "expand: new leading dims need explicit sizes, got ", shape_str(shape_in));
      continue;
    }
    const int64_t xs = x.sizes()[i - lead];
    if (shape[i] == -1) shape[i] = xs;
    DIMIX_CHECK(xs == shape[i] || xs == 1, "expand: cannot expand ", x.shape_str(), " to ", shape_str(shape_in));
    strides[i] = xs == shape[i] ? x.strides()[i - lead] : 0;
  }
  return x.as_strided(shape, strides, x.offset());
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor out = expand_raw(x, shape);
  if (needs_grad({x}))
    record(out, "expand", {x}, [in = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      NoGradGuard ng;
      return {sum_to(g, in)};
    });
  return out;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.dim(), "squeeze");
  if (x.sizes()[d] != 1) return x;
  Shape s = x.sizes(), st = x.strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = x.as_strided(s, st, x.offset());
  if (needs_grad({x}))
    record(out, "squeeze", {x}, [in = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor c = g.contiguous_raw();
      return {c.as_strided(in, contiguous_strides(in), c.offset())};
    });
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.sizes(), st = x.strides();
  const int64_t inner_stride = d < x.dim() ? x.strides()[d] * x.sizes()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, inner_stride);
  Tensor out = x.as_strided(s, st, x.offset());
  if (needs_grad({x}))
    record(out, "unsqueeze", {x}, [in = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor c = g.contiguous_raw();
      return {c.as_strided(in, contiguous_strides(in), c.offset())};
    });
  return out;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int64_t d = normalize_dim(dim, x.dim(), "slice");
  DIMIX_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = x.sizes()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = x.sizes(), st = x.strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = x.as_strided(s, st, x.offset() + start * x.strides()[d]);
  if (needs_grad({x}))
    record(out, "slice", {x}, [in = x.sizes(), d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
      Tensor full = zeros(in, g.dtype(), g.device());
      Shape s = full.sizes(), st = full.strides();
      s[d] = g.sizes()[d];
      st[d] *= step;
      assign_(full.as_strided(s, st, start * full.strides()[d]), g);
      return {full};
    });
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const int64_t d = normalize_dim(dim, x.dim(), "narrow");
  DIMIX_CHECK(start >= 0 && length >= 0 && start + length <= x.sizes()[d], "narrow: [", start, ", ", start + length,
              ") out of range for dim ", dim, " of shape ", x.shape_str());
  return slice(x, d, start, start + length);
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = x.contiguous_raw();
  if (needs_grad({x}))
    record(out, "contiguous", {x}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

void assign_(const Tensor& dst, const Tensor& src) { copy_(dst, src); }

// ---- cat / stack -----------------------------------------------------------------
Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  DIMIX_CHECK(!xs.empty(), "cat: expected at least one tensor");
  const int64_t d = normalize_dim(dim, xs[0].dim(), "cat");
  Shape shape = xs[0].sizes();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_same_device("cat", xs[0], xs[i]);
    check_same_dtype("cat", xs[0], xs[i]);
    DIMIX_CHECK(xs[i].dim() == xs[0].dim(), "cat: tensor ", i, " has shape ", xs[i].shape_str(), ", expected ",
                xs[0].dim(), " dims like ", xs[0].shape_str());
    for (int64_t k = 0; k < xs[0].dim(); ++k)
      DIMIX_CHECK(k == d || xs[i].sizes()[k] == shape[k], "cat: tensor ", i, " has shape ", xs[i].shape_str(),
                  ", which differs from ", xs[0].shape_str(), " outside dim ", d);
    total += xs[i].sizes()[d];
  }
  shape[d] = total;
  Tensor out = empty(shape, xs[0].dtype(), xs[0].device());
  int64_t at = 0;
  std::vector<int64_t> lengths;
  for (const Tensor& x : xs) {
    Shape s = out.sizes();
    s[d] = x.sizes()[d];
    assign_(out.as_strided(s, out.strides(), at * out.strides()[d]), x);
    at += x.sizes()[d];
    lengths.push_back(x.sizes()[d]);
  }
  if (needs_grad(xs))
    record(out, "cat", xs, [d, lengths](const Tensor& g) -> std::vector<Tensor> {
      std::vector<Tensor> grads;
      int64_t at = 0;
      for (int64_t len : lengths) {
        Shape s = g.sizes();
        s[d] = len;
        grads.push_back(g.as_strided(s, g.strides(), g.offset() + at * g.strides()[d]));
        at += len;
      }
      return grads;
    });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  DIMIX_CHECK(!xs.empty(), "stack: expected at least one tensor");
  const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < xs.size(); ++i) {
    DIMIX_CHECK(xs[i].sizes() == xs[0].sizes(), "stack: tensor ", i, " has shape ", xs[i].shape_str(),
                ", expected ", xs[0].shape_str());
    us.push_back(unsqueeze(xs[i], d));
  }
  return cat(us, d);
}

// ---- index ops -------------------------------------------------------------------------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = normalize_dim(dim, x.dim(), "index_select");
  check_index_dtype("index_select", index);
  DIMIX_CHECK(index.dim() == 1, "index_select: expected a 1-d index, got shape ", index.shape_str());
  check_same_device("index_select", x, index);
  Shape shape = x.sizes();
  shape[d] = index.numel();
  Tensor out = empty(shape, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)>("index_select")(out, x, d, index);
  } else {
    const Tensor xc = x.contiguous_raw(), ic = index.contiguous_raw();
    int64_t outer, inner;
    split_at(x.sizes(), d, outer, inner);
    const int64_t n = x.sizes()[d], k = index.numel();
    dispatch_all(x.dtype(), "index_select", [&]<class T>() {
      dispatch_index(ic, "index_select", [&]<class I>() {
        const T* px = xc.data<T>();
        const I* pi = ic.data<I>();
        T* po = out.data<T>();
        for (int64_t i = 0; i < k; ++i) checked_index(pi, i, n, "index_select");
        parallel_for(0, outer * k, std::max<int64_t>(1, 8192 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            const int64_t o = r / k, i = r % k;
            std::copy_n(px + (o * n + static_cast<int64_t>(pi[i])) * inner, inner, po + r * inner);
          }
        });
      });
    });
  }
  if (needs_grad({x}))
    record(out, "index_select", {x, index}, [in = x.sizes(), d, index](const Tensor& g) -> std::vector<Tensor> {
      return {index_add_raw(in, d, index, g), Tensor()};
    });
  return out;
}

Tensor index_add_raw(const Shape& shape, int64_t d, const Tensor& index, const Tensor& src) {
  Tensor out = zeros(shape, src.dtype(), src.device());
  if (src.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)>("index_add")(out, d, index, src);
    return out;
  }
  const Tensor sc = src.contiguous_raw(), ic = index.contiguous_raw();
  int64_t outer, inner;
  split_at(shape, d, outer, inner);
  const int64_t n = shape[d], k = index.numel();
  dispatch_float(src.dtype(), "index_add", [&]<class T>() {
    dispatch_index(ic, "index_add", [&]<class I>() {
      const T* ps = sc.data<T>();
      const I* pi = ic.data<I>();
      T* po = out.data<T>();
      // Parallel over outer rows and inner columns; the index loop stays
      // serial so repeated indices never race.
      parallel_for(0, outer, 1, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
          for (int64_t i = 0; i < k; ++i) {
            T* dst = po + (o * n + static_cast<int64_t>(pi[i])) * inner;
            const T* s = ps + (o * k + i) * inner;
            for (int64_t j = 0; j < inner; ++j) dst[j] += s[j];
          }
      });
    });
  });
  return out;
}

namespace {
// Runs fn(x_off, idx_off) for every element of index (row-major), where
// x_off addresses x at the same position with the dim coordinate replaced by
// the index value. x, index contiguous; index.sizes() == x.sizes() off dim.
template <class I, class Fn>
void for_each_gather(const Shape& xs, const Tensor& index, int64_t d, const char* op, Fn&& fn) {
  const I* pi = index.data<I>();
  int64_t outer, inner;
  split_at(index.sizes(), d, outer, inner);
  const int64_t k = index.sizes()[d], n = xs[d];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < inner; ++j) {
        const int64_t io = (o * k + i) * inner + j;
        const int64_t v = checked_index(pi, io, n, op);
        fn((o * n + v) * inner + j, io);
      }
}
void check_gather_shapes(const char* op, const Tensor& x, int64_t d, const Tensor& index) {
  check_index_dtype(op, index);
  DIMIX_CHECK(index.dim() == x.dim(), op, ": index shape ", index.shape_str(), " must have as many dims as ",
              x.shape_str());
  for (int64_t k = 0; k < x.dim(); ++k)
    DIMIX_CHECK(k == d || index.sizes()[k] == x.sizes()[k], op, ": index shape ", index.shape_str(),
                " must match ", x.shape_str(), " outside dim ", d);
}
}  // namespace

Tensor scatter_add_raw(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t d = normalize_dim(dim, base.dim(), "scatter_add");
  check_gather_shapes("scatter_add", base, d, index);
  Tensor out = empty(base.sizes(), base.dtype(), base.device());
  copy_(out, base);
  if (base.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)>("scatter_add")(out, d, index, src);
    return out;
  }
  const Tensor ic = index.contiguous_raw(), sc = src.contiguous_raw();
  dispatch_float(base.dtype(), "scatter_add", [&]<class T>() {
    dispatch_index(ic, "scatter_add", [&]<class I>() {
      T* po = out.data<T>();
      const T* ps = sc.data<T>();
      for_each_gather<I>(base.sizes(), ic, d, "scatter_add", [&](int64_t xo, int64_t io) { po[xo] += ps[io]; });
    });
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = normalize_dim(dim, x.dim(), "gather");
  check_gather_shapes("gather", x, d, index);
  check_same_device("gather", x, index);
  Tensor out = empty(index.sizes(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)>("gather")(out, x, d, index);
  } else {
    const Tensor xc = x.contiguous_raw(), ic = index.contiguous_raw();
    dispatch_all(x.dtype(), "gather", [&]<class T>() {
      dispatch_index(ic, "gather", [&]<class I>() {
        T* po = out.data<T>();
        const T* px = xc.data<T>();
        for_each_gather<I>(x.sizes(), ic, d, "gather", [&](int64_t xo, int64_t io) { po[io] = px[xo]; });
      });
    });
  }
  if (needs_grad({x}))
    record(out, "gather", {x, index}, [in = x.sizes(), d, index](const Tensor& g) -> std::vector<Tensor> {
      return {scatter_add_raw(zeros(in, g.dtype(), g.device()), d, index, g), Tensor()};
    });
  return out;
}

namespace {
// out = cond ? a : b on the CPU, all broadcast to out's shape.
template <class T, class C>
void where_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Shape sc = broadcast_strides(cond, out.sizes()), sa = broadcast_strides(a, out.sizes()),
              sb = broadcast_strides(b, out.sizes());
  T* po = out.data<T>();
  const C* pc = cond.data<C>();
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  strided_apply<4>(out.sizes(), {&out.strides(), &sc, &sa, &sb},
                   [&](const std::array<int64_t, 4>& o, const std::array<int64_t, 4>& st, int64_t n) {
                     for (int64_t i = 0; i < n; ++i)
                       po[o[0] + i * st[0]] = pc[o[1] + i * st[1]] != C(0) ? pa[o[2] + i * st[2]] : pb[o[3] + i * st[3]];
                   });
}

Tensor where_raw(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_dtype("where", a, b);
  check_same_device("where", a, b);
  check_same_device("where", cond, a);
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
  Tensor out = empty(shape, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>("where")(out, cond, a, b);
    return out;
  }
  dispatch_all(a.dtype(), "where", [&]<class T>() {
    dispatch_all(cond.dtype(), "where", [&]<class C>() { where_cpu<T, C>(out, cond, a, b); });
  });
  return out;
}
}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = where_raw(cond, a, b);
  if (needs_grad({a, b})) {
    record(out, "where", {cond, a, b}, [cond, sa = a.sizes(), sb = b.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor zero = zeros({}, g.dtype(), g.device());
      return {Tensor(), sum_to(where_raw(cond, g, zero), sa), sum_to(where_raw(cond, zero, g), sb)};
    });
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  DIMIX_CHECK(broadcast_shapes(x.sizes(), mask.sizes(), "masked_fill") == x.sizes(), "masked_fill: mask shape ",
              mask.shape_str(), " does not broadcast to ", x.shape_str());
  const Tensor fill = full({}, value, x.dtype(), x.device());
  Tensor out = where_raw(mask, fill, x);
  if (needs_grad({x}))
    record(out, "masked_fill", {x, mask}, [mask](const Tensor& g) -> std::vector<Tensor> {
      return {where_raw(mask, zeros({}, g.dtype(), g.device()), g), Tensor()};
    });
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"reshape/noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return reshape(x[0], {2, -1}); }},
    {"permute/3d", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return contiguous(permute(x[0], {2, 0, 1})); }},
    {"transpose", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return transpose(x[0], 0, 1); }},
    {"expand/size1", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 1}, t)}; },
     [](const std::vector<Tensor>& x) { return expand(x[0], {2, 3, 4}); }},
    {"squeeze_unsqueeze", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 1, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return unsqueeze(squeeze(x[0], 1), 0); }},
    {"slice/step", [](Generator& g, DType t) { return std::vector{randn_input(g, {4, 9}, t)}; },
     [](const std::vector<Tensor>& x) { return slice(x[0], 1, 1, 8, 3); }},
    {"narrow/noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {5, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return narrow(x[0], 0, 1, 3); }},
    {"cat/dim1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3}, t), noncontig_input(g, {2, 1}, t), randn_input(g, {2, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, 1); }},
    {"stack/dim0", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 2}, t), randn_input(g, {3, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 0); }},
    {"index_select/repeats", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 5, 3}, t), from_vector<int64_t>({4, 0, 4, 2, 4}, {5})}; },
     [](const std::vector<Tensor>& x) { return index_select(x[0], 1, x[1]); }},
    {"gather/dim1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 5}, t), index_input(g, {3, 4}, 5)}; },
     [](const std::vector<Tensor>& x) { return gather(x[0], 1, x[1]); }},
    {"masked_fill/broadcast", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 4}, t), from_vector<uint8_t>({1, 0, 0, 1}, {4})}; },
     [](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], -2.0); }},
    {"where/broadcast", [](Generator& g, DType t) {
       return std::vector{from_vector<uint8_t>({1, 0, 1}, {3, 1}), randn_input(g, {3, 4}, t), randn_input(g, {4}, t)}; },
     [](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); }},
});

}  // namespace dimix
