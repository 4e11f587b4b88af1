// block_mlp (see block_mlp.h): a Butterfly MLP level in one pass per group.
//
// Letters as in block_linear.cpp: x is viewed as [outer, n, inner] around
// `dim`; G groups of b positions `g` apart (group k starts at base(k) and
// its j-th position is base(k) + j * g); hidden width h per group.
//
// Both layouts come down to one "panel" problem: group k's b rows of width
// W, `xs` apart, each contiguous along W (the vector lanes):
//  - inner > 1 (mixing a middle dim, e.g. MLP-Mixer tokens): the panel of
//    (o, k) is x3[o, base(k) + j g, 0..inner) where it lies, W = inner;
//  - inner == 1 (mixing the last dim, e.g. channels): RT rows of x
//    are transposed into a tile [n, RT] (16 x 16 register blocks), so rows
//    become lanes, and the panel of k is the tile's rows base(k) + j g,
//    W = RT = tile_rows(n); the output tile is transposed back once per level, not
//    once per product as with two block_linear calls.
// Per panel, forward: H = W1_k X + b1_k, H = gelu(H), Y = W2_k H + b2_k, with
// H [h, W] in a per-thread scratch that stays in L1. Backward: H is
// recomputed with gelu' beside it, then
//   dW2_k += dY A^T, db2_k += sum dY, dA = W2_k^T dY, dH = dA * gelu'(H),
//   dW1_k += dH X^T, db1_k += sum dH, dX = W1_k^T dH.
// The weight and bias gradients are summed per chunk of rows (chunk sizes
// fixed by the shape, not the thread count) and the chunks added in order,
// so results are bitwise the same on any number of threads.
#include "ops/block_mlp.h"

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/gelu_kernel.h"
#include "ops/tile_gemm.h"

