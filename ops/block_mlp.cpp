// block_mlp (see block_mlp.h): Butterfly MLP levels in one pass per slab.
//
// Letters as in block_linear.cpp: x is viewed as [outer, n, inner] around
// `dim`; a level has G groups of b positions `g` apart (group k starts at
// base(k) and its j-th position is base(k) + j * g) and hidden width h.
//
// The unit of work is a slab (ops/slab.h): a row of `outer` in place for a
// middle dim (W = inner), RT = tile_rows(n) rows transposed for the last dim
// (W = RT; one transpose in and one out for all levels).
// A level on a slab is one "panel" per group: its b positions, g * ps apart.
// Forward per panel: H = W1_k X + b1_k, H = gelu(H), Y = W2_k H + b2_k, with
// H [h, W] in a per-thread scratch in L1; levels ping-pong between two
// scratch slabs (the first reads x, the last writes y). Backward per slab:
// the inputs of levels 1.. are recomputed into scratch, keeping those
// levels' hidden slabs and gelu' (the last level's H is recomputed per
// panel), then from the last level down, per panel,
//   dW2_k += dY A^T, db2_k += sum dY, dA = W2_k^T dY, dH = dA * gelu'(H),
//   dW1_k += dH X^T, db1_k += sum dH, dX = W1_k^T dH.
// Parameter gradients are summed per chunk of slabs (slab.h): bitwise the
// same on any number of threads. This file is the levels' slab::Body; the
// driver in slab.h runs it over x, with the optional norm and residual
// around it (PreNormResidual).
#include "ops/block_mlp.h"

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/gelu_kernel.h"
#include "ops/slab.h"
#include "ops/slab_op.h"
#include "ops/tile_gemm.h"

namespace dimix {
namespace {

using tile::dot_block;
using tile::small_gemm;
using slab::row_sum;

// Rows of x per transposed tile (inner == 1): 128 (eight f32 vectors) while
// a few tiles [n, rows] fit in L2 together, fewer for long rows. Wide tiles
// matter: each weight-gradient dot product along a tile ends in one
// horizontal sum, whose cost 128 lanes amortise twice as well as 64
// (measured 7-14% off a T2 training step at batch 128).
int64_t tile_rows(int64_t n) { return n <= 512 ? 128 : n <= 1024 ? 64 : 32; }

// One level: its shape and (raw, contiguous) parameters.
template <class T>
struct Level {
  int64_t G, b, h, g;
  const T *w1, *b1, *w2, *b2;  // [G, h, b], [G, h] or null, [G, b, h], [G, b] or null
  int64_t base(int64_t k) const { return (k / g) * b * g + k % g; }
};

// One level's share of a chunk's partial parameter-gradient sums (null: not wanted).
template <class T>
struct GradSums {
  T *dw1 = nullptr, *db1 = nullptr, *dw2 = nullptr, *db2 = nullptr;
};

// H [h, W] = W1_k X + b1_k (pre-activation).
template <class T>
void hidden_panel(const Level<T>& L, int64_t k, int64_t W, const T* X, int64_t xs, T* H) {
  small_gemm<T>(L.h, W, L.b, L.w1 + k * L.h * L.b, L.b, 1, X, xs, H, W, L.b1 ? L.b1 + k * L.h : nullptr);
}

// A level over a slab: src (positions sps apart) -> dst (dps apart). H is
// one [h, W] block reused by every group; or, with D, the level's whole
// hidden slab [G h, W], group k's block at k h W, kept with gelu' in D for
// the backward.
template <class T>
void level_forward(const Level<T>& L, int64_t W, const T* src, int64_t sps, T* dst, int64_t dps, T* H,
                   T* D = nullptr) {
  const int64_t hw = L.h * W;
  for (int64_t k = 0; k < L.G; ++k) {
    T* Hk = D ? H + k * hw : H;
    hidden_panel(L, k, W, src + L.base(k) * sps, L.g * sps, Hk);
    gelu_erf_array<T>(Hk, Hk, D ? D + k * hw : nullptr, hw);
    small_gemm<T>(L.b, W, L.h, L.w2 + k * L.b * L.h, L.h, 1, Hk, W, dst + L.base(k) * dps, L.g * dps,
                  L.b2 ? L.b2 + k * L.b : nullptr);
  }
}

// A level's backward over a slab: X its input, dY the gradient of its
// output, dX (may be null) the gradient of its input. kept_H, kept_D: the
// level's hidden slab and gelu' from level_forward (both null: recomputed
// per group into the scratch H, D [h, W]); dA [h, W] scratch.
template <class T>
void level_backward(const Level<T>& L, int64_t W, const T* X, int64_t xps, const T* dY, int64_t dyps, T* dX,
                    int64_t dxps, const GradSums<T>& sums, const T* kept_H, const T* kept_D, T* H, T* D, T* dA) {
  const int64_t hw = L.h * W;
  for (int64_t k = 0; k < L.G; ++k) {
    const T* Xk = X + L.base(k) * xps;
    const T* dYk = dY + L.base(k) * dyps;
    const int64_t xs = L.g * xps, dys = L.g * dyps;
    const T* Hk = H;
    const T* Dk = D;
    if (kept_H) {
      Hk = kept_H + k * hw;
      Dk = kept_D + k * hw;
    } else {
      hidden_panel(L, k, W, Xk, xs, H);
      gelu_erf_array<T>(H, H, D, hw);
    }
    if (sums.dw2) dot_block<T>(L.b, L.h, 1, W, dYk, 0, dys, Hk, 0, W, sums.dw2 + k * L.b * L.h, L.h);
    if (sums.db2)
      for (int64_t jo = 0; jo < L.b; ++jo) sums.db2[k * L.b + jo] += row_sum(dYk + jo * dys, W);
    // dA[hh, w] = sum_jo W2_k[jo, hh] dY[jo, w]: W2_k read transposed in place.
    small_gemm<T>(L.h, W, L.b, L.w2 + k * L.b * L.h, 1, L.h, dYk, dys, dA, W);
    for (int64_t i = 0; i < hw; ++i) dA[i] *= Dk[i];
    if (sums.db1)
      for (int64_t hh = 0; hh < L.h; ++hh) sums.db1[k * L.h + hh] += row_sum(dA + hh * W, W);
    if (sums.dw1) dot_block<T>(L.h, L.b, 1, W, dA, 0, W, Xk, 0, xs, sums.dw1 + k * L.h * L.b, L.b);
    if (dX) small_gemm<T>(L.b, W, L.h, L.w1 + k * L.h * L.b, 1, L.b, dA, W, dX + L.base(k) * dxps, L.g * dxps);
  }
}

// The levels as a slab::Body (slab.h): the driver feeds it slabs, tiles
// and gradient chunks.
template <class T>
struct MlpBody {
  std::vector<Level<T>> levels;
  std::vector<bool> want;  // 4 per level: dw1, db1, dw2, db2 wanted
  int64_t n_in, n_out, hidden = 1;
  std::vector<int64_t> offset;  // per level, where its dw1 | db1 | dw2 | db2 start in the sums

