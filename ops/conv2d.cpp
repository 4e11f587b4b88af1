// conv2d (see conv2d.h) by im2col + GEMM on the CPU, cuDNN on GPUs.
//
// Letters: N batch, C/O input/output channels, G groups (Cg = C/G, Og = O/G),
// kh x kw kernel, s stride, p padding, L = Ho * Wo output positions,
// K = Cg * kh * kw the length of one patch of a group.
// cols [C * kh * kw, N * L] holds every patch of every image as a column
// (rows ordered c, ki, kj: group g's rows are one contiguous block), so each
// group's forward is one GEMM over the whole batch:
//   out_g [Og, N*L] = W_g [Og, K] @ cols_g [K, N*L]
// and its backward two more:
//   dW_g = dout_g [Og, N*L] @ cols_g^T,   dcols_g = W_g^T @ dout_g,
// with dcols folded back onto x (col2im) plane by plane in a fixed order
// (deterministic). cols is rebuilt in the backward rather than kept.
//
// CUDA kernels dispatched to (tensors contiguous; the gradients to fill may
// be undefined, meaning not wanted):
//   "conv2d_forward"  void(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
//                          int64_t stride, int64_t padding, int64_t groups)
//   "conv2d_backward" void(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
//                          const Tensor& grad_out, const Tensor& x, const Tensor& weight,
//                          int64_t stride, int64_t padding, int64_t groups)
#include "ops/conv2d.h"

#include <algorithm>

#include "ops/common.h"
#include "ops/linalg.h"

namespace dimix {
namespace {

struct ConvGeometry {
  int64_t N, C, H, W, O, kh, kw, s, p, G, Ho, Wo;
  int64_t Cg() const { return C / G; }
  int64_t Og() const { return O / G; }
  int64_t L() const { return Ho * Wo; }
  int64_t K() const { return Cg() * kh * kw; }
};

ConvGeometry geometry(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t padding,
                      int64_t groups) {
  const char* op = "conv2d";
  check_floating(op, x);
  DIMIX_CHECK(x.dim() == 4, op, ": expected x [N, C, H, W], got shape ", x.shape_str());
  DIMIX_CHECK(w.defined() && w.dim() == 4, op, ": expected weight [O, C/groups, kh, kw], got ",
              w.defined() ? w.shape_str() : std::string("undefined"));
  check_same_device(op, x, w);
  check_same_dtype(op, x, w);
  DIMIX_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  DIMIX_CHECK(padding >= 0, op, ": padding must be >= 0, got ", padding);
  DIMIX_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
  ConvGeometry g{x.sizes()[0], x.sizes()[1], x.sizes()[2], x.sizes()[3], w.sizes()[0], w.sizes()[2], w.sizes()[3],
                 stride, padding, groups, 0, 0};
  DIMIX_CHECK(g.C % groups == 0 && g.O % groups == 0, op, ": input channels ", g.C, " (x ", x.shape_str(),
              ") and output channels ", g.O, " (weight ", w.shape_str(), ") must be divisible by groups = ", groups);
  DIMIX_CHECK(w.sizes()[1] == g.C / groups, op, ": weight ", w.shape_str(), " expects ", w.sizes()[1] * groups,
              " input channels with groups = ", groups, ", but x ", x.shape_str(), " has ", g.C);
  DIMIX_CHECK(g.kh >= 1 && g.kw >= 1, op, ": empty kernel in weight ", w.shape_str());
  const int64_t eh = g.H + 2 * padding - g.kh, ew = g.W + 2 * padding - g.kw;
  DIMIX_CHECK(eh >= 0 && ew >= 0, op, ": kernel ", g.kh, "x", g.kw, " is larger than the padded input ",
              g.H + 2 * padding, "x", g.W + 2 * padding, " (x ", x.shape_str(), ", padding ", padding, ")");
  g.Ho = eh / stride + 1;
  g.Wo = ew / stride + 1;
  if (bias.defined()) {
    check_same_device(op, x, bias);
    check_same_dtype(op, x, bias);
    DIMIX_CHECK(bias.dim() == 1 && bias.sizes()[0] == g.O, op, ": expected bias [", g.O, "], got ", bias.shape_str());
  }
  return g;
}

// cols[(c*kh + ki)*kw + kj, n*L + oh*Wo + ow] = x[n, c, oh*s - p + ki, ow*s - p + kj] (0 outside).
template <class T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
  const int64_t rows = g.C * g.kh * g.kw, NL = g.N * g.L();
  parallel_for(0, rows * g.N, std::max<int64_t>(1, 16384 / std::max<int64_t>(g.L(), 1)), [&](int64_t b, int64_t e) {
    for (int64_t rn = b; rn < e; ++rn) {
      const int64_t r = rn / g.N, n = rn % g.N;
      const int64_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
      const T* plane = x + (n * g.C + c) * g.H * g.W;
      T* dst = cols + r * NL + n * g.L();
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const int64_t ih = oh * g.s - g.p + ki;
        T* drow = dst + oh * g.Wo;
        if (ih < 0 || ih >= g.H) {
          std::fill(drow, drow + g.Wo, T(0));
          continue;
        }
        const T* srow = plane + ih * g.W;
        for (int64_t ow = 0; ow < g.Wo; ++ow) {
          const int64_t iw = ow * g.s - g.p + kj;
          drow[ow] = iw >= 0 && iw < g.W ? srow[iw] : T(0);
        }
      }
    }
  });
}

