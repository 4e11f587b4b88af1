// layer_norm over the last dim (see layer_norm.h): x [..., D] seen as R rows
// of D. Follows torch.nn.functional.layer_norm (biased variance, eps inside
// the square root); Ba, Kiros & Hinton, "Layer Normalization" (2016).
//
// Forward, per row: mean, then the variance from a second pass over
// (x - mean) (two passes: no cancellation from E[x^2] - E[x]^2), then
// y = (x - mean) * rstd * w + b. mean and rstd [R] are saved for backward.
// Backward, with xhat = (x - mean) * rstd and gh = g * w:
//   dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
//   dw = sum_rows g * xhat,  db = sum_rows g
// Rows are split into chunks of a fixed size; each chunk sums its own dw/db
// partials, which are then added in chunk order: no races, and the same bits
// for any thread count.
//
// CUDA kernels dispatched to (tensors contiguous; weight/bias and
// grad_weight/grad_bias may be undefined; mean/rstd [R] in x's dtype):
//   "layer_norm_forward"  void(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
//                              const Tensor& weight, const Tensor& bias, double eps)
//   "layer_norm_backward" void(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
//                              const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
//                              const Tensor& weight)
#include "ops/layer_norm.h"

#include <algorithm>
#include <type_traits>

#include "ops/common.h"

namespace dimix {
namespace {

// Sum of n contiguous values in 16 independent lanes (vectorises and keeps
// rounding error growing with n/16 rather than n).
template <class T, class F>
inline T lane_sum(int64_t n, F f) {
  constexpr int kLanes = 16;
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += f(i + k);
  T tail = 0;
  for (; i < n; ++i) tail += f(i);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0] + tail;
}

template <class T>
void layer_norm_forward_cpu(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                            const Tensor& weight, const Tensor& bias, double eps, int64_t R, int64_t D) {
  const T* px = x.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const T* pb = bias.defined() ? bias.data<T>() : nullptr;
  T* py = y.data<T>();
  T* pm = mean.data<T>();
  T* pr = rstd.data<T>();
  const T inv_d = T(1) / static_cast<T>(D);
  parallel_for(0, R, std::max<int64_t>(1, 8192 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* __restrict xr = px + r * D;
      T* __restrict yr = py + r * D;
      const T mu = lane_sum<T>(D, [&](int64_t i) { return xr[i]; }) * inv_d;
      const T var = lane_sum<T>(D, [&](int64_t i) { const T c = xr[i] - mu; return c * c; }) * inv_d;
      const T rs = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var) + eps));
      pm[r] = mu;
      pr[r] = rs;
      if (pw && pb) for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * rs * pw[i] + pb[i];
      else if (pw) for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * rs * pw[i];
      else if (pb) for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * rs + pb[i];
      else for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * rs;
    }
  });
}

// Calls f(std::bool_constant<b>{}): turns a runtime flag into a template one.
template <class F>
inline void with_flag(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

// One row of the backward in two passes: the two row sums together with the
// dw/db updates, then dx. xhat and g * w are recomputed, never stored.
template <class T, bool HasW, bool WantW, bool WantB, bool WantX>
inline void layer_norm_backward_row(const T* __restrict xr, const T* __restrict gr, const T* __restrict w, T mu,
                                    T rs, T inv_d, T* __restrict dw, T* __restrict db, T* __restrict dxr, int64_t D) {
  T sum_gh = 0, sum_ghx = 0;
#pragma omp simd reduction(+ : sum_gh, sum_ghx)
  for (int64_t i = 0; i < D; ++i) {
    const T xh = (xr[i] - mu) * rs;
    const T gh = HasW ? gr[i] * w[i] : gr[i];
    sum_gh += gh;
    sum_ghx += gh * xh;
    if constexpr (WantW) dw[i] += gr[i] * xh;
    if constexpr (WantB) db[i] += gr[i];
  }
  if constexpr (WantX) {
    const T a = sum_gh * inv_d, b = sum_ghx * inv_d;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) {
      const T gh = HasW ? gr[i] * w[i] : gr[i];
      dxr[i] = rs * (gh - a - ((xr[i] - mu) * rs) * b);
    }
  }
}