  MlpBody(std::vector<Level<T>> lv, std::vector<bool> w, int64_t n)
      : levels(std::move(lv)), want(std::move(w)), n_in(n), n_out(n), offset(levels.size() + 1, 0) {
    for (size_t l = 0; l < levels.size(); ++l) {
      const Level<T>& L = levels[l];
      hidden = std::max(hidden, L.h);
      offset[l + 1] = offset[l] + 2 * L.G * L.h * L.b + L.G * (L.h + L.b);
    }
  }
  int64_t sums() const { return offset.back(); }
  int64_t forward_scratch(int64_t W) const { return (2 * n_in + hidden) * W; }
  // Two slabs (ping-pong) and a hidden block.
  void forward(int64_t W, const T* src, int64_t sps, T* dst, T* scratch) const {
    T* a = scratch;
    T* b = scratch + n_in * W;
    T* H = scratch + 2 * n_in * W;
    for (size_t l = 0; l < levels.size(); ++l) {
      T* out = l + 1 == levels.size() ? dst : (src == a ? b : a);
      level_forward(levels[l], W, src, sps, out, W, H);
      src = out;
      sps = W;
    }
  }
  // H, D, dA [h, W]; the inputs of levels 1.. and two gradient slabs
  // [n, W]; the hidden slabs and gelu' of levels 0 .. nl-2 [G h, W] each,
  // kept from the recompute (the last level's are recomputed per group).
  int64_t backward_scratch(int64_t W) const {
    int64_t kept = 0;
    for (size_t l = 0; l + 1 < levels.size(); ++l) kept += 2 * levels[l].G * levels[l].h * W;
    return 3 * hidden * W + (static_cast<int64_t>(levels.size()) + 1) * n_in * W + kept;
  }
  void backward(int64_t W, const T* x, int64_t xps, const T* dy, T* dx, T* sums, T* scratch) const {
    const int64_t nl = static_cast<int64_t>(levels.size()), hw = hidden * W, slab = n_in * W;
    T* H = scratch;
    T* D = H + hw;
    T* dA = D + hw;
    T* ins = dA + hw;  // levels 1 .. nl-1
    T* gbuf[2] = {ins + (nl - 1) * slab, ins + nl * slab};
    // Level inputs: in[0] is x's slab, in[l + 1] = level l (in[l]), with
    // level l's hidden slab and gelu' kept in kH[l], kD[l].
    std::vector<const T*> in(nl), kH(nl, nullptr), kD(nl, nullptr);
    std::vector<int64_t> in_ps(nl, W);
    in[0] = x;
    in_ps[0] = xps;
    T* kept = ins + (nl + 1) * slab;
    for (int64_t l = 0; l + 1 < nl; ++l) {
      const int64_t size = levels[l].G * levels[l].h * W;
      T* next = ins + l * slab;
      level_forward(levels[l], W, in[l], in_ps[l], next, W, kept, kept + size);
      kH[l] = kept;
      kD[l] = kept + size;
      kept += 2 * size;
      in[l + 1] = next;
    }
    const T* g = dy;  // from the last level down
    for (int64_t l = nl - 1; l >= 0; --l) {
      const Level<T>& L = levels[l];
      T* base = sums + offset[l];
      const int64_t n_w = L.G * L.h * L.b;
      const GradSums<T> gs{want[4 * l] ? base : nullptr, want[4 * l + 1] ? base + n_w : nullptr,
                           want[4 * l + 2] ? base + n_w + L.G * L.h : nullptr,
                           want[4 * l + 3] ? base + 2 * n_w + L.G * L.h : nullptr};
      T* dst = l == 0 ? dx : gbuf[l % 2];
      level_backward(L, W, in[l], in_ps[l], g, W, dst, W, gs, kH[l], kD[l], H, D, dA);
      g = dst;
    }
  }
};

// Checks one level against x (n positions along dim).
void check_level(const Tensor& x, const BlockMlpLevel& lv, size_t index, int64_t dim) {
  const int64_t n = x.sizes()[dim];
  const char* op = "block_mlp";
  const std::string at = " (level " + std::to_string(index) + ")";
  DIMIX_CHECK(lv.w1.defined() && lv.w1.dim() == 3, op, ": expected w1 [G, h, b]", at, ", got ",
              lv.w1.defined() ? lv.w1.shape_str() : std::string("undefined"));
  const int64_t G = lv.w1.sizes()[0], h = lv.w1.sizes()[1], b = lv.w1.sizes()[2];
  DIMIX_CHECK(G >= 1 && h >= 1 && b >= 1, op, ": w1 ", lv.w1.shape_str(), at, " has an empty dim");
  DIMIX_CHECK(lv.w2.defined() && lv.w2.dim() == 3 && lv.w2.sizes()[0] == G && lv.w2.sizes()[1] == b &&
                  lv.w2.sizes()[2] == h,
              op, ": expected w2 [G, b, h] = [", G, ", ", b, ", ", h, "] for w1 ", lv.w1.shape_str(), at, ", got ",
              lv.w2.defined() ? lv.w2.shape_str() : std::string("undefined"));
  for (const Tensor* t : {&lv.w1, &lv.w2}) {
    check_same_device(op, x, *t);
    check_same_dtype(op, x, *t);
  }
  auto check_bias = [&](const Tensor& bias, const char* name, int64_t width) {
    if (!bias.defined()) return;
    check_same_device(op, x, bias);
    check_same_dtype(op, x, bias);
    DIMIX_CHECK(bias.dim() == 2 && bias.sizes()[0] == G && bias.sizes()[1] == width, op, ": expected ", name, " [",
                G, ", ", width, "], got ", bias.shape_str(), at);
  };
  check_bias(lv.b1, "b1", h);
  check_bias(lv.b2, "b2", b);
  DIMIX_CHECK(n == G * b, op, ": x ", x.shape_str(), " has ", n, " positions along dim ", dim,
              ", expected G * b = ", G, " * ", b, " = ", G * b, " for w1 ", lv.w1.shape_str(), at);
  DIMIX_CHECK(lv.stride >= 1 && G % lv.stride == 0, op, ": the number of groups G = ", G,
              " must be divisible by stride ", lv.stride, at);
}

// The levels' raw form: strides[l] and the contiguous params, w1 | b1 | w2 | b2
// per level.
template <class T>
std::vector<Level<T>> raw_levels(const std::vector<int64_t>& strides, const std::vector<Tensor>& p) {
  auto ptr = [](const Tensor& t) -> const T* { return t.defined() ? t.data<T>() : nullptr; };
  std::vector<Level<T>> out;
  for (size_t l = 0; l < strides.size(); ++l) {
    const Tensor* q = &p[4 * l];
    out.push_back({q[0].sizes()[0], q[0].sizes()[2], q[0].sizes()[1], strides[l], ptr(q[0]), ptr(q[1]), ptr(q[2]),
                   ptr(q[3])});
  }
  return out;
}

}  // namespace

Tensor block_mlp(const Tensor& x, const std::vector<BlockMlpLevel>& levels, int64_t dim,
                 const PreNormResidual& around) {
  const char* op = "block_mlp";
  DIMIX_CHECK(!levels.empty(), op, ": expected at least one level, got none");
  dim = slab::mixed_dim(op, x, dim);
  for (size_t i = 0; i < levels.size(); ++i) check_level(x, levels[i], i, dim);
  check_prenorm_residual(op, x, around, x.sizes()[dim], dim);

  if (x.device().is_cuda())  // the composite, on the GPU kernels of layer_norm, block_linear and gelu
    return prenorm_residual_composite(x, around, [&](const Tensor& z) {
      Tensor y = z;
      for (const BlockMlpLevel& l : levels)
        y = block_linear(gelu(block_linear(y, l.w1, l.b1, dim, l.stride, 1)), l.w2, l.b2, dim, 1, l.stride);
      return y;
    });

  // The gradient sums hold, per level, dw1 | db1 | dw2 | db2.
  std::vector<Tensor> params;
  std::vector<Shape> shapes;
  std::vector<int64_t> strides;
  for (const BlockMlpLevel& l : levels) {
    const int64_t G = l.w1.sizes()[0], h = l.w1.sizes()[1], b = l.w1.sizes()[2];
    params.insert(params.end(), {l.w1, l.b1, l.w2, l.b2});
    shapes.insert(shapes.end(), {{G, h, b}, {G, h}, {G, b, h}, {G, b}});
    strides.push_back(l.stride);
  }
  const int64_t n = x.sizes()[dim];
  return slab::apply(op, x, dim, n, tile_rows(n), params, shapes, around,
                     [strides, n]<class T>(const std::vector<Tensor>& p, const std::vector<bool>& want) {
                       return MlpBody<T>(raw_levels<T>(strides, p), want, n);
                     });
}

Tensor block_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, int64_t dim,
                 int64_t stride) {
  return block_mlp(x, {BlockMlpLevel{w1, b1, w2, b2, stride}}, dim, {});
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
    // Two levels (n = 9, b = 3, strides 1 and 3, hidden 4 and 2) on the last dim.
    {"block_mlp/two_levels_last_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 9}, t), randn_input(g, {3, 4, 3}, t), randn_input(g, {3, 4}, t),
                          randn_input(g, {3, 3, 4}, t), randn_input(g, {3, 3}, t), randn_input(g, {3, 2, 3}, t),
                          randn_input(g, {3, 2}, t), randn_input(g, {3, 3, 2}, t), randn_input(g, {3, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_mlp(x[0], {{x[1], x[2], x[3], x[4], 1}, {x[5], x[6], x[7], x[8], 3}}, -1); }},
    // Three levels on a middle dim (n = 8, b = 2, strides 1, 2, 4), no biases on the middle one.
    {"block_mlp/three_levels_middle_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 3}, t), randn_input(g, {4, 3, 2}, t), randn_input(g, {4, 2, 3}, t),
                          randn_input(g, {4, 3, 2}, t), randn_input(g, {4, 2, 3}, t), randn_input(g, {4, 3, 2}, t),
                          randn_input(g, {4, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_mlp(x[0], {{x[1], Tensor(), x[2], Tensor(), 1}, {x[3], Tensor(), x[4], Tensor(), 2},
                               {x[5], Tensor(), x[6], Tensor(), 4}}, 1); }},
    // A pre-norm residual branch on a middle dim: x + block_mlp(layer_norm(x)),
    // the norm over runs of C = 2 of the slab's inner 4 values.
    {"block_mlp/prenorm_residual_middle_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 4, 2, 2}, t), randn_input(g, {2, 3, 2}, t), randn_input(g, {2, 3}, t),
                          randn_input(g, {2, 2, 3}, t), randn_input(g, {2, 2}, t), randn_input(g, {2}, t),
                          randn_input(g, {2}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_mlp(x[0], {{x[1], x[2], x[3], x[4], 2}}, 1, {true, x[5], x[6], 1e-5, true}); }},
    // The same on the last dim (the norm across a tile's positions).
    {"block_mlp/prenorm_residual_last_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 6}, t), randn_input(g, {3, 4, 2}, t), randn_input(g, {3, 4}, t),
                          randn_input(g, {3, 2, 4}, t), randn_input(g, {3, 2}, t), randn_input(g, {6}, t),
                          randn_input(g, {6}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_mlp(x[0], {{x[1], x[2], x[3], x[4], 1}}, -1, {true, x[5], x[6], 1e-5, true}); }},
    // A middle dim of a non-contiguous x, stride 2.
    {"block_mlp/middle_dim_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 6, 2, 2}, t), randn_input(g, {2, 4, 3}, t), randn_input(g, {2, 4}, t),
                          randn_input(g, {2, 3, 4}, t), randn_input(g, {2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], x[2], x[3], x[4], 1, 2); }},
});

}  // namespace dimix
