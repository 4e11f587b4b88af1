// softmax / log_softmax along one dim (see softmax.h), max-shifted so large
// inputs never overflow: softmax(x) = exp(x - m) / sum exp(x - m), m = max x.
//
// Every input is seen as [outer, L, inner] around the softmax dim (L its
// length). inner == 1 is the fast path: contiguous rows, one pass for the max
// and one for exp-and-sum. inner > 1 (a middle dim) keeps the layout and runs
// the same passes over whole inner-length vectors at once, which vectorises
// across the inner index instead of striding through memory.
//
// CUDA kernels dispatched to (all tensors contiguous, same shape as x; `log`
// selects log_softmax):
//   "softmax_forward"  void(const Tensor& y, const Tensor& x, int64_t dim, bool log)
//   "softmax_backward" void(const Tensor& grad_x, const Tensor& grad_y, const Tensor& y, int64_t dim, bool log)
#include "ops/softmax.h"

#include <algorithm>
#include <limits>

#include "ops/common.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

struct SoftmaxLayout {
  int64_t outer = 1, L = 1, inner = 1;
};

SoftmaxLayout layout_around(const Shape& sizes, int64_t dim) {
  SoftmaxLayout s;
  for (int64_t d = 0; d < static_cast<int64_t>(sizes.size()); ++d) {
    if (d < dim) s.outer *= sizes[d];
    else if (d == dim) s.L = sizes[d];
    else s.inner *= sizes[d];
  }
  return s;
}

// ---- forward --------------------------------------------------------------------
template <class T, bool Log>
void softmax_row(const T* __restrict x, T* __restrict y, int64_t L) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < L; ++i) m = x[i] > m ? x[i] : m;
  T s = 0;
  if constexpr (Log) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < L; ++i) s += exp_vec(x[i] - m);
    const T shift = m + std::log(s);
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) y[i] = x[i] - shift;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < L; ++i) {
      const T e = exp_vec(x[i] - m);
      y[i] = e;
      s += e;
    }
    const T inv = T(1) / s;
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) y[i] *= inv;
  }
}

// One [L, inner] slab: the reductions run over L for all inner columns at once,
// using `acc` (2 * inner scratch) for the running max and sum.
template <class T, bool Log>
void softmax_slab(const T* __restrict x, T* __restrict y, int64_t L, int64_t inner, T* __restrict acc) {
  T* m = acc;
  T* s = acc + inner;
  for (int64_t j = 0; j < inner; ++j) { m[j] = -std::numeric_limits<T>::infinity(); s[j] = 0; }
  for (int64_t l = 0; l < L; ++l) {
    const T* xr = x + l * inner;
    for (int64_t j = 0; j < inner; ++j) m[j] = xr[j] > m[j] ? xr[j] : m[j];
  }
  for (int64_t l = 0; l < L; ++l) {
    const T* xr = x + l * inner;
    T* yr = y + l * inner;
    for (int64_t j = 0; j < inner; ++j) {
      const T e = exp_vec(xr[j] - m[j]);
      if constexpr (!Log) yr[j] = e;
      s[j] += e;
    }
  }
  if constexpr (Log) {
    for (int64_t j = 0; j < inner; ++j) s[j] = m[j] + std::log(s[j]);  // the log-sum-exp
    for (int64_t l = 0; l < L; ++l)
      for (int64_t j = 0; j < inner; ++j) y[l * inner + j] = x[l * inner + j] - s[j];
  } else {
    for (int64_t j = 0; j < inner; ++j) s[j] = T(1) / s[j];
    for (int64_t l = 0; l < L; ++l)
      for (int64_t j = 0; j < inner; ++j) y[l * inner + j] *= s[j];
  }
}

template <class T, bool Log>
void softmax_forward_cpu(const Tensor& y, const Tensor& x, const SoftmaxLayout& s) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const int64_t slab = s.L * s.inner;
  if (s.inner == 1) {
    parallel_for(0, s.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(s.L, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) softmax_row<T, Log>(px + r * s.L, py + r * s.L, s.L);
    });
    return;
  }
  parallel_for(0, s.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(slab, 1)), [&](int64_t b, int64_t e) {
    std::vector<T> acc(2 * s.inner);
    for (int64_t o = b; o < e; ++o) softmax_slab<T, Log>(px + o * slab, py + o * slab, s.L, s.inner, acc.data());
  });
}

// ---- backward -------------------------------------------------------------------
// softmax:     gx = y * (g - sum(g * y))
// log_softmax: gx = g - exp(y) * sum(g)
template <class T, bool Log>
void softmax_backward_row(const T* __restrict g, const T* __restrict y, T* __restrict gx, int64_t L) {
  T s = 0;
  if constexpr (Log) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < L; ++i) s += g[i];
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) gx[i] = g[i] - exp_vec(y[i]) * s;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < L; ++i) s += g[i] * y[i];
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) gx[i] = y[i] * (g[i] - s);
  }
}