namespace dimix {
namespace {

using tile::dot_block;
using tile::small_gemm;

// Rows of x per transposed tile (inner == 1): 128 (eight f32 vectors) while
// the backward's three tiles [n, rows] fit in L2 together, fewer for long
// rows. Wide tiles matter: each weight-gradient dot product along a tile
// ends in one horizontal sum, whose cost 128 lanes amortise twice as well as 64
// (measured 7-14% off a T2 training step at batch 128).
int64_t tile_rows(int64_t n) { return n <= 512 ? 128 : n <= 1024 ? 64 : 32; }
// Elements of x per chunk of the weight-gradient sums.
constexpr int64_t kChunkElems = 32768;

struct Level {
  int64_t G, b, h, g;
  int64_t base(int64_t k) const { return (k / g) * b * g + k % g; }
};

template <class T>
struct Params {
  const T *w1, *b1, *w2, *b2;  // [G, h, b], [G, h] or null, [G, b, h], [G, b] or null
};

// This chunk's partial sums of the parameter gradients (null: not wanted).
template <class T>
struct GradSums {
  T *dw1 = nullptr, *db1 = nullptr, *dw2 = nullptr, *db2 = nullptr;
};

template <class T>
T row_sum(const T* v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// H [h, W] = W1_k X + b1_k (pre-activation).
template <class T>
void hidden_panel(const Level& L, const Params<T>& p, int64_t k, int64_t W, const T* X, int64_t xs, T* H) {
  small_gemm<T>(L.h, W, L.b, p.w1 + k * L.h * L.b, L.b, 1, X, xs, H, W, p.b1 ? p.b1 + k * L.h : nullptr);
}

template <class T>
void forward_panel(const Level& L, const Params<T>& p, int64_t k, int64_t W, const T* X, int64_t xs, T* Y,
                   int64_t ys, T* H) {
  hidden_panel(L, p, k, W, X, xs, H);
  gelu_erf_array<T>(H, H, nullptr, L.h * W);
  small_gemm<T>(L.b, W, L.h, p.w2 + k * L.b * L.h, L.h, 1, H, W, Y, ys, p.b2 ? p.b2 + k * L.b : nullptr);
}

// Scratch H, D, dA are [h, W] each; dX may be null (no input gradient).
template <class T>
void backward_panel(const Level& L, const Params<T>& p, int64_t k, int64_t W, const T* X, int64_t xs, const T* dY,
                    int64_t dys, T* dX, int64_t dxs, const GradSums<T>& sums, T* H, T* D, T* dA) {
  const int64_t hw = L.h * W;
  hidden_panel(L, p, k, W, X, xs, H);
  gelu_erf_array<T>(H, H, D, hw);
  if (sums.dw2) dot_block<T>(L.b, L.h, 1, W, dY, 0, dys, H, 0, W, sums.dw2 + k * L.b * L.h, L.h);
  if (sums.db2)
    for (int64_t jo = 0; jo < L.b; ++jo) sums.db2[k * L.b + jo] += row_sum(dY + jo * dys, W);
  // dA[hh, w] = sum_jo W2_k[jo, hh] dY[jo, w]: W2_k read transposed in place.
  small_gemm<T>(L.h, W, L.b, p.w2 + k * L.b * L.h, 1, L.h, dY, dys, dA, W);
  for (int64_t i = 0; i < hw; ++i) dA[i] *= D[i];
  if (sums.db1)
    for (int64_t hh = 0; hh < L.h; ++hh) sums.db1[k * L.h + hh] += row_sum(dA + hh * W, W);
  if (sums.dw1) dot_block<T>(L.h, L.b, 1, W, dA, 0, W, X, 0, xs, sums.dw1 + k * L.h * L.b, L.b);
  if (dX) small_gemm<T>(L.b, W, L.h, p.w1 + k * L.h * L.b, 1, L.b, dA, W, dX, dxs);
}

// Rows [r0, r0 + rows) of x3 (inner == 1, element stride sn) into xt
// [n, RT], lanes past `rows` zero.
template <class T>
void load_tile(const T* x, int64_t so, int64_t sn, int64_t n, int64_t r0, int64_t rows, int64_t RT, T* xt) {
  if (rows < RT) std::fill(xt, xt + n * RT, T(0));
  if (sn == 1) {
    tile::transpose(x + r0 * so, so, xt, RT, rows, n);
  } else {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < rows; ++r) xt[p * RT + r] = x[(r0 + r) * so + p * sn];
  }
}

// y3 [outer, n, inner] (contiguous) = block_mlp(x3).
template <class T>
void forward_cpu(const Tensor& y3, const Tensor& x3, const Level& L, const Params<T>& p) {
  const int64_t outer = x3.sizes()[0], n = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  T* y = y3.data<T>();
  if (inner > 1) {
    const int64_t pairs = outer * L.G;
    const int64_t per_task = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, 2 * L.b * L.h * inner));
    tile::for_each_task(
        (pairs + per_task - 1) / per_task, [&] { return std::vector<T>(L.h * inner); },
        [&](std::vector<T>& H, int64_t task) {
          for (int64_t t = task * per_task; t < std::min(pairs, (task + 1) * per_task); ++t) {
            const int64_t o = t / L.G, k = t % L.G;
            forward_panel(L, p, k, inner, x + o * so + L.base(k) * sn, L.g * sn, y + (o * n + L.base(k)) * inner,
                          L.g * inner, H.data());
          }
        });
    return;
  }
  struct Scratch {
    std::vector<T> xt, yt, H;
  };
  const int64_t RT = tile_rows(n);
  tile::for_each_task(
      (outer + RT - 1) / RT,
      [&] { return Scratch{std::vector<T>(n * RT), std::vector<T>(n * RT), std::vector<T>(L.h * RT)}; },
      [&](Scratch& s, int64_t task) {
        const int64_t r0 = task * RT, rows = std::min(RT, outer - r0);
        load_tile(x, so, sn, n, r0, rows, RT, s.xt.data());
        for (int64_t k = 0; k < L.G; ++k)
          forward_panel(L, p, k, RT, s.xt.data() + L.base(k) * RT, L.g * RT, s.yt.data() + L.base(k) * RT,
                        L.g * RT, s.H.data());
        tile::transpose(s.yt.data(), RT, y + r0 * n, n, n, rows);
      });
}

