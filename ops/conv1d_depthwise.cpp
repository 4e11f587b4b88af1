// causal_conv1d_depthwise (see conv1d_depthwise.h).
//
// Letters: B batch, C channels, L length, K taps; tap j reads x at t - s_j
// with shift s_j = K - 1 - j. Two CPU layouts, so the M2 mixer's [B, L, 3d]
// projection is convolved without a transpose copy:
//   rows (x's L stride 1): per (b, c) row, for each tap a shifted axpy over t;
//   channels-last (x's C stride 1): per (b, t), for each tap an axpy over the
//     contiguous channels with the weights transposed to [K, C] once.
// Backward: dx is the same correlation with the taps mirrored (x[t - s_j]
// feeds y[t], so dy[t + s_j] feeds dx[t]); dw[c, j] = sum_{b,t} dy[b,c,t]
// x[b,c,t - s_j] and db[c] = sum dy, computed in parallel over channels so
// the sums stay in one thread (deterministic).
//
// CUDA kernels dispatched to (x, y, dx, gy contiguous [B, C, L]; weight [C, K];
// an undefined bias / output means "none" / "not needed"):
//   "causal_conv1d_depthwise_forward"  void(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias)
//   "causal_conv1d_depthwise_backward" void(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
//                                           const Tensor& gy, const Tensor& x, const Tensor& weight)
#include "ops/conv1d_depthwise.h"

#include "ops/common.h"

namespace dimix {
namespace {

struct Dims {
  int64_t B, C, L, K;
};

// x viewed by the kernels: base pointer strides (sb, sc, st); rows mode has
// st == 1, channels-last mode sc == 1.
struct View {
  int64_t sb, sc, st;
};

template <class T>
void forward_rows(const T* x, View v, T* y, const T* w, const T* bias, Dims d) {
  parallel_for(0, d.B * d.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.L * d.K, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / d.C, c = r % d.C;
      const T* xr = x + b * v.sb + c * v.sc;
      T* yr = y + r * d.L;
      const T b0 = bias ? bias[c] : T(0);
      for (int64_t t = 0; t < d.L; ++t) yr[t] = b0;
      for (int64_t j = 0; j < d.K; ++j) {
        const int64_t shift = d.K - 1 - j;
        const T wj = w[c * d.K + j];
#pragma omp simd
        for (int64_t t = shift; t < d.L; ++t) yr[t] += wj * xr[t - shift];
      }
    }
  });
}

// y [B, L, C] contiguous; wt [K, C].
template <class T>
void forward_cl(const T* x, View v, T* y, const T* wt, const T* bias, Dims d) {
  parallel_for(0, d.B * d.L, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.C * d.K, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / d.L, t = r % d.L;
      T* yr = y + r * d.C;
      for (int64_t c = 0; c < d.C; ++c) yr[c] = bias ? bias[c] : T(0);
      for (int64_t j = 0; j < d.K; ++j) {
        const int64_t s = t - (d.K - 1 - j);
        if (s < 0) continue;
        const T* xr = x + b * v.sb + s * v.st;
        const T* wj = wt + j * d.C;
#pragma omp simd
        for (int64_t c = 0; c < d.C; ++c) yr[c] += wj[c] * xr[c];
      }
    }
  });
}

// gy [B, C, L] contiguous -> dx [B, C, L] contiguous, dw [C, K], db [C].
template <class T>
void backward_rows(const T* gy, const T* x, View v, const T* w, T* dx, T* dw, T* db, Dims d) {
  if (dx) {
    parallel_for(0, d.B * d.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.L * d.K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t c = r % d.C;
        const T* gr = gy + r * d.L;
        T* out = dx + r * d.L;
        for (int64_t t = 0; t < d.L; ++t) out[t] = T(0);
        for (int64_t j = 0; j < d.K; ++j) {
          const int64_t shift = d.K - 1 - j;
          const T wj = w[c * d.K + j];
#pragma omp simd
          for (int64_t t = 0; t < d.L - shift; ++t) out[t] += wj * gr[t + shift];
        }
      }
    });
  }
  if (!dw && !db) return;
  parallel_for(0, d.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.B * d.L * d.K, 1)), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T sum_b = 0;
      for (int64_t j = 0; j < d.K && dw; ++j) dw[c * d.K + j] = T(0);
      for (int64_t b = 0; b < d.B; ++b) {
        const T* gr = gy + (b * d.C + c) * d.L;
        const T* xr = x + b * v.sb + c * v.sc;
        if (db)
          for (int64_t t = 0; t < d.L; ++t) sum_b += gr[t];
        if (!dw) continue;
        for (int64_t j = 0; j < d.K; ++j) {
          const int64_t shift = d.K - 1 - j;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t t = shift; t < d.L; ++t) acc += gr[t] * xr[t - shift];
          dw[c * d.K + j] += acc;
        }
      }
      if (db) db[c] = sum_b;
    }
  });
}

