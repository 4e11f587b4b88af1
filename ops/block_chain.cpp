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
#include "ops/block_chain.h"

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/gelu_kernel.h"
#include "ops/slab.h"
#include "ops/tile_gemm.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

using slab::load_tile;
using slab::row_sum;
using slab::store_tile;
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
  if (act == Act::gelu) return gelu_erf_array<T>(a, a, deriv, n);
  if (act != Act::elu) return;
  // ELU, alpha 1: z > 0 ? z : e^z - 1, slope z > 0 ? 1 : e^z (the exp of
  // min(z, 0) for every lane, then selects, so the loop vectorises).
  if (deriv) {
    for (int64_t i = 0; i < n; ++i) {
      const T z = a[i], e = exp_vec(z < T(0) ? z : T(0));
      a[i] = z > T(0) ? z : e - T(1);
      deriv[i] = z > T(0) ? T(1) : e;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const T z = a[i], e = exp_vec(z < T(0) ? z : T(0));
      a[i] = z > T(0) ? z : e - T(1);
    }
  }
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

// y3 [outer, n_last, inner] (contiguous) = the chain applied to x3.
template <class T>
void forward_cpu(const Tensor& y3, const Tensor& x3, const std::vector<Step<T>>& steps) {
  const int64_t outer = x3.sizes()[0], n0 = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  T* y = y3.data<T>();
  const int64_t L = static_cast<int64_t>(steps.size()), n_last = steps.back().n_out();
  const int64_t n_max = max_length(n0, steps);
  const bool tiled = inner == 1;
  const int64_t W = tiled ? tile_rows(n_max, L, sizeof(T)) : inner;
  const int64_t units = tiled ? (outer + W - 1) / W : outer;
  struct Scratch {
    std::vector<T> a, b;
  };
  tile::for_each_task(
      units, [&] { return Scratch{std::vector<T>(n_max * W), std::vector<T>(n_max * W)}; },
      [&](Scratch& s, int64_t u) {
        const int64_t r0 = u * W, rows = tiled ? std::min(W, outer - r0) : 0;
        const T* src = x + u * so;
        int64_t sps = sn;
        if (tiled) {
          load_tile(x, so, sn, n0, r0, rows, W, s.a.data());
          src = s.a.data();
          sps = W;
        }
        for (int64_t i = 0; i < L; ++i) {
          T* dst = i == L - 1 && !tiled ? y + u * n_last * inner : (src == s.a.data() ? s.b.data() : s.a.data());
          step_forward(steps[i], W, src, sps, dst, static_cast<T*>(nullptr));
          src = dst;
          sps = W;
        }
        if (tiled) store_tile(src, n_last, r0, rows, W, y);
      });
}

