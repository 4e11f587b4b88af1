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
// the inputs of levels 1.. are recomputed into scratch, then from the last
// level down, per panel, H is recomputed with gelu' beside it and
//   dW2_k += dY A^T, db2_k += sum dY, dA = W2_k^T dY, dH = dA * gelu'(H),
//   dW1_k += dH X^T, db1_k += sum dH, dX = W1_k^T dH.
// Parameter gradients are summed per chunk of slabs (slab.h): bitwise the
// same on any number of threads.
#include "ops/block_mlp.h"

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/gelu_kernel.h"
#include "ops/slab.h"
#include "ops/tile_gemm.h"

namespace dimix {
namespace {

using tile::dot_block;
using tile::small_gemm;
using slab::load_tile;
using slab::row_sum;
using slab::store_tile;

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

// A level over a slab: src (positions sps apart) -> dst (dps apart).
template <class T>
void level_forward(const Level<T>& L, int64_t W, const T* src, int64_t sps, T* dst, int64_t dps, T* H) {
  for (int64_t k = 0; k < L.G; ++k) {
    hidden_panel(L, k, W, src + L.base(k) * sps, L.g * sps, H);
    gelu_erf_array<T>(H, H, nullptr, L.h * W);
    small_gemm<T>(L.b, W, L.h, L.w2 + k * L.b * L.h, L.h, 1, H, W, dst + L.base(k) * dps, L.g * dps,
                  L.b2 ? L.b2 + k * L.b : nullptr);
  }
}

// A level's backward over a slab: X its input, dY the gradient of its
// output, dX (may be null) the gradient of its input. Scratch H, D, dA are
// [h, W] each.
template <class T>
void level_backward(const Level<T>& L, int64_t W, const T* X, int64_t xps, const T* dY, int64_t dyps, T* dX,
                    int64_t dxps, const GradSums<T>& sums, T* H, T* D, T* dA) {
  const int64_t hw = L.h * W;
  for (int64_t k = 0; k < L.G; ++k) {
    const T* Xk = X + L.base(k) * xps;
    const T* dYk = dY + L.base(k) * dyps;
    const int64_t xs = L.g * xps, dys = L.g * dyps;
    hidden_panel(L, k, W, Xk, xs, H);
    gelu_erf_array<T>(H, H, D, hw);
    if (sums.dw2) dot_block<T>(L.b, L.h, 1, W, dYk, 0, dys, H, 0, W, sums.dw2 + k * L.b * L.h, L.h);
    if (sums.db2)
      for (int64_t jo = 0; jo < L.b; ++jo) sums.db2[k * L.b + jo] += row_sum(dYk + jo * dys, W);
    // dA[hh, w] = sum_jo W2_k[jo, hh] dY[jo, w]: W2_k read transposed in place.
    small_gemm<T>(L.h, W, L.b, L.w2 + k * L.b * L.h, 1, L.h, dYk, dys, dA, W);
    for (int64_t i = 0; i < hw; ++i) dA[i] *= D[i];
    if (sums.db1)
      for (int64_t hh = 0; hh < L.h; ++hh) sums.db1[k * L.h + hh] += row_sum(dA + hh * W, W);
    if (sums.dw1) dot_block<T>(L.h, L.b, 1, W, dA, 0, W, Xk, 0, xs, sums.dw1 + k * L.h * L.b, L.b);
    if (dX) small_gemm<T>(L.b, W, L.h, L.w1 + k * L.h * L.b, 1, L.b, dA, W, dX + L.base(k) * dxps, L.g * dxps);
  }
}

template <class T>
int64_t max_hidden(const std::vector<Level<T>>& levels) {
  int64_t h = 1;
  for (const Level<T>& L : levels) h = std::max(h, L.h);
  return h;
}

// y3 [outer, n, inner] (contiguous) = the levels applied to x3.
template <class T>
void forward_cpu(const Tensor& y3, const Tensor& x3, const std::vector<Level<T>>& levels) {
  const int64_t outer = x3.sizes()[0], n = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  T* y = y3.data<T>();
  const int64_t nl = static_cast<int64_t>(levels.size());
  const bool tiled = inner == 1;
  const int64_t W = tiled ? tile_rows(n) : inner;
  struct Scratch {
    std::vector<T> a, b, H;  // two slabs [n, W] (ping-pong) and a hidden block
  };
  const int64_t slabs = tiled || nl > 1 ? n * W : 0;
  const int64_t units = tiled ? (outer + W - 1) / W : outer;
  tile::for_each_task(
      units,
      [&] { return Scratch{std::vector<T>(slabs), std::vector<T>(slabs), std::vector<T>(max_hidden(levels) * W)}; },
      [&](Scratch& s, int64_t u) {
        // The slab the next level reads, and where the last level writes.
        const T* src = tiled ? s.a.data() : x + u * so;
        int64_t sps = tiled ? W : sn;
        if (tiled) load_tile(x, so, sn, n, u * W, std::min(W, outer - u * W), W, s.a.data());
        T* out = tiled ? nullptr : y + u * n * inner;
        for (int64_t l = 0; l < nl; ++l) {
          const bool last = l == nl - 1;
          T* dst = last && !tiled ? out : (src == s.a.data() ? s.b.data() : s.a.data());
          level_forward(levels[l], W, src, sps, dst, W, s.H.data());
          src = dst;
          sps = W;
        }
        if (tiled) store_tile(src, n, u * W, std::min(W, outer - u * W), W, y);
      });
}

// dx3 (contiguous, or undefined) and the parameter gradients (sums[l]: each
// level's output pointers, null where not wanted) from dy3 [outer, n, inner]
// (contiguous) and the saved x3.
template <class T>
void backward_cpu(const Tensor& dx3, const Tensor& dy3, const Tensor& x3, const std::vector<Level<T>>& levels,
                  const std::vector<GradSums<T>>& out) {
  const int64_t outer = x3.sizes()[0], n = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  const T* dy = dy3.data<T>();
  T* dx = dx3.defined() ? dx3.data<T>() : nullptr;
  const int64_t nl = static_cast<int64_t>(levels.size());
  const bool tiled = inner == 1;
  const int64_t W = tiled ? tile_rows(n) : inner;
  const int64_t units = tiled ? (outer + W - 1) / W : outer;
  const int64_t per_chunk = slab::units_per_chunk(n, W);
  const int64_t chunks = (units + per_chunk - 1) / per_chunk;
  // One chunk's partial sums: per level dw1 | db1 | dw2 | db2.
  std::vector<int64_t> offset(nl + 1, 0);
  for (int64_t l = 0; l < nl; ++l) {
    const Level<T>& L = levels[l];
    offset[l + 1] = offset[l] + 2 * L.G * L.h * L.b + L.G * (L.h + L.b);
  }
  const int64_t sum_size = offset[nl];
  std::vector<T> partial(chunks * sum_size, T(0));
  struct Scratch {
    std::vector<T> H, D, dA;
    std::vector<T> ins;   // inputs of levels 0 (tiled only) .. nl-1, [n, W] each
    std::vector<T> grad;  // two gradient slabs (ping-pong), and dy / dx tiles when tiled
  };
  const int64_t slab = n * W, hw = max_hidden(levels) * W;
  tile::for_each_task(
      chunks,
      [&] {
        return Scratch{std::vector<T>(hw), std::vector<T>(hw), std::vector<T>(hw), std::vector<T>(nl * slab),
                       std::vector<T>((tiled ? 4 : 2) * slab)};
      },
      [&](Scratch& s, int64_t c) {
        std::vector<GradSums<T>> sums(nl);
        for (int64_t l = 0; l < nl; ++l) {
          const Level<T>& L = levels[l];
          T* base = partial.data() + c * sum_size + offset[l];
          const int64_t n_w = L.G * L.h * L.b;
          if (out[l].dw1) sums[l].dw1 = base;
          if (out[l].db1) sums[l].db1 = base + n_w;
          if (out[l].dw2) sums[l].dw2 = base + n_w + L.G * L.h;
          if (out[l].db2) sums[l].db2 = base + 2 * n_w + L.G * L.h;
        }
        T* gbuf[2] = {s.grad.data(), s.grad.data() + slab};
        for (int64_t u = c * per_chunk; u < std::min(units, (c + 1) * per_chunk); ++u) {
          const int64_t r0 = u * W, rows = tiled ? std::min(W, outer - r0) : 0;
          // Level inputs: in[0] is x's slab, in[l + 1] = level l (in[l]).
          std::vector<const T*> in(nl);
          std::vector<int64_t> in_ps(nl, W);
          if (tiled) {
            load_tile(x, so, sn, n, r0, rows, W, s.ins.data());
            in[0] = s.ins.data();
          } else {
            in[0] = x + u * so;
            in_ps[0] = sn;
          }
          for (int64_t l = 0; l + 1 < nl; ++l) {
            T* next = s.ins.data() + (l + 1) * slab;
            level_forward(levels[l], W, in[l], in_ps[l], next, W, s.H.data());
            in[l + 1] = next;
          }
          // Gradient slabs, from the last level down.
          const T* g = dy + u * n * inner;
          int64_t g_ps = inner;
          T* dx_slab = nullptr;
          if (tiled) {
            T* dyt = s.grad.data() + 2 * slab;
            load_tile(dy, n, int64_t(1), n, r0, rows, W, dyt);
            g = dyt;
            g_ps = W;
            if (dx) dx_slab = s.grad.data() + 3 * slab;
          } else if (dx) {
            dx_slab = dx + u * n * inner;
          }
          for (int64_t l = nl - 1; l >= 0; --l) {
            T* dst = l == 0 ? dx_slab : gbuf[l % 2];
            level_backward(levels[l], W, in[l], in_ps[l], g, g_ps, dst, W, sums[l], s.H.data(), s.D.data(),
                           s.dA.data());
            g = dst;
            g_ps = W;
          }
          if (tiled && dx) store_tile(dx_slab, n, r0, rows, W, dx);
        }
      });
  for (int64_t l = 0; l < nl; ++l) {
    const Level<T>& L = levels[l];
    const int64_t n_w = L.G * L.h * L.b;
    auto reduce = [&](T* dst, int64_t at, int64_t size) {
      if (!dst) return;
      std::fill(dst, dst + size, T(0));
      for (int64_t c = 0; c < chunks; ++c) {
        const T* src = partial.data() + c * sum_size + offset[l] + at;
        for (int64_t i = 0; i < size; ++i) dst[i] += src[i];
      }
    };
    reduce(out[l].dw1, 0, n_w);
    reduce(out[l].db1, n_w, L.G * L.h);
    reduce(out[l].dw2, n_w + L.G * L.h, n_w);
    reduce(out[l].db2, 2 * n_w + L.G * L.h, L.G * L.b);
  }
}

// Checks one level against x (n positions along dim) and returns its
// parameters made contiguous.
BlockMlpLevel checked_level(const Tensor& x, const BlockMlpLevel& lv, size_t index, int64_t dim) {
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
  auto contig = [](const Tensor& t) { return t.defined() ? t.contiguous_raw() : Tensor(); };
  return {contig(lv.w1), contig(lv.b1), contig(lv.w2), contig(lv.b2), lv.stride};
}

template <class T>
std::vector<Level<T>> raw_levels(const std::vector<BlockMlpLevel>& levels) {
  std::vector<Level<T>> out;
  for (const BlockMlpLevel& lv : levels) {
    auto ptr = [](const Tensor& t) -> const T* { return t.defined() ? t.data<T>() : nullptr; };
    out.push_back({lv.w1.sizes()[0], lv.w1.sizes()[2], lv.w1.sizes()[1], lv.stride, ptr(lv.w1), ptr(lv.b1),
                   ptr(lv.w2), ptr(lv.b2)});
  }
  return out;
}

}  // namespace

Tensor block_mlp(const Tensor& x, const std::vector<BlockMlpLevel>& levels, int64_t dim) {
  const char* op = "block_mlp";
  check_floating(op, x);
  DIMIX_CHECK(!levels.empty(), op, ": expected at least one level, got none");
  const int64_t nd = x.dim();
  DIMIX_CHECK(nd >= 1 && dim >= -nd && dim < nd, op, ": dim ", dim, " out of range for x ", x.shape_str());
  if (dim < 0) dim += nd;
  std::vector<BlockMlpLevel> lv;
  for (size_t i = 0; i < levels.size(); ++i) lv.push_back(checked_level(x, levels[i], i, dim));

  if (x.device().is_cuda()) {  // the composite, on the GPU kernels of block_linear and gelu
    Tensor y = x;
    for (const BlockMlpLevel& l : levels)
      y = block_linear(gelu(block_linear(y, l.w1, l.b1, dim, l.stride, 1)), l.w2, l.b2, dim, 1, l.stride);
    return y;
  }

  const Tensor x3 = view_around_dim(x, dim);
  const Shape shape3 = x3.sizes();
  const Tensor y3 = empty(shape3, x.dtype());
  dispatch_float(x.dtype(), op, [&]<class T>() { forward_cpu<T>(y3, x3, raw_levels<T>(lv)); });
  Tensor y = y3.as_strided(x.sizes(), contiguous_strides(x.sizes()), 0);

  std::vector<Tensor> inputs = {x};
  for (const BlockMlpLevel& l : levels) inputs.insert(inputs.end(), {l.w1, l.b1, l.w2, l.b2});
  if (needs_grad(inputs)) {
    std::vector<bool> wanted;
    for (const Tensor& t : inputs) wanted.push_back(t.defined() && t.requires_grad());
    const Tensor sx = x3.detach();
    std::vector<BlockMlpLevel> saved;
    for (const BlockMlpLevel& l : lv) {
      auto det = [](const Tensor& t) { return t.defined() ? t.detach() : Tensor(); };
      saved.push_back({det(l.w1), det(l.b1), det(l.w2), det(l.b2), l.stride});
    }
    record(y, op, inputs, [=, in_shape = x.sizes()](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor gc = grad.contiguous_raw();
      const Tensor dy3 = gc.as_strided(shape3, contiguous_strides(shape3), gc.offset());
      const DType t = sx.dtype();
      // grads[0] = dx, then per level dw1, db1, dw2, db2 (as `inputs`).
      std::vector<Tensor> grads(wanted.size());
      if (wanted[0]) grads[0] = empty(shape3, t);
      for (size_t l = 0; l < saved.size(); ++l) {
        const Tensor* p[4] = {&saved[l].w1, &saved[l].b1, &saved[l].w2, &saved[l].b2};
        for (size_t j = 0; j < 4; ++j)
          if (wanted[1 + 4 * l + j]) grads[1 + 4 * l + j] = empty(p[j]->sizes(), t);
      }
      dispatch_float(t, op, [&]<class T>() {
        auto ptr = [](const Tensor& g) { return g.defined() ? g.data<T>() : nullptr; };
        std::vector<GradSums<T>> out(saved.size());
        for (size_t l = 0; l < saved.size(); ++l)
          out[l] = {ptr(grads[1 + 4 * l]), ptr(grads[2 + 4 * l]), ptr(grads[3 + 4 * l]), ptr(grads[4 + 4 * l])};
        backward_cpu<T>(grads[0], dy3, sx, raw_levels<T>(saved), out);
      });
      if (grads[0].defined()) grads[0] = grads[0].as_strided(in_shape, contiguous_strides(in_shape), 0);
      return grads;
    });
  }
  return y;
}

Tensor block_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, int64_t dim,
                 int64_t stride) {
  return block_mlp(x, {BlockMlpLevel{w1, b1, w2, b2, stride}}, dim);
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
    // A middle dim of a non-contiguous x, stride 2.
    {"block_mlp/middle_dim_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 6, 2, 2}, t), randn_input(g, {2, 4, 3}, t), randn_input(g, {2, 4}, t),
                          randn_input(g, {2, 3, 4}, t), randn_input(g, {2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_mlp(x[0], x[1], x[2], x[3], x[4], 1, 2); }},
});

}  // namespace dimix
