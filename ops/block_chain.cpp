// block_chain (see block_chain.h): a chain of butterfly block products in one
// pass per slab.
//
// Letters as in block_linear.cpp: x is viewed as [outer, n, inner] around
// `dim`; step i has G groups, block sizes b_in -> b_out and strides g_in,
// g_out (group k reads positions in_base(k) + j * g_in and writes
// out_base(k) + jo * g_out).
//
// The unit of work is a slab (ops/slab.h): a row of `outer` in place for a
// middle dim (W = inner), W rows transposed for the last dim. Forward per
// slab: each step writes its output slab [n_out, W] (one small GEMM per
// group, bias as the GEMM's row start), its activation runs over that slab
// in place, and steps ping-pong between two scratch slabs; the last writes
// y. Backward per slab: the steps are recomputed, keeping each step's output
// (the next step's input) and each activation's derivative, then from the
// last step down
//   dZ = dA * act'(Z),  dW_k += dZ_k X_k^T,  db_k += sum dZ_k,  dX_k = W_k^T dZ_k
// with the group panels read where they lie. Parameter gradients are summed
// per chunk of slabs (slab.h): bitwise the same on any number of threads.
// This file is the chain's slab::Body; the driver in slab.h runs it over x,
// with the optional norm and residual around it (PreNormResidual).
#include "ops/block_chain.h"

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/elu_kernel.h"
#include "ops/gelu_kernel.h"
#include "ops/slab.h"
#include "ops/slab_op.h"
#include "ops/tile_gemm.h"

namespace dimix {
namespace {

using slab::row_sum;
using tile::dot_block;
using tile::small_gemm;

enum class Act { none, elu, gelu };

Act parse_activation(const std::string& name, size_t index) {
  if (name.empty()) return Act::none;
  if (name == "elu") return Act::elu;
  if (name == "gelu") return Act::gelu;
  DIMIX_FAIL("block_chain: step ", index, " has activation '", name, "', expected \"\", \"elu\" or \"gelu\"");
}

template <class T>
struct Step {
  int64_t G, b_in, b_out, g_in, g_out;
  const T* w;     // [G, b_out, b_in]
  const T* bias;  // [G, b_out] or null
  Act act;
  int64_t n_out() const { return G * b_out; }
  int64_t in_base(int64_t k) const { return (k / g_in) * b_in * g_in + k % g_in; }
  int64_t out_base(int64_t k) const { return (k / g_out) * b_out * g_out + k % g_out; }
};

// a = act(a) over n contiguous values; deriv (if not null) = act'(z).
template <class T>
void activate(Act act, T* a, T* deriv, int64_t n) {
  if (act == Act::gelu) gelu_erf_array<T>(a, a, deriv, n);
  if (act == Act::elu) elu_array<T>(a, a, deriv, n);
}

// One step over a slab: src (positions sps apart) -> dst [n_out, W]
// (contiguous), activation in place, its derivative into deriv if asked.
template <class T>
void step_forward(const Step<T>& S, int64_t W, const T* src, int64_t sps, T* dst, T* deriv) {
  for (int64_t k = 0; k < S.G; ++k)
    small_gemm<T>(S.b_out, W, S.b_in, S.w + k * S.b_out * S.b_in, S.b_in, 1, src + S.in_base(k) * sps,
                  S.g_in * sps, dst + S.out_base(k) * W, S.g_out * W, S.bias ? S.bias + k * S.b_out : nullptr);
  activate(S.act, dst, deriv, S.n_out() * W);
}

// This chunk's partial sums for one step (null: not wanted).
template <class T>
struct GradSums {
  T *dw = nullptr, *db = nullptr;
};

// One step's backward over a slab: dZ [n_out, W] (contiguous, after the
// activation's slope), X its input (positions xps apart), dX its input's
// gradient (may be null) [n_in, W] contiguous.
template <class T>
void step_backward(const Step<T>& S, int64_t W, const T* dZ, const T* X, int64_t xps, T* dX, const GradSums<T>& sums) {
  const int64_t blk = S.b_out * S.b_in;
  for (int64_t k = 0; k < S.G; ++k) {
    const T* dz = dZ + S.out_base(k) * W;
    const int64_t dzs = S.g_out * W;
    const T* xk = X + S.in_base(k) * xps;
    if (sums.dw) dot_block<T>(S.b_out, S.b_in, 1, W, dz, 0, dzs, xk, 0, S.g_in * xps, sums.dw + k * blk, S.b_in);
    if (sums.db)
      for (int64_t jo = 0; jo < S.b_out; ++jo) sums.db[k * S.b_out + jo] += row_sum(dz + jo * dzs, W);
    // dX_k[j, w] = sum_jo W_k[jo, j] dZ_k[jo, w]: W_k read transposed in place.
    if (dX) small_gemm<T>(S.b_in, W, S.b_out, S.w + k * blk, 1, S.b_in, dz, dzs, dX + S.in_base(k) * W, S.g_in * W);
  }
}

template <class T>
int64_t max_length(int64_t n0, const std::vector<Step<T>>& steps) {
  int64_t n = n0;
  for (const Step<T>& S : steps) n = std::max(n, S.n_out());
  return n;
}

// Lanes per transposed tile (inner == 1): the widest of 128, 64, 32, 16
// whose backward scratch (about 2 L + 6 slabs of the longest step) fits in
// 768 KB of L2.
int64_t tile_rows(int64_t n_max, int64_t n_steps, int64_t elem) {
  const int64_t slabs = 2 * n_steps + 6;
  for (int64_t w : {128, 64, 32})
    if (slabs * n_max * w * elem <= (768 << 10)) return w;
  return 16;
}

// The chain as a slab::Body (slab.h): the driver feeds it slabs, tiles and
// gradient chunks.
template <class T>
struct ChainBody {
  std::vector<Step<T>> steps;
  std::vector<bool> want;  // 2 per step: dw, db wanted
  int64_t n_in, n_out, n_max;
  std::vector<int64_t> offset;  // per step, where its dw | db start in the sums