// The adjoint of im2col: dx[n, c] = sum over (ki, kj, oh, ow) of dcols, one
// (n, c) plane per task, accumulated in a fixed order.
template <class T>
void col2im(const T* dcols, T* dx, const ConvGeometry& g) {
  const int64_t NL = g.N * g.L();
  parallel_for(0, g.N * g.C, 1, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C;
      T* plane = dx + nc * g.H * g.W;
      std::fill(plane, plane + g.H * g.W, T(0));
      for (int64_t ki = 0; ki < g.kh; ++ki)
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const T* src = dcols + ((c * g.kh + ki) * g.kw + kj) * NL + n * g.L();
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            const int64_t ih = oh * g.s - g.p + ki;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t ow = 0; ow < g.Wo; ++ow) {
              const int64_t iw = ow * g.s - g.p + kj;
              if (iw >= 0 && iw < g.W) plane[ih * g.W + iw] += src[oh * g.Wo + ow];
            }
          }
        }
    }
  });
}

template <class T>
void conv2d_forward_cpu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g) {
  const int64_t NL = g.N * g.L(), K = g.K(), Og = g.Og(), L = g.L();
  Tensor cols = empty({g.C * g.kh * g.kw, NL}, x.dtype());
  im2col(x.data<T>(), cols.data<T>(), g);
  Tensor outp = empty({g.O, NL}, x.dtype());  // [O, N, L]
  for (int64_t k = 0; k < g.G; ++k)
    gemm<T>(false, false, Og, NL, K, T(1), w.data<T>() + k * Og * K, K, cols.data<T>() + k * K * NL, NL, T(0),
            outp.data<T>() + k * Og * NL, NL);
  const T* po = outp.data<T>();
  const T* pb = bias.defined() ? bias.data<T>() : nullptr;
  T* dst = out.data<T>();
  parallel_for(0, g.N * g.O, std::max<int64_t>(1, 16384 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
    for (int64_t no = b; no < e; ++no) {
      const int64_t n = no / g.O, o = no % g.O;
      const T* src = po + (o * g.N + n) * L;
      T* d = dst + no * L;
      const T add = pb ? pb[o] : T(0);
      for (int64_t l = 0; l < L; ++l) d[l] = src[l] + add;
    }
  });
}