// dx3 (contiguous, or undefined) and the parameter gradients (null where not
// wanted) from dy3 [outer, n, inner] (contiguous) and the saved x3.
template <class T>
void backward_cpu(const Tensor& dx3, const Tensor& dy3, const Tensor& x3, const Level& L, const Params<T>& p,
                  T* dw1, T* db1, T* dw2, T* db2) {
  const int64_t outer = x3.sizes()[0], n = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  const T* dy = dy3.data<T>();
  T* dx = dx3.defined() ? dx3.data<T>() : nullptr;
  const int64_t RT = tile_rows(n);
  const bool tiled = inner == 1;
  const int64_t W = tiled ? RT : inner;
  // Units: rows of x3 (inner > 1) or tiles of RT rows (inner == 1).
  const int64_t units = tiled ? (outer + RT - 1) / RT : outer;
  const int64_t per_chunk = std::max<int64_t>(1, kChunkElems / (n * W));
  const int64_t chunks = (units + per_chunk - 1) / per_chunk;
  // Layout of one chunk's partial sums: dw1 | db1 | dw2 | db2.
  const int64_t n_w = L.G * L.h * L.b, sum_size = 2 * n_w + L.G * (L.h + L.b);
  const bool want_sums = dw1 || db1 || dw2 || db2;
  std::vector<T> partial(want_sums ? chunks * sum_size : 0, T(0));
  struct Scratch {
    std::vector<T> H, D, dA, xt, dyt, dxt;
  };
  tile::for_each_task(
      chunks,
      [&] {
        const int64_t tile_size = tiled ? n * RT : 0;
        return Scratch{std::vector<T>(L.h * W), std::vector<T>(L.h * W), std::vector<T>(L.h * W),
                       std::vector<T>(tile_size), std::vector<T>(tile_size), std::vector<T>(tile_size)};
      },
      [&](Scratch& s, int64_t c) {
        GradSums<T> sums;
        if (want_sums) {
          T* base = partial.data() + c * sum_size;
          if (dw1) sums.dw1 = base;
          if (db1) sums.db1 = base + n_w;
          if (dw2) sums.dw2 = base + n_w + L.G * L.h;
          if (db2) sums.db2 = base + 2 * n_w + L.G * L.h;
        }
        for (int64_t u = c * per_chunk; u < std::min(units, (c + 1) * per_chunk); ++u) {
          if (!tiled) {
            for (int64_t k = 0; k < L.G; ++k) {
              const int64_t at = (u * n + L.base(k)) * inner;
              backward_panel(L, p, k, W, x + u * so + L.base(k) * sn, L.g * sn, dy + at, L.g * inner,
                             dx ? dx + at : nullptr, L.g * inner, sums, s.H.data(), s.D.data(), s.dA.data());
            }
            continue;
          }
          const int64_t r0 = u * RT, rows = std::min(RT, outer - r0);
          load_tile(x, so, sn, n, r0, rows, RT, s.xt.data());
          load_tile(dy, n, int64_t(1), n, r0, rows, RT, s.dyt.data());
          for (int64_t k = 0; k < L.G; ++k) {
            const int64_t at = L.base(k) * RT;
            backward_panel(L, p, k, W, s.xt.data() + at, L.g * RT, s.dyt.data() + at, L.g * RT,
                           dx ? s.dxt.data() + at : nullptr, L.g * RT, sums, s.H.data(), s.D.data(), s.dA.data());
          }
          if (dx) tile::transpose(s.dxt.data(), RT, dx + r0 * n, n, n, rows);
        }
      });
  if (!want_sums) return;
  auto reduce = [&](T* out, int64_t offset, int64_t size) {
    if (!out) return;
    std::fill(out, out + size, T(0));
    for (int64_t c = 0; c < chunks; ++c) {
      const T* src = partial.data() + c * sum_size + offset;
      for (int64_t i = 0; i < size; ++i) out[i] += src[i];
    }
  };
  reduce(dw1, 0, n_w);
  reduce(db1, n_w, L.G * L.h);
  reduce(dw2, n_w + L.G * L.h, n_w);
  reduce(db2, 2 * n_w + L.G * L.h, L.G * L.b);
}

}  // namespace