  ChainBody(std::vector<Step<T>> st, std::vector<bool> w, int64_t n0)
      : steps(std::move(st)), want(std::move(w)), n_in(n0), n_out(steps.back().n_out()),
        n_max(max_length(n0, steps)), offset(steps.size() + 1, 0) {
    for (size_t i = 0; i < steps.size(); ++i)
      offset[i + 1] = offset[i] + steps[i].G * steps[i].b_out * (steps[i].b_in + 1);
  }
  int64_t sums() const { return offset.back(); }
  // Two slabs (ping-pong).
  int64_t forward_scratch(int64_t W) const { return 2 * n_max * W; }
  void forward(int64_t W, const T* src, int64_t sps, T* dst, T* scratch) const {
    T* a = scratch;
    T* b = scratch + n_max * W;
    for (size_t i = 0; i < steps.size(); ++i) {
      T* out = i + 1 == steps.size() ? dst : (src == a ? b : a);
      step_forward(steps[i], W, src, sps, out, static_cast<T*>(nullptr));
      src = out;
      sps = W;
    }
  }
  // Slabs [n_max, W]: 0..L-1 step outputs, L..2L-1 slopes, then two
  // gradient slabs and the slope-scaled gradient.
  int64_t backward_scratch(int64_t W) const { return (2 * static_cast<int64_t>(steps.size()) + 3) * n_max * W; }
  void backward(int64_t W, const T* x, int64_t xps, const T* dy, T* dx, T* sums, T* scratch) const {
    const int64_t L = static_cast<int64_t>(steps.size()), sz = n_max * W;
    auto slab_at = [&](int64_t j) { return scratch + j * sz; };
    T* gbuf[2] = {slab_at(2 * L), slab_at(2 * L + 1)};
    T* scaled = slab_at(2 * L + 2);
    for (int64_t i = 0; i < L; ++i) {
      if (i == L - 1 && steps[i].act == Act::none) break;  // its output is not needed
      step_forward(steps[i], W, i == 0 ? x : slab_at(i - 1), i == 0 ? xps : W, slab_at(i),
                   steps[i].act == Act::none ? nullptr : slab_at(L + i));
    }
    const T* g = dy;
    for (int64_t i = L - 1; i >= 0; --i) {
      const Step<T>& S = steps[i];
      if (S.act != Act::none) {
        const T* d = slab_at(L + i);
        for (int64_t j = 0; j < S.n_out() * W; ++j) scaled[j] = g[j] * d[j];
        g = scaled;
      }
      T* base = sums + offset[i];
      const GradSums<T> gs{want[2 * i] ? base : nullptr, want[2 * i + 1] ? base + S.G * S.b_out * S.b_in : nullptr};
      T* dst = i == 0 ? dx : gbuf[i % 2];
      step_backward(S, W, g, i == 0 ? x : slab_at(i - 1), i == 0 ? xps : W, dst, gs);
      g = dst;
    }
  }
};

// A step's strides and activation; its weight and bias come as tensors.
struct StepShape {
  int64_t in_stride, out_stride;
  Act act;
};

// The steps' raw form from their shapes and the contiguous params, weight |
// bias per step.
template <class T>
std::vector<Step<T>> raw_steps(const std::vector<StepShape>& shapes, const std::vector<Tensor>& p) {
  std::vector<Step<T>> out;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor &w = p[2 * i], &b = p[2 * i + 1];
    out.push_back({w.sizes()[0], w.sizes()[2], w.sizes()[1], shapes[i].in_stride, shapes[i].out_stride, w.data<T>(),
                   b.defined() ? b.data<T>() : nullptr, shapes[i].act});
  }
  return out;
}

}  // namespace