template <class T>
void layer_norm_backward_cpu(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& g, const Tensor& x,
                             const Tensor& mean, const Tensor& rstd, const Tensor& weight, int64_t R, int64_t D) {
  const T* pg = g.data<T>();
  const T* px = x.data<T>();
  const T* pm = mean.data<T>();
  const T* pr = rstd.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  T* pgx = gx.defined() ? gx.data<T>() : nullptr;
  const bool want_w = gw.defined(), want_b = gb.defined();
  // Chunks of a fixed number of rows (not one per thread), so the partial
  // sums and their ordered total do not depend on the thread count.
  const int64_t per = std::max<int64_t>(16, 32768 / D);
  const int64_t chunks = (R + per - 1) / per;
  std::vector<T> partial_w(want_w ? chunks * D : 0, T(0)), partial_b(want_b ? chunks * D : 0, T(0));
  const T inv_d = T(1) / static_cast<T>(D);
  with_flag(pw != nullptr, [&](auto has_w) {
    with_flag(want_w, [&](auto dw_on) {
      with_flag(want_b, [&](auto db_on) {
        with_flag(pgx != nullptr, [&](auto dx_on) {
          parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
            for (int64_t c = cb; c < ce; ++c) {
              T* dw = dw_on ? partial_w.data() + c * D : nullptr;
              T* db = db_on ? partial_b.data() + c * D : nullptr;
              const int64_t r_end = std::min(R, (c + 1) * per);
              for (int64_t r = c * per; r < r_end; ++r)
                layer_norm_backward_row<T, has_w(), dw_on(), db_on(), dx_on()>(
                    px + r * D, pg + r * D, pw, pm[r], pr[r], inv_d, dw, db, pgx ? pgx + r * D : nullptr, D);
            }
          });
        });
      });
    });
  });
  // Chunk partials added in chunk order, columns in parallel.
  auto reduce_into = [&](const Tensor& out, const std::vector<T>& partial) {
    T* po = out.data<T>();
    const T* pp = partial.data();
    parallel_for(0, D, 256, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) po[i] = pp[i];
      for (int64_t c = 1; c < chunks; ++c)
        for (int64_t i = b; i < e; ++i) po[i] += pp[c * D + i];
    });
  };
  if (want_w) reduce_into(gw, partial_w);
  if (want_b) reduce_into(gb, partial_b);
}

void check_affine(const char* what, const Tensor& p, const Tensor& x, int64_t D) {
  if (!p.defined()) return;
  DIMIX_CHECK(p.dim() == 1 && p.sizes()[0] == D, "layer_norm: expected ", what, " of shape [", D, "] for input ",
              x.shape_str(), ", got ", p.shape_str());
  check_same_dtype("layer_norm", x, p);
  check_same_device("layer_norm", x, p);
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, double eps) {
  check_floating("layer_norm", x_in);
  DIMIX_CHECK(x_in.dim() >= 1, "layer_norm: expected at least a 1-d input [..., D], got a 0-d tensor");
  const int64_t D = x_in.sizes().back();
  DIMIX_CHECK(D > 0, "layer_norm: the normalised dim is empty in ", x_in.shape_str());
  DIMIX_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);
  check_affine("weight", weight_in, x_in, D);
  check_affine("bias", bias_in, x_in, D);
  const int64_t R = x_in.numel() / D;
  const Tensor x = x_in.contiguous_raw();
  const Tensor weight = weight_in.defined() ? weight_in.contiguous_raw() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous_raw() : Tensor();
  Tensor y = empty(x.sizes(), x.dtype(), x.device());
  Tensor mean = empty({R}, x.dtype(), x.device());
  Tensor rstd = empty({R}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double)>(
        "layer_norm_forward")(y, mean, rstd, x, weight, bias, eps);
  } else if (R > 0) {
    dispatch_float(x.dtype(), "layer_norm",
                   [&]<class T>() { layer_norm_forward_cpu<T>(y, mean, rstd, x, weight, bias, eps, R, D); });
  }
  if (needs_grad({x_in, weight_in, bias_in})) {
    const bool need_x = x_in.requires_grad();
    const bool need_w = weight_in.defined() && weight_in.requires_grad();
    const bool need_b = bias_in.defined() && bias_in.requires_grad();
    record(y, "layer_norm", {x_in, weight_in, bias_in},
           [x, weight, mean, rstd, R, D, need_x, need_w, need_b](const Tensor& g_in) -> std::vector<Tensor> {
             const Tensor g = g_in.contiguous_raw();
             Tensor gx = need_x ? empty(x.sizes(), x.dtype(), x.device()) : Tensor();
             Tensor gw = need_w ? empty({D}, x.dtype(), x.device()) : Tensor();
             Tensor gb = need_b ? empty({D}, x.dtype(), x.device()) : Tensor();
             if (x.device().is_cuda()) {
               cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, const Tensor&, const Tensor&)>("layer_norm_backward")(
                   gx, gw, gb, g, x, mean, rstd, weight);
             } else if (R > 0) {
               dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
                 layer_norm_backward_cpu<T>(gx, gw, gb, g, x, mean, rstd, weight, R, D);
               });
             } else {
               if (gw.defined()) fill_(gw, 0);
               if (gb.defined()) fill_(gb, 0);
             }
             return {gx, gw, gb};
           });
  }
  return y;
}

DIMIX_REGISTER_OP_CASES({
    {"layer_norm/weight_bias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 7}, t), randn_input(g, {7}, t), randn_input(g, {7}, t)}; },
     [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2]); }},
    {"layer_norm/plain_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return layer_norm(x[0], Tensor(), Tensor()); }},
    {"layer_norm/weight_only_size1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 1, 9}, t), randn_input(g, {9}, t)}; },
     [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], Tensor(), 1e-3); }},
    {"layer_norm/long_row_bias_only", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 37}, t), randn_input(g, {37}, t)}; },
     [](const std::vector<Tensor>& x) { return layer_norm(x[0], Tensor(), x[1]); }},
});

}  // namespace dimix