// gy [B, L, C] contiguous -> dx [B, L, C] contiguous, dwt [K, C] (zeroed here), db [C].
template <class T>
void backward_cl(const T* gy, const T* x, View v, const T* wt, T* dx, T* dwt, T* db, Dims d) {
  if (dx) {
    parallel_for(0, d.B * d.L, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.C * d.K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / d.L, s = r % d.L;
        T* out = dx + r * d.C;
        for (int64_t c = 0; c < d.C; ++c) out[c] = T(0);
        for (int64_t j = 0; j < d.K; ++j) {
          const int64_t t = s + (d.K - 1 - j);
          if (t >= d.L) continue;
          const T* gr = gy + (b * d.L + t) * d.C;
          const T* wj = wt + j * d.C;
#pragma omp simd
          for (int64_t c = 0; c < d.C; ++c) out[c] += wj[c] * gr[c];
        }
      }
    });
  }
  if (!dwt && !db) return;
  parallel_for(0, d.C, std::max<int64_t>(16, 16384 / std::max<int64_t>(d.B * d.L * d.K, 1)), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (db) db[c] = T(0);
      if (dwt)
        for (int64_t j = 0; j < d.K; ++j) dwt[j * d.C + c] = T(0);
    }
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.L; ++t) {
        const T* gr = gy + (b * d.L + t) * d.C;
        if (db)
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) db[c] += gr[c];
        if (!dwt) continue;
        for (int64_t j = 0; j < d.K; ++j) {
          const int64_t s = t - (d.K - 1 - j);
          if (s < 0) continue;
          const T* xr = x + b * v.sb + s * v.st;
          T* dj = dwt + j * d.C;
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) dj[c] += gr[c] * xr[c];
        }
      }
  });
}

// [C, K] <-> [K, C].
template <class T>
std::vector<T> transposed(const T* a, int64_t rows, int64_t cols) {
  std::vector<T> out(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[j * rows + i] = a[i * cols + j];
  return out;
}

}  // namespace

