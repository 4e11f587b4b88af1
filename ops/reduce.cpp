// Reductions (see reduce.h). Every reduction is brought to one of two
// layouts: reduced dims innermost (sum each contiguous row) or outermost (add
// rows into one accumulator row); anything else is permuted to the first.
#include "ops/reduce.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/shape.h"

namespace dimix {
namespace {

std::vector<bool> reduced_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(x.dim(), dims.empty());
  for (int64_t d : dims) {
    const int64_t nd = normalize_dim(d, x.dim(), op);
    DIMIX_CHECK(!mask[nd] || dims.empty(), op, ": dim ", d, " given twice");
    mask[nd] = true;
  }
  return mask;
}

Shape keepdim_shape(const Tensor& x, const std::vector<bool>& mask) {
  Shape s = x.sizes();
  for (size_t d = 0; d < s.size(); ++d)
    if (mask[d]) s[d] = 1;
  return s;
}

Shape squeeze_shape(const Tensor& x, const std::vector<bool>& mask) {
  Shape s;
  for (size_t d = 0; d < mask.size(); ++d)
    if (!mask[d]) s.push_back(x.sizes()[d]);
  return s;
}

// Sum of n contiguous values with 8 partial sums (vectorises; better rounding).
template <class T>
inline T row_sum(const T* p, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  T s = 0;
  for (; i < n; ++i) s += p[i];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// x viewed as [outer, inner] (contiguous): out[j] = sum_i x[i, j].
template <class T>
void sum_outer(const T* x, T* out, int64_t outer, int64_t inner) {
  parallel_for(0, inner, 1024, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) out[j] = 0;
    for (int64_t i = 0; i < outer; ++i) {
      const T* row = x + i * inner;
      for (int64_t j = b; j < e; ++j) out[j] += row[j];
    }
  });
}

// The CPU sum in keepdim form.
Tensor sum_cpu(const Tensor& x, const std::vector<bool>& mask) {
  const Shape out_shape = keepdim_shape(x, mask);
  Tensor out = empty(out_shape, x.dtype(), x.device());
  const int64_t nd = x.dim();
  // Is the reduced set a suffix or a prefix (ignoring size-1 dims)?
  int64_t first_kept = nd, last_kept = -1, first_red = nd, last_red = -1;
  for (int64_t d = 0; d < nd; ++d) {
    if (x.sizes()[d] == 1) continue;
    if (mask[d]) { first_red = std::min(first_red, d); last_red = d; }
    else { first_kept = std::min(first_kept, d); last_kept = d; }
  }
  const bool suffix = last_kept < first_red;
  const bool prefix = last_red < first_kept;
  dispatch_float(x.dtype(), "sum", [&]<class T>() {
    T* po = out.data<T>();
    if (suffix || prefix) {
      const Tensor c = x.contiguous_raw();
      const T* px = c.data<T>();
      const int64_t rows = out.numel(), len = rows ? x.numel() / rows : 0;
      if (suffix) {
        parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(len, 1)), [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) po[r] = row_sum(px + r * len, len);
        });
      } else {
        sum_outer(px, po, len, rows);
      }
      return;
    }
    // General: move reduced dims last, then sum rows.
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; ++d) if (!mask[d]) perm.push_back(d);
    for (int64_t d = 0; d < nd; ++d) if (mask[d]) perm.push_back(d);
    Shape ps(nd), pst(nd);
    for (int64_t i = 0; i < nd; ++i) { ps[i] = x.sizes()[perm[i]]; pst[i] = x.strides()[perm[i]]; }
    const Tensor c = x.as_strided(ps, pst, x.offset()).contiguous_raw();
    const T* px = c.data<T>();
    const int64_t rows = out.numel(), len = rows ? x.numel() / rows : 0;
    parallel_for(0, rows, 64, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) po[r] = row_sum(px + r * len, len);
    });
  });
  return out;
}

Tensor sum_keepdim_raw(const Tensor& x, const std::vector<bool>& mask) {
  if (x.device().is_cuda()) {
    Tensor out = empty(keepdim_shape(x, mask), x.dtype(), x.device());
    cuda_kernel<void(const Tensor&, const Tensor&)>("sum")(out, x);
    return out;
  }
  return sum_cpu(x, mask);
}

}  // namespace