// dx3 (contiguous, or undefined) and the parameter gradients (out[i]: step
// i's dw / db, null where not wanted) from dy3 (contiguous) and the saved x3.
template <class T>
void backward_cpu(const Tensor& dx3, const Tensor& dy3, const Tensor& x3, const std::vector<Step<T>>& steps,
                  const std::vector<GradSums<T>>& out) {
  const int64_t outer = x3.sizes()[0], n0 = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const T* x = x3.data<T>();
  const T* dy = dy3.data<T>();
  T* dx = dx3.defined() ? dx3.data<T>() : nullptr;
  const int64_t L = static_cast<int64_t>(steps.size()), n_last = steps.back().n_out();
  const int64_t n_max = max_length(n0, steps);
  const bool tiled = inner == 1;
  const int64_t W = tiled ? tile_rows(n_max, L, sizeof(T)) : inner;
  const int64_t units = tiled ? (outer + W - 1) / W : outer;
  const int64_t per_chunk = slab::units_per_chunk(n0, W);
  const int64_t chunks = (units + per_chunk - 1) / per_chunk;
  std::vector<int64_t> offset(L + 1, 0);  // per step: dw | db
  for (int64_t i = 0; i < L; ++i) offset[i + 1] = offset[i] + steps[i].G * steps[i].b_out * (steps[i].b_in + 1);
  std::vector<T> partial(chunks * offset[L], T(0));
  // Scratch slabs [n_max, W]: 0..L-1 step outputs, L..2L-1 slopes, then two
  // gradient slabs, the slope-scaled gradient, and the x / dy / dx tiles.
  const int64_t sz = n_max * W;
  tile::for_each_task(
      chunks, [&] { return std::vector<T>((2 * L + 6) * sz); },
      [&](std::vector<T>& s, int64_t c) {
        auto slab_at = [&](int64_t j) { return s.data() + j * sz; };
        std::vector<GradSums<T>> sums(L);
        for (int64_t i = 0; i < L; ++i) {
          T* base = partial.data() + c * offset[L] + offset[i];
          if (out[i].dw) sums[i].dw = base;
          if (out[i].db) sums[i].db = base + steps[i].G * steps[i].b_out * steps[i].b_in;
        }
        T* gbuf[2] = {slab_at(2 * L), slab_at(2 * L + 1)};
        T* scaled = slab_at(2 * L + 2);
        for (int64_t u = c * per_chunk; u < std::min(units, (c + 1) * per_chunk); ++u) {
          const int64_t r0 = u * W, rows = tiled ? std::min(W, outer - r0) : 0;
          // Inputs: in[0] is x's slab, in[i + 1] the output of step i.
          const T* in0 = x + u * so;
          int64_t in0_ps = sn;
          if (tiled) {
            load_tile(x, so, sn, n0, r0, rows, W, slab_at(2 * L + 3));
            in0 = slab_at(2 * L + 3);
            in0_ps = W;
          }
          for (int64_t i = 0; i < L; ++i) {
            if (i == L - 1 && steps[i].act == Act::none) break;  // its output is not needed
            step_forward(steps[i], W, i == 0 ? in0 : slab_at(i - 1), i == 0 ? in0_ps : W, slab_at(i),
                         steps[i].act == Act::none ? nullptr : slab_at(L + i));
          }
          const T* g = dy + u * n_last * inner;  // contiguous [n_last, W] when inner > 1
          if (tiled) {
            load_tile(dy, n_last, int64_t(1), n_last, r0, rows, W, slab_at(2 * L + 4));
            g = slab_at(2 * L + 4);
          }
          T* dx_slab = !dx ? nullptr : tiled ? slab_at(2 * L + 5) : dx + u * n0 * inner;
          for (int64_t i = L - 1; i >= 0; --i) {
            const Step<T>& S = steps[i];
            if (S.act != Act::none) {
              const T* d = slab_at(L + i);
              for (int64_t j = 0; j < S.n_out() * W; ++j) scaled[j] = g[j] * d[j];
              g = scaled;
            }
            T* dst = i == 0 ? dx_slab : gbuf[i % 2];
            step_backward(S, W, g, i == 0 ? in0 : slab_at(i - 1), i == 0 ? in0_ps : W, dst, sums[i]);
            g = dst;
          }
          if (tiled && dx) store_tile(dx_slab, n0, r0, rows, W, dx);
        }
      });
  for (int64_t i = 0; i < L; ++i) {
    const int64_t n_w = steps[i].G * steps[i].b_out * steps[i].b_in, n_b = steps[i].G * steps[i].b_out;
    auto reduce = [&](T* dst, int64_t at, int64_t size) {
      if (!dst) return;
      std::fill(dst, dst + size, T(0));
      for (int64_t c = 0; c < chunks; ++c) {
        const T* src = partial.data() + c * offset[L] + offset[i] + at;
        for (int64_t j = 0; j < size; ++j) dst[j] += src[j];
      }
    };
    reduce(out[i].dw, 0, n_w);
    reduce(out[i].db, n_w, n_b);
  }
}

template <class T>
std::vector<Step<T>> raw_steps(const std::vector<BlockChainStep>& steps) {
  std::vector<Step<T>> out;
  for (size_t i = 0; i < steps.size(); ++i) {
    const BlockChainStep& s = steps[i];
    out.push_back({s.weight.sizes()[0], s.weight.sizes()[2], s.weight.sizes()[1], s.in_stride, s.out_stride,
                   s.weight.data<T>(), s.bias.defined() ? s.bias.data<T>() : nullptr,
                   parse_activation(s.activation, i)});
  }
  return out;
}

}  // namespace