Tensor block_chain(const Tensor& x, const std::vector<BlockChainStep>& steps, int64_t dim,
                   const PreNormResidual& around) {
  const char* op = "block_chain";
  DIMIX_CHECK(!steps.empty(), op, ": expected at least one step, got none");
  dim = slab::mixed_dim(op, x, dim);
  // The gradient sums hold, per step, dw | db.
  std::vector<Tensor> params;
  std::vector<Shape> shapes;
  std::vector<StepShape> meta;
  int64_t n = x.sizes()[dim], n_max = n;
  for (size_t i = 0; i < steps.size(); ++i) {
    const BlockChainStep& s = steps[i];
    const std::string at = " (step " + std::to_string(i) + ")";
    DIMIX_CHECK(s.weight.defined() && s.weight.dim() == 3, op, ": expected weight [G, b_out, b_in]", at, ", got ",
                s.weight.defined() ? s.weight.shape_str() : std::string("undefined"));
    check_same_device(op, x, s.weight);
    check_same_dtype(op, x, s.weight);
    const int64_t G = s.weight.sizes()[0], b_out = s.weight.sizes()[1], b_in = s.weight.sizes()[2];
    DIMIX_CHECK(G >= 1 && b_out >= 1 && b_in >= 1, op, ": weight ", s.weight.shape_str(), at, " has an empty dim");
    DIMIX_CHECK(n == G * b_in, op, ": the input of step ", i, " has ", n, " positions along dim ", dim,
                ", expected G * b_in = ", G, " * ", b_in, " = ", G * b_in, " for weight ", s.weight.shape_str());
    DIMIX_CHECK(s.in_stride >= 1 && s.out_stride >= 1 && G % s.in_stride == 0 && G % s.out_stride == 0, op,
                ": the number of groups G = ", G, " must be divisible by in_stride ", s.in_stride,
                " and out_stride ", s.out_stride, at);
    if (s.bias.defined()) {
      check_same_device(op, x, s.bias);
      check_same_dtype(op, x, s.bias);
      DIMIX_CHECK(s.bias.dim() == 2 && s.bias.sizes()[0] == G && s.bias.sizes()[1] == b_out, op,
                  ": expected bias [", G, ", ", b_out, "], got ", s.bias.shape_str(), at);
    }
    params.insert(params.end(), {s.weight, s.bias});
    shapes.insert(shapes.end(), {s.weight.sizes(), {G, b_out}});
    meta.push_back({s.in_stride, s.out_stride, parse_activation(s.activation, i)});
    n = G * b_out;
    n_max = std::max(n_max, n);
  }

  check_prenorm_residual(op, x, around, n, dim);

  if (x.device().is_cuda())  // the composite, on the GPU kernels of layer_norm, block_linear and the activations
    return prenorm_residual_composite(x, around, [&](const Tensor& z) {
      Tensor y = z;
      for (const BlockChainStep& s : steps) {
        y = block_linear(y, s.weight, s.bias, dim, s.in_stride, s.out_stride);
        if (s.activation == "elu") y = elu(y);
        if (s.activation == "gelu") y = gelu(y);
      }
      return y;
    });

  const int64_t n0 = x.sizes()[dim];
  const int64_t tile_w = tile_rows(n_max, static_cast<int64_t>(steps.size()), static_cast<int64_t>(dtype_size(x.dtype())));
  return slab::apply(op, x, dim, n, tile_w, params, shapes, around,
                     [meta, n0]<class T>(const std::vector<Tensor>& p, const std::vector<bool>& want) {
                       return ChainBody<T>(raw_steps<T>(meta, p), want, n0);
                     });
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // The Butterfly-Linear chain at n = 9 (b 3, h 2): 9 -> 18 -> 18 (ELU) -> 18 -> 9, last dim.
    {"block_chain/butterfly_linear_last_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 9}, t), randn_input(g, {3, 6, 3}, t), randn_input(g, {6, 3, 3}, t),
                          randn_input(g, {6, 3}, t), randn_input(g, {6, 3, 3}, t), randn_input(g, {3, 3, 6}, t),
                          randn_input(g, {3, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_chain(x[0], {{x[1], Tensor(), 1, 1, ""}, {x[2], x[3], 6, 1, "elu"}, {x[4], Tensor(), 1, 1, ""},
                                 {x[5], x[6], 3, 1, ""}}, -1); }},
    // A pre-norm residual chain on the last dim: 6 -> 6 (ELU) -> 6, norm without bias.
    {"block_chain/prenorm_residual_last_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 6}, t), randn_input(g, {2, 3, 3}, t), randn_input(g, {2, 3}, t),
                          randn_input(g, {3, 2, 2}, t), randn_input(g, {6}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_chain(x[0], {{x[1], x[2], 1, 1, "elu"}, {x[3], Tensor(), 3, 1, ""}}, -1,
                          {true, x[4], Tensor(), 1e-5, true}); }},
    // A middle dim of a non-contiguous x: 8 -> 4 (GELU, strides 2 -> 1) -> 8 (strides 1 -> 4).
    {"block_chain/middle_dim_noncontig_gelu", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 8, 3, 2}, t), randn_input(g, {4, 1, 2}, t), randn_input(g, {4, 1}, t),
                          randn_input(g, {4, 2, 1}, t), randn_input(g, {4, 2}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_chain(x[0], {{x[1], x[2], 2, 1, "gelu"}, {x[3], x[4], 1, 4, "elu"}}, 1); }},
});

}  // namespace dimix