Tensor sum_raw(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_floating("sum", x);
  const auto mask = reduced_mask(x, dims, "sum");
  Tensor out = sum_keepdim_raw(x, mask);
  if (!keepdim) out = out.as_strided(squeeze_shape(x, mask), contiguous_strides(squeeze_shape(x, mask)), out.offset());
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = sum_raw(x, dims, keepdim);
  if (needs_grad({x})) {
    const auto mask = reduced_mask(x, dims, "sum");
    record(out, "sum", {x}, [in_sizes = x.sizes(), kd = keepdim_shape(x, mask)](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gk = g.contiguous_raw().as_strided(kd, contiguous_strides(kd), 0);
      return {expand_raw(gk, in_sizes)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const auto mask = reduced_mask(x, dims, "mean");
  int64_t count = 1;
  for (int64_t d = 0; d < x.dim(); ++d) if (mask[d]) count *= x.sizes()[d];
  DIMIX_CHECK(count > 0, "mean: reducing over zero elements of shape ", x.shape_str());
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, int64_t correction) {
  const auto mask = reduced_mask(x, dims, "var");
  int64_t count = 1;
  for (int64_t d = 0; d < x.dim(); ++d) if (mask[d]) count *= x.sizes()[d];
  DIMIX_CHECK(count - correction > 0, "var: ", count, " elements with correction ", correction);
  const Tensor centred = sub(x, mean(x, dims, true));
  return mul(sum(square(centred), dims, keepdim), 1.0 / static_cast<double>(count - correction));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  DIMIX_CHECK(lead >= 0, "sum_to: cannot reduce ", x.shape_str(), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) { dims.push_back(d); continue; }
    const int64_t target = shape[d - lead];
    if (target == 1 && x.sizes()[d] != 1) dims.push_back(d);
    else DIMIX_CHECK(target == x.sizes()[d], "sum_to: cannot reduce ", x.shape_str(), " to ", shape_str(shape));
  }
  Tensor s = sum(x, dims, true);
  return reshape(s, shape);
}

namespace {
template <class T>
void max_cpu(const Tensor& x, int64_t dim, Tensor& values, Tensor& indices) {
  // move dim last
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d) if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  Shape ps, pst;
  for (int64_t d : perm) { ps.push_back(x.sizes()[d]); pst.push_back(x.strides()[d]); }
  const Tensor c = x.as_strided(ps, pst, x.offset()).contiguous_raw();
  const int64_t len = x.sizes()[dim], rows = len ? x.numel() / len : 0;
  const T* px = c.data<T>();
  T* pv = values.data<T>();
  int64_t* pi = indices.data<int64_t>();
  parallel_for(0, rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* row = px + r * len;
      int64_t best = 0;
      for (int64_t i = 1; i < len; ++i)
        if (row[i] > row[best] || (std::isnan(row[i]) && !std::isnan(row[best]))) best = i;
      pv[r] = row[best];
      pi[r] = best;
    }
  });
}

std::pair<Tensor, Tensor> max_impl(const Tensor& x, int64_t dim_in) {
  const int64_t dim = normalize_dim(dim_in, x.dim(), "max");
  DIMIX_CHECK(x.dim() > 0 && x.sizes()[dim] > 0, "max: cannot reduce an empty dim of shape ", x.shape_str());
  Shape kd = x.sizes();
  kd[dim] = 1;
  Tensor values = empty(kd, x.dtype(), x.device());
  Tensor indices = empty(kd, DType::i64, x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, int64_t)>("max")(values, indices, x, dim);
    return {values, indices};
  }
  dispatch_float(x.dtype(), "max", [&]<class T>() { max_cpu<T>(x, dim, values, indices); });
  return {values, indices};
}
}  // namespace

Tensor max(const Tensor& x, int64_t dim_in, bool keepdim) {
  auto [values, indices] = max_impl(x, dim_in);
  const int64_t dim = normalize_dim(dim_in, x.dim(), "max");
  if (!keepdim) values = squeeze(values, dim);
  if (needs_grad({x})) {
    record(values, "max", {x}, [indices, dim, in_sizes = x.sizes(), kd = indices.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gk = g.contiguous_raw().as_strided(kd, contiguous_strides(kd), 0);
      return {scatter_add_raw(zeros(in_sizes, g.dtype(), g.device()), dim, indices, gk)};
    });
  }
  return values;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  auto [values, indices] = max_impl(x, dim);
  if (!keepdim) indices = squeeze(indices, normalize_dim(dim, x.dim(), "argmax"));
  return indices;
}

DIMIX_REGISTER_OP_CASES({
    {"sum/all", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return sum(x[0]); }},
    {"sum/inner_keepdim", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return sum(x[0], {-1}, true); }},
    {"sum/outer", [](Generator& g, DType t) { return std::vector{randn_input(g, {4, 1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return sum(x[0], {0}); }},
    {"sum/middle_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {3, 4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return sum(x[0], {1}); }},
    {"mean/two_dims", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return mean(x[0], {0, 2}, true); }},
    {"var/unbiased", [](Generator& g, DType t) { return std::vector{randn_input(g, {4, 7}, t)}; },
     [](const std::vector<Tensor>& x) { return var(x[0], {1}); }},
    {"var/biased_all", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return var(x[0], {}, false, 0); }},
    {"max/lastdim", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 7}, t)}; },
     [](const std::vector<Tensor>& x) { return max(x[0], -1); }},
    {"max/dim0_keepdim", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {5, 1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return max(x[0], 0, true); }},
    {"sum_to/broadcast", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return sum_to(x[0], {3, 1}); }},
});

}  // namespace dimix