Tensor block_chain(const Tensor& x, const std::vector<BlockChainStep>& steps, int64_t dim) {
  const char* op = "block_chain";
  check_floating(op, x);
  DIMIX_CHECK(!steps.empty(), op, ": expected at least one step, got none");
  const int64_t nd = x.dim();
  DIMIX_CHECK(nd >= 1 && dim >= -nd && dim < nd, op, ": dim ", dim, " out of range for x ", x.shape_str());
  if (dim < 0) dim += nd;
  std::vector<BlockChainStep> st;  // contiguous parameters
  int64_t n = x.sizes()[dim];
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
    parse_activation(s.activation, i);
    st.push_back({s.weight.contiguous_raw(), s.bias.defined() ? s.bias.contiguous_raw() : Tensor(), s.in_stride,
                  s.out_stride, s.activation});
    n = G * b_out;
  }

  if (x.device().is_cuda()) {  // the composite, on the GPU kernels of block_linear and the activations
    Tensor y = x;
    for (const BlockChainStep& s : steps) {
      y = block_linear(y, s.weight, s.bias, dim, s.in_stride, s.out_stride);
      if (s.activation == "elu") y = elu(y);
      if (s.activation == "gelu") y = gelu(y);
    }
    return y;
  }

  const Tensor x3 = view_around_dim(x, dim);
  const Shape shape3 = x3.sizes();
  const Shape y_shape3 = {shape3[0], n, shape3[2]};
  const Tensor y3 = empty(y_shape3, x.dtype());
  dispatch_float(x.dtype(), op, [&]<class T>() { forward_cpu<T>(y3, x3, raw_steps<T>(st)); });
  Shape y_shape = x.sizes();
  y_shape[dim] = n;
  Tensor y = y3.as_strided(y_shape, contiguous_strides(y_shape), 0);

  std::vector<Tensor> inputs = {x};
  for (const BlockChainStep& s : steps) inputs.insert(inputs.end(), {s.weight, s.bias});
  if (needs_grad(inputs)) {
    std::vector<bool> wanted;
    for (const Tensor& t : inputs) wanted.push_back(t.defined() && t.requires_grad());
    const Tensor sx = x3.detach();
    std::vector<BlockChainStep> saved;
    for (const BlockChainStep& s : st)
      saved.push_back({s.weight.detach(), s.bias.defined() ? s.bias.detach() : Tensor(), s.in_stride, s.out_stride,
                       s.activation});
    record(y, op, inputs, [=, in_shape = x.sizes()](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor gc = grad.contiguous_raw();
      const Tensor dy3 = gc.as_strided(y_shape3, contiguous_strides(y_shape3), gc.offset());
      const DType t = sx.dtype();
      // grads[0] = dx, then per step dw, db (as `inputs`).
      std::vector<Tensor> grads(wanted.size());
      if (wanted[0]) grads[0] = empty(shape3, t);
      for (size_t i = 0; i < saved.size(); ++i) {
        if (wanted[1 + 2 * i]) grads[1 + 2 * i] = empty(saved[i].weight.sizes(), t);
        if (wanted[2 + 2 * i]) grads[2 + 2 * i] = empty(saved[i].bias.sizes(), t);
      }
      dispatch_float(t, op, [&]<class T>() {
        auto ptr = [](const Tensor& g) { return g.defined() ? g.data<T>() : nullptr; };
        std::vector<GradSums<T>> out(saved.size());
        for (size_t i = 0; i < saved.size(); ++i) out[i] = {ptr(grads[1 + 2 * i]), ptr(grads[2 + 2 * i])};
        backward_cpu<T>(grads[0], dy3, sx, raw_steps<T>(saved), out);
      });
      if (grads[0].defined()) grads[0] = grads[0].as_strided(in_shape, contiguous_strides(in_shape), 0);
      return grads;
    });
  }
  return y;
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
    // A middle dim of a non-contiguous x: 8 -> 4 (GELU, strides 2 -> 1) -> 8 (strides 1 -> 4).
    {"block_chain/middle_dim_noncontig_gelu", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 8, 3, 2}, t), randn_input(g, {4, 1, 2}, t), randn_input(g, {4, 1}, t),
                          randn_input(g, {4, 2, 1}, t), randn_input(g, {4, 2}, t)}; },
     [](const std::vector<Tensor>& x) {
       return block_chain(x[0], {{x[1], x[2], 2, 1, "gelu"}, {x[3], x[4], 1, 4, "elu"}}, 1); }},
});

}  // namespace dimix