Tensor block_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, int64_t dim,
                 int64_t stride) {
  const char* op = "block_mlp";
  check_floating(op, x);
  DIMIX_CHECK(w1.defined() && w1.dim() == 3, op, ": expected w1 [G, h, b], got ",
              w1.defined() ? w1.shape_str() : std::string("undefined"));
  const int64_t G = w1.sizes()[0], h = w1.sizes()[1], b = w1.sizes()[2];
  DIMIX_CHECK(G >= 1 && h >= 1 && b >= 1, op, ": w1 ", w1.shape_str(), " has an empty dim");
  DIMIX_CHECK(w2.defined() && w2.dim() == 3 && w2.sizes()[0] == G && w2.sizes()[1] == b && w2.sizes()[2] == h, op,
              ": expected w2 [G, b, h] = [", G, ", ", b, ", ", h, "] for w1 ", w1.shape_str(), ", got ",
              w2.defined() ? w2.shape_str() : std::string("undefined"));
  for (const Tensor* t : {&w1, &w2}) {
    check_same_device(op, x, *t);
    check_same_dtype(op, x, *t);
  }
  auto check_bias = [&](const Tensor& bias, const char* name, int64_t width) {
    if (!bias.defined()) return;
    check_same_device(op, x, bias);
    check_same_dtype(op, x, bias);
    DIMIX_CHECK(bias.dim() == 2 && bias.sizes()[0] == G && bias.sizes()[1] == width, op, ": expected ", name, " [",
                G, ", ", width, "], got ", bias.shape_str());
  };
  check_bias(b1, "b1", h);
  check_bias(b2, "b2", b);
  const int64_t nd = x.dim();
  DIMIX_CHECK(nd >= 1 && dim >= -nd && dim < nd, op, ": dim ", dim, " out of range for x ", x.shape_str());
  if (dim < 0) dim += nd;
  DIMIX_CHECK(x.sizes()[dim] == G * b, op, ": x ", x.shape_str(), " has ", x.sizes()[dim], " positions along dim ",
              dim, ", expected G * b = ", G, " * ", b, " = ", G * b, " for w1 ", w1.shape_str());
  DIMIX_CHECK(stride >= 1 && G % stride == 0, op, ": the number of groups G = ", G, " must be divisible by stride ",
              stride);

  if (x.device().is_cuda())  // the composite, on the GPU kernels of block_linear and gelu
    return block_linear(gelu(block_linear(x, w1, b1, dim, stride, 1)), w2, b2, dim, 1, stride);

  const Level L{G, b, h, stride};
  const Tensor x3 = view_around_dim(x, dim);
  const Tensor w1c = w1.contiguous_raw(), w2c = w2.contiguous_raw();
  const Tensor b1c = b1.defined() ? b1.contiguous_raw() : Tensor(), b2c = b2.defined() ? b2.contiguous_raw() : Tensor();
  const Shape shape3 = x3.sizes();
  const Tensor y3 = empty(shape3, x.dtype());
  dispatch_float(x.dtype(), op, [&]<class T>() {
    const Params<T> p{w1c.data<T>(), b1c.defined() ? b1c.data<T>() : nullptr, w2c.data<T>(),
                      b2c.defined() ? b2c.data<T>() : nullptr};
    forward_cpu<T>(y3, x3, L, p);
  });
  Tensor y = y3.as_strided(x.sizes(), contiguous_strides(x.sizes()), 0);

  if (needs_grad({x, w1, b1, w2, b2})) {
    const bool gx = x.requires_grad(), gw1 = w1.requires_grad(), gw2 = w2.requires_grad();
    const bool gb1 = b1.defined() && b1.requires_grad(), gb2 = b2.defined() && b2.requires_grad();
    const Tensor sx = x3.detach(), sw1 = w1c.detach(), sw2 = w2c.detach();
    const Tensor sb1 = b1c.defined() ? b1c.detach() : Tensor(), sb2 = b2c.defined() ? b2c.detach() : Tensor();
    record(y, op, {x, w1, b1, w2, b2}, [=, in_shape = x.sizes()](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor gc = grad.contiguous_raw();
      const Tensor dy3 = gc.as_strided(shape3, contiguous_strides(shape3), gc.offset());
      const DType t = sx.dtype();
      const Tensor dx3 = gx ? empty(shape3, t) : Tensor();
      const Tensor dw1 = gw1 ? empty(sw1.sizes(), t) : Tensor(), dw2 = gw2 ? empty(sw2.sizes(), t) : Tensor();
      const Tensor db1 = gb1 ? empty(sb1.sizes(), t) : Tensor(), db2 = gb2 ? empty(sb2.sizes(), t) : Tensor();
      dispatch_float(t, op, [&]<class T>() {
        const Params<T> p{sw1.data<T>(), sb1.defined() ? sb1.data<T>() : nullptr, sw2.data<T>(),
                          sb2.defined() ? sb2.data<T>() : nullptr};
        auto ptr = [](const Tensor& g) { return g.defined() ? g.data<T>() : nullptr; };
        backward_cpu<T>(dx3, dy3, sx, L, p, ptr(dw1), ptr(db1), ptr(dw2), ptr(db2));
      });
      const Tensor dx = gx ? dx3.as_strided(in_shape, contiguous_strides(in_shape), 0) : Tensor();
      return {dx, dw1, db1, dw2, db2};
    });
  }
  return y;
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // Last dim (the transposed-tile path), b 3 -> h 5, stride 2 (G = 4).
    {"block_mlp/last_dim_stride2", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 12}, t), randn_input(g, {4, 5, 3}, t), randn_input(g, {4, 5}, t),
                          randn_input(g, {4, 3, 5}, t), randn_input(g, {4, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], x[2], x[3], x[4], -1, 2); }},
    // More rows than one tile (130 > 128) and a non-contiguous x, stride 1.
    {"block_mlp/two_tiles_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {130, 4}, t), randn_input(g, {2, 3, 2}, t), randn_input(g, {2, 3}, t),
                          randn_input(g, {2, 2, 3}, t), randn_input(g, {2, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], x[2], x[3], x[4], 1, 1); }},
    // A middle dim (inner 3), b 2 -> h 3, stride 4 (G = 4), no biases.
    {"block_mlp/middle_dim_nobias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 3}, t), randn_input(g, {4, 3, 2}, t), randn_input(g, {4, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], Tensor(), x[2], Tensor(), 1, 4); }},
    // A middle dim of a non-contiguous x, stride 2.
    {"block_mlp/middle_dim_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 6, 2, 2}, t), randn_input(g, {2, 4, 3}, t), randn_input(g, {2, 4}, t),
                          randn_input(g, {2, 3, 4}, t), randn_input(g, {2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], x[2], x[3], x[4], 1, 2); }},
});

}  // namespace dimix