template <class T, bool Log>
void softmax_backward_slab(const T* __restrict g, const T* __restrict y, T* __restrict gx, int64_t L, int64_t inner,
                           T* __restrict s) {
  for (int64_t j = 0; j < inner; ++j) s[j] = 0;
  for (int64_t l = 0; l < L; ++l) {
    const T* gr = g + l * inner;
    const T* yr = y + l * inner;
    if constexpr (Log) for (int64_t j = 0; j < inner; ++j) s[j] += gr[j];
    else for (int64_t j = 0; j < inner; ++j) s[j] += gr[j] * yr[j];
  }
  for (int64_t l = 0; l < L; ++l) {
    const T* gr = g + l * inner;
    const T* yr = y + l * inner;
    T* out = gx + l * inner;
    if constexpr (Log) for (int64_t j = 0; j < inner; ++j) out[j] = gr[j] - exp_vec(yr[j]) * s[j];
    else for (int64_t j = 0; j < inner; ++j) out[j] = yr[j] * (gr[j] - s[j]);
  }
}

template <class T, bool Log>
void softmax_backward_cpu(const Tensor& gx, const Tensor& g, const Tensor& y, const SoftmaxLayout& s) {
  const T* pg = g.data<T>();
  const T* py = y.data<T>();
  T* pgx = gx.data<T>();
  const int64_t slab = s.L * s.inner;
  if (s.inner == 1) {
    parallel_for(0, s.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(s.L, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        softmax_backward_row<T, Log>(pg + r * s.L, py + r * s.L, pgx + r * s.L, s.L);
    });
    return;
  }
  parallel_for(0, s.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(slab, 1)), [&](int64_t b, int64_t e) {
    std::vector<T> acc(s.inner);
    for (int64_t o = b; o < e; ++o)
      softmax_backward_slab<T, Log>(pg + o * slab, py + o * slab, pgx + o * slab, s.L, s.inner, acc.data());
  });
}

// ---- raw ops and autograd ----------------------------------------------------------
Tensor softmax_backward_raw(const Tensor& g_in, const Tensor& y, int64_t dim, bool log) {
  const Tensor g = g_in.contiguous_raw();
  Tensor gx = empty(y.sizes(), y.dtype(), y.device());
  if (y.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, int64_t, bool)>("softmax_backward")(gx, g, y, dim,
                                                                                                       log);
    return gx;
  }
  const SoftmaxLayout s = layout_around(y.sizes(), dim);
  dispatch_float(y.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    if (log) softmax_backward_cpu<T, true>(gx, g, y, s);
    else softmax_backward_cpu<T, false>(gx, g, y, s);
  });
  return gx;
}

Tensor softmax_impl(const Tensor& x_in, int64_t dim_in, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_floating(op, x_in);
  // A 0-d tensor is a single row of length 1.
  const int64_t dim = x_in.dim() == 0 ? 0 : normalize_dim(dim_in, x_in.dim(), op);
  const Tensor x = x_in.contiguous_raw();
  Tensor y = empty(x.sizes(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, bool)>("softmax_forward")(y, x, dim, log);
  } else if (x.numel() > 0) {
    const SoftmaxLayout s = layout_around(x.sizes(), dim);
    dispatch_float(x.dtype(), op, [&]<class T>() {
      if (log) softmax_forward_cpu<T, true>(y, x, s);
      else softmax_forward_cpu<T, false>(y, x, s);
    });
  }
  if (needs_grad({x_in})) {
    // A detached handle on the output: saving `y` itself would make a cycle
    // (y -> node -> closure -> y) that is never freed.
    record(y, op, {x_in}, [saved = y.detach(), dim, log](const Tensor& g) -> std::vector<Tensor> {
      return {softmax_backward_raw(g, saved, dim, log)};
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

DIMIX_REGISTER_OP_CASES({
    {"softmax/lastdim_odd", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 7}, t)}; },
     [](const std::vector<Tensor>& x) { return softmax(x[0], -1); }},
    {"softmax/middle_dim", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 5, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return softmax(x[0], 1); }},
    {"softmax/dim0_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return softmax(x[0], 0); }},
    {"softmax/size1_dim", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 1}, t)}; },
     [](const std::vector<Tensor>& x) { return softmax(x[0], -1); }},
    {"log_softmax/lastdim", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 9}, t)}; },
     [](const std::vector<Tensor>& x) { return log_softmax(x[0], -1); }},
    {"log_softmax/middle_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {2, 3, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return log_softmax(x[0], 1); }},
});

}  // namespace dimix