Tensor causal_conv1d_depthwise(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  const char* op = "causal_conv1d_depthwise";
  check_floating(op, x_in);
  DIMIX_CHECK(x_in.dim() == 3, op, ": expected x [B, C, L], got ", x_in.shape_str());
  DIMIX_CHECK(weight_in.defined() && weight_in.dim() == 2 && weight_in.sizes()[0] == x_in.sizes()[1] &&
                  weight_in.sizes()[1] >= 1,
              op, ": expected weight [C, K] with C = ", x_in.sizes()[1], " for x ", x_in.shape_str(), ", got ",
              weight_in.defined() ? weight_in.shape_str() : std::string("undefined"));
  check_same_device(op, x_in, weight_in);
  check_same_dtype(op, x_in, weight_in);
  if (bias_in.defined()) {
    check_same_device(op, x_in, bias_in);
    check_same_dtype(op, x_in, bias_in);
    DIMIX_CHECK(bias_in.dim() == 1 && bias_in.sizes()[0] == x_in.sizes()[1], op, ": expected bias [",
                x_in.sizes()[1], "], got ", bias_in.shape_str());
  }
  const Dims d{x_in.sizes()[0], x_in.sizes()[1], x_in.sizes()[2], weight_in.sizes()[1]};
  const Tensor w = weight_in.contiguous_raw();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous_raw() : Tensor();

  if (x_in.device().is_cuda()) {
    const Tensor x = x_in.contiguous_raw();
    Tensor y = empty(x.sizes(), x.dtype(), x.device());
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>("causal_conv1d_depthwise_forward")(
        y, x, w, bias);
    if (needs_grad({x_in, weight_in, bias_in})) {
      const bool gx = x_in.requires_grad(), gw = weight_in.requires_grad(), gb = bias.defined() && bias_in.requires_grad();
      const Tensor sx = x.detach(), sw = w.detach();
      record(y, op, {x_in, weight_in, bias_in}, [=](const Tensor& g) -> std::vector<Tensor> {
        Tensor dx = gx ? empty(sx.sizes(), sx.dtype(), sx.device()) : Tensor();
        Tensor dw = gw ? empty(sw.sizes(), sw.dtype(), sw.device()) : Tensor();
        Tensor db = gb ? empty({d.C}, sx.dtype(), sx.device()) : Tensor();
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(
            "causal_conv1d_depthwise_backward")(dx, dw, db, g.contiguous_raw(), sx, sw);
        return {dx, dw, db};
      });
    }
    return y;
  }

  // Pick the layout x already has; anything else is copied to rows.
  Tensor x = x_in;
  const bool rows = x.strides()[2] == 1 || d.L == 1;
  const bool cl = !rows && (x.strides()[1] == 1 || d.C == 1);
  if (!rows && !cl) x = x_in.contiguous_raw();
  const bool channels_last = cl;
  const View v{x.strides()[0], x.strides()[1], x.strides()[2]};
  Tensor y;
  dispatch_float(x.dtype(), op, [&]<class T>() {
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    if (channels_last) {
      const Tensor ycl = empty({d.B, d.L, d.C}, x.dtype());
      const std::vector<T> wt = transposed(w.data<T>(), d.C, d.K);
      forward_cl<T>(x.data<T>(), v, ycl.data<T>(), wt.data(), pb, d);
      y = ycl.as_strided({d.B, d.C, d.L}, {d.L * d.C, 1, d.C}, 0);
    } else {
      y = empty({d.B, d.C, d.L}, x.dtype());
      forward_rows<T>(x.data<T>(), v, y.data<T>(), w.data<T>(), pb, d);
    }
  });

  if (needs_grad({x_in, weight_in, bias_in})) {
    const bool gx = x_in.requires_grad(), gw = weight_in.requires_grad(), gb = bias.defined() && bias_in.requires_grad();
    const Tensor sx = x.detach(), sw = w.detach();
    record(y, op, {x_in, weight_in, bias_in}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor dx, dw, db;
      dispatch_float(sx.dtype(), "causal_conv1d_depthwise", [&]<class T>() {
        dw = gw ? empty({d.C, d.K}, sx.dtype()) : Tensor();
        db = gb ? empty({d.C}, sx.dtype()) : Tensor();
        T* pdb = gb ? db.data<T>() : nullptr;
        if (channels_last) {
          // dy in the [B, L, C] layout of y (usually already so: a copy-free view).
          const Tensor gcl = g.as_strided({d.B, d.L, d.C}, {g.strides()[0], g.strides()[2], g.strides()[1]}, g.offset())
                                 .contiguous_raw();
          const std::vector<T> wt = transposed(sw.data<T>(), d.C, d.K);
          std::vector<T> dwt(gw ? d.K * d.C : 0);
          Tensor dxcl = gx ? empty({d.B, d.L, d.C}, sx.dtype()) : Tensor();
          backward_cl<T>(gcl.data<T>(), sx.data<T>(), v, wt.data(), gx ? dxcl.data<T>() : nullptr,
                         gw ? dwt.data() : nullptr, pdb, d);
          if (gx) dx = dxcl.as_strided({d.B, d.C, d.L}, {d.L * d.C, 1, d.C}, 0);
          if (gw) {
            const std::vector<T> back = transposed(dwt.data(), d.K, d.C);
            std::copy(back.begin(), back.end(), dw.data<T>());
          }
        } else {
          const Tensor gc = g.contiguous_raw();
          if (gx) dx = empty({d.B, d.C, d.L}, sx.dtype());
          backward_rows<T>(gc.data<T>(), sx.data<T>(), v, sw.data<T>(), gx ? dx.data<T>() : nullptr,
                           gw ? dw.data<T>() : nullptr, pdb, d);
        }
      });
      return {dx, dw, db};
    });
  }
  return y;
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // The M2 short filter: K = 3, rows layout, bias.
    {"causal_conv1d_depthwise/k3_rows", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5}, t), randn_input(g, {3, 3}, t), randn_input(g, {3}, t)}; },
     [](const std::vector<Tensor>& x) { return causal_conv1d_depthwise(x[0], x[1], x[2]); }},
    // Channels-last x (a transposed [B, L, C] buffer), as the mixer feeds it.
    {"causal_conv1d_depthwise/k3_channels_last", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 5, 4}, t), randn_input(g, {5, 3}, t), randn_input(g, {5}, t)}; },
     [](const std::vector<Tensor>& x) { return causal_conv1d_depthwise(x[0], x[1], x[2]); }},
    // More taps than positions (K = 4 > L = 2), no bias, B = 1.
    {"causal_conv1d_depthwise/k4_L2_nobias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {1, 2, 2}, t), randn_input(g, {2, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return causal_conv1d_depthwise(x[0], x[1]); }},
    // K = 1 (a per-channel scale and shift), channels-last, odd sizes.
    {"causal_conv1d_depthwise/k1_channels_last", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 3, 7}, t), randn_input(g, {3, 1}, t), randn_input(g, {3}, t)}; },
     [](const std::vector<Tensor>& x) { return causal_conv1d_depthwise(x[0], x[1], x[2]); }},
    // Neither L nor C contiguous: a slice with step 2 (copied to rows).
    {"causal_conv1d_depthwise/strided_copy", [](Generator& g, DType t) {
       Tensor base = randn_input(g, {2, 3, 8}, t, false);
       Tensor x = base.as_strided({2, 2, 4}, {24, 16, 2}, 0).detach();  // rows 0 and 2, every other t
       x.set_requires_grad(true);
       return std::vector{x, randn_input(g, {2, 3}, t), randn_input(g, {2}, t)}; },
     [](const std::vector<Tensor>& x) { return causal_conv1d_depthwise(x[0], x[1], x[2]); }},
});

}  // namespace dimix