template <class T>
void conv2d_backward_cpu(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& gout, const Tensor& x,
                         const Tensor& w, const ConvGeometry& g) {
  const int64_t NL = g.N * g.L(), K = g.K(), Og = g.Og(), L = g.L();
  // dout as [O, N*L], the layout of the forward's GEMM output.
  Tensor gp = empty({g.O, NL}, x.dtype());
  {
    const T* src = gout.data<T>();
    T* dst = gp.data<T>();
    parallel_for(0, g.O * g.N, std::max<int64_t>(1, 16384 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
      for (int64_t on = b; on < e; ++on) {
        const int64_t o = on / g.N, n = on % g.N;
        std::copy_n(src + (n * g.O + o) * L, L, dst + on * L);
      }
    });
  }
  if (gb.defined()) {
    const T* src = gp.data<T>();
    T* db = gb.data<T>();
    parallel_for(0, g.O, 16, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        double s = 0;
        for (int64_t i = 0; i < NL; ++i) s += src[o * NL + i];
        db[o] = static_cast<T>(s);
      }
    });
  }
  if (!gx.defined() && !gw.defined()) return;
  Tensor cols;
  if (gw.defined()) {
    cols = empty({g.C * g.kh * g.kw, NL}, x.dtype());
    im2col(x.data<T>(), cols.data<T>(), g);
    for (int64_t k = 0; k < g.G; ++k)
      gemm<T>(false, true, Og, K, NL, T(1), gp.data<T>() + k * Og * NL, NL, cols.data<T>() + k * K * NL, NL, T(0),
              gw.data<T>() + k * Og * K, K);
  }
  if (gx.defined()) {
    Tensor dcols = cols.defined() ? cols : empty({g.C * g.kh * g.kw, NL}, x.dtype());  // reuse the buffer
    for (int64_t k = 0; k < g.G; ++k)
      gemm<T>(true, false, K, NL, Og, T(1), w.data<T>() + k * Og * K, K, gp.data<T>() + k * Og * NL, NL, T(0),
              dcols.data<T>() + k * K * NL, NL);
    col2im(dcols.data<T>(), gx.data<T>(), g);
  }
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, int64_t stride, int64_t padding,
              int64_t groups) {
  const ConvGeometry g = geometry(x_in, weight_in, bias_in, stride, padding, groups);
  const Tensor x = x_in.contiguous_raw(), w = weight_in.contiguous_raw();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous_raw() : Tensor();
  Tensor out = empty({g.N, g.O, g.Ho, g.Wo}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t)>(
        "conv2d_forward")(out, x, w, bias, stride, padding, groups);
  } else if (out.numel() > 0) {
    dispatch_float(x.dtype(), "conv2d", [&]<class T>() { conv2d_forward_cpu<T>(out, x, w, bias, g); });
  }
  if (needs_grad({x_in, weight_in, bias_in})) {
    const bool need_x = x_in.requires_grad(), need_w = weight_in.requires_grad();
    const bool need_b = bias_in.defined() && bias_in.requires_grad();
    const Tensor sx = x.detach(), sw = w.detach();
    record(out, "conv2d", {x_in, weight_in, bias_in},
           [=](const Tensor& g_in) -> std::vector<Tensor> {
             const Tensor gout = g_in.contiguous_raw();
             Tensor gx = need_x ? empty(sx.sizes(), sx.dtype(), sx.device()) : Tensor();
             Tensor gw = need_w ? empty(sw.sizes(), sw.dtype(), sw.device()) : Tensor();
             Tensor gb = need_b ? empty({g.O}, sx.dtype(), sx.device()) : Tensor();
             if (sx.device().is_cuda()) {
               cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, int64_t, int64_t, int64_t)>("conv2d_backward")(
                   gx, gw, gb, gout, sx, sw, stride, padding, groups);
             } else if (gout.numel() > 0) {
               dispatch_float(sx.dtype(), "conv2d", [&]<class T>() { conv2d_backward_cpu<T>(gx, gw, gb, gout, sx, sw, g); });
             } else {  // an empty batch: zero gradients
               for (const Tensor& t : {gx, gw, gb})
                 if (t.defined()) fill_(t, 0);
             }
             return {gx, gw, gb};
           });
  }
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"conv2d/pad1_bias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5, 6}, t), randn_input(g, {4, 3, 3, 3}, t), randn_input(g, {4}, t)}; },
     [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x[2], 1, 1); }},
    {"conv2d/stride2_groups2_rect_kernel", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {1, 4, 7, 5}, t), randn_input(g, {6, 2, 3, 2}, t), randn_input(g, {6}, t)}; },
     [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x[2], 2, 1, 2); }},
    {"conv2d/patch_embed_noncontig_nobias", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 3, 4, 6}, t), randn_input(g, {5, 3, 2, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], Tensor(), 2, 0); }},
    {"conv2d/depthwise_1x1_out", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 2, 3, 3}, t), randn_input(g, {2, 1, 3, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], Tensor(), 1, 0, 2); }},
});

}  // namespace dimix
