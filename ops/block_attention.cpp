// block_attention (see block_attention.h): softmax attention within butterfly
// groups of tokens (PAPERS.md 1.5, 1.6), dense attention when block = S.
//
// Letters: B batch, S tokens, H heads, hd head dim, G = S / block groups,
// group c = a * stride + s holds tokens a*block*stride + s + j*stride, j < block
// (block_linear's grouping), so a group's rows are equally spaced in q, k, v
// and every product below reads them in place:
//   scores = Q_c (K_c / sqrt(hd))^T + key_bias      key_bias = -1e6 where key_mask == 0
//   P = softmax(scores), P_drop = dropout(P),  O_c = P_drop V_c
// One task per (b, h, c), handed out dynamically; queries in tiles of QT rows,
// so scratch is per thread and at most QT x block (flash-attention style:
// nothing S x S lives beyond a tile). The backward recomputes P per tile:
//   dP_drop = dO V^T, dP = dropout'(dP_drop), D_i = sum_j P_ij dP_ij,
//   dS = P (dP - D) / sqrt(hd), dQ = dS K, dK += dS^T Q, dV += P_drop^T dO.
// Dropout element index: the flat index of the score in [B, H, G, block, block]
// order, drawn as dropout() does (philox_uniform<T>(seed, offset, i) < p drops).
// Products go through tile::small_gemm (register-tiled, lanes over the head
// dim or the keys); K^T and V^T are transposed once per task.
//
// CUDA kernels dispatched to (q, k, v with unit head-dim stride; out and the
// gradients contiguous [B, S, H, hd]; key_keep [B, S] of q's dtype, nonzero =
// keep, or undefined):
//   "block_attention_forward"  void(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
//                                   const Tensor& key_keep, int64_t block, int64_t stride, double p,
//                                   uint64_t seed, uint64_t offset)
//   "block_attention_backward" void(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
//                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
//                                   int64_t block, int64_t stride, double p, uint64_t seed, uint64_t offset)
//   and for block == S > 128, the flash kernels (lse [B * H * S] saved by the forward, out saved too):
//   "flash_attention_forward"  void(out, lse, q, k, v, key_keep, block, stride, p, seed, offset)
//   "flash_attention_backward" void(dq, dk, dv, dout, q, k, v, out, lse, key_keep, block, stride, p, seed, offset)
#include "ops/block_attention.h"

#include <cmath>
#include <limits>

#include "ops/common.h"
#include "ops/tile_gemm.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

using tile::small_gemm;

constexpr double kMaskedScore = -1e6;  // the LRA code's "- 1e6 * (1 - mask)"

struct Geometry {
  int64_t B, S, H, hd, block, stride, G;
  // First token of group c; slot j is at first(c) + j * stride.
  int64_t first(int64_t c) const { return (c / stride) * block * stride + c % stride; }
};

// A [B, S, H, hd] operand's element strides (unit head-dim stride).
struct Operand {
  const void* data;
  int64_t sb, st, sh;
  template <class T>
  const T* group(const Geometry& g, int64_t b, int64_t h, int64_t c) const {
    return static_cast<const T*>(data) + b * sb + g.first(c) * st + h * sh;
  }
  int64_t row(const Geometry& g) const { return g.stride * st; }  // between slots of a group
};

Operand operand(const Tensor& t) { return {t.raw_data(), t.strides()[0], t.strides()[1], t.strides()[2]}; }

// Query tile: whole blocks up to 128, else 64 rows (a 64 x S score tile).
int64_t query_tile(int64_t block) { return block <= 128 ? block : 64; }

// Per-thread scratch of one task. A group's rows are copied into packed
// [block, hd] buffers first: rows `stride` tokens apart sit at power-of-two
// distances (stride * H * hd elements) that map to one cache set, and would
// thrash L1/L2 if every product read them in place.
template <class T>
struct Scratch {
  std::vector<T> q, k, kt, v, vt, dout, dk, dv, p, dp, rows, bias;
  Scratch(const Geometry& g, bool backward) {
    const int64_t n = g.block * g.hd, tile = query_tile(g.block) * g.block;
    q.resize(n);
    kt.resize(n);
    p.resize(tile);
    rows.resize(query_tile(g.block) * g.hd);
    bias.resize(g.block);
    if (backward) {
      k.resize(n);
      vt.resize(n);
      dout.resize(n);
      dk.resize(n);
      dv.resize(n);
      dp.resize(tile);
    } else {
      v.resize(n);
    }
  }
};

// dst [rows, hd] <- rows of src `step` elements apart, and back.
template <class T>
void pack_rows(T* dst, const T* src, int64_t step, int64_t rows, int64_t hd) {
  for (int64_t j = 0; j < rows; ++j) tile::copy_short(dst + j * hd, src + j * step, hd);
}
template <class T>
void unpack_rows(T* dst, int64_t step, const T* src, int64_t rows, int64_t hd) {
  for (int64_t j = 0; j < rows; ++j) tile::copy_short(dst + j * step, src + j * hd, hd);
}

// Key bias of group c for batch b (0 or -1e6), from key_keep [B, S] (nonzero = keep).
template <class T>
void group_key_bias(T* bias, const T* keep, const Geometry& g, int64_t b, int64_t c) {
  for (int64_t j = 0; j < g.block; ++j)
    bias[j] = keep && keep[b * g.S + g.first(c) + j * g.stride] == T(0) ? T(kMaskedScore) : T(0);
}

// rows x block scores (bias included) -> softmax probabilities, in place.
// The paper's blocks are short rows (8, 16, 32 keys): with the length known
// at compile time each row's max, exp and sum are a few whole vectors with
// no remainder loop, where the generic loop spent more on loop control and
// horizontal reductions than on the exps (softmax was 9% of a patch-4
// butterfly ViT step at block 8).
template <class T, int N>
void softmax_rows_fixed(T* s, int64_t rows) {
  for (int64_t i = 0; i < rows; ++i) {
    T* row = s + i * N;
    T m = row[0];
#pragma GCC unroll 64
    for (int j = 1; j < N; ++j) m = row[j] > m ? row[j] : m;
    T e[N];
    T sum = 0;
#pragma GCC unroll 64
    for (int j = 0; j < N; ++j) {
      e[j] = exp_vec(row[j] - m);
      sum += e[j];
    }
    const T inv = T(1) / sum;
#pragma GCC unroll 64
    for (int j = 0; j < N; ++j) row[j] = e[j] * inv;
  }
}

template <class T>
void softmax_rows(T* s, int64_t rows, int64_t n) {
  switch (n) {
    case 8: return softmax_rows_fixed<T, 8>(s, rows);
    case 16: return softmax_rows_fixed<T, 16>(s, rows);
    case 32: return softmax_rows_fixed<T, 32>(s, rows);
    default: break;
  }
  for (int64_t i = 0; i < rows; ++i) {
    T* row = s + i * n;
    T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; ++j) m = row[j] > m ? row[j] : m;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; ++j) {
      const T e = exp_vec(row[j] - m);
      row[j] = e;
      sum += e;
    }
    const T inv = T(1) / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  }
}

// x[i][j] *= keep(first_index + i * n + j) * scale for a rows x n tile.
template <class T>
void apply_dropout(T* x, int64_t rows, int64_t n, uint64_t first_index, double p, uint64_t seed, uint64_t offset) {
  const T threshold = static_cast<T>(p), scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < rows; ++i) {
    T* row = x + i * n;
    const uint64_t base = first_index + static_cast<uint64_t>(i * n);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T u = philox_uniform<T>(seed, offset, base + static_cast<uint64_t>(j));
      row[j] = u < threshold ? T(0) : row[j] * scale;
    }
  }
}

// Loads group c of (b, h) into the scratch: packed Q, K^T / sqrt(hd) and the
// key bias; V packed (forward) or K packed, V^T and dO packed (backward).
template <class T>
void load_group(Scratch<T>& w, const Operand& Q, const Operand& K, const Operand& V, const T* dout, const T* keep,
                const Geometry& g, int64_t b, int64_t h, int64_t c) {
  const int64_t n = g.block * g.hd;
  pack_rows(w.q.data(), Q.group<T>(g, b, h, c), Q.row(g), g.block, g.hd);
  T* kp = dout ? w.k.data() : w.v.data();  // K packed: a staging buffer in the forward
  pack_rows(kp, K.group<T>(g, b, h, c), K.row(g), g.block, g.hd);
  tile::transpose(kp, g.hd, w.kt.data(), g.block, g.block, g.hd);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(g.hd)));
  for (int64_t e = 0; e < n; ++e) w.kt[e] *= scale;
  group_key_bias(w.bias.data(), keep, g, b, c);
  if (dout) {
    // V^T through the dO buffer, then dO itself.
    pack_rows(w.dout.data(), V.group<T>(g, b, h, c), V.row(g), g.block, g.hd);
    tile::transpose(w.dout.data(), g.hd, w.vt.data(), g.block, g.block, g.hd);
    pack_rows(w.dout.data(), dout + ((b * g.S + g.first(c)) * g.H + h) * g.hd, g.stride * g.H * g.hd, g.block, g.hd);
  } else {
    pack_rows(w.v.data(), V.group<T>(g, b, h, c), V.row(g), g.block, g.hd);
  }
}

// Probabilities of queries [i0, i0 + rows): Q K^T / sqrt(hd) + bias, softmax.
template <class T>
void probabilities(T* s, const Scratch<T>& w, const Geometry& g, int64_t i0, int64_t rows) {
  small_gemm<T>(rows, g.block, g.hd, w.q.data() + i0 * g.hd, g.hd, 1, w.kt.data(), g.block, s, g.block, nullptr,
                w.bias.data(), false);
  softmax_rows(s, rows, g.block);
}

template <class T>
void forward_cpu(const Tensor& out, const Operand& Q, const Operand& K, const Operand& V, const T* keep,
                 const Geometry& g, double p, uint64_t seed, uint64_t offset) {
  T* o = out.data<T>();
  const int64_t QT = query_tile(g.block), ro = g.stride * g.H * g.hd;
  tile::for_each_task(g.B * g.H * g.G, [&] { return Scratch<T>(g, false); }, [&](Scratch<T>& w, int64_t t) {
    const int64_t c = t % g.G, h = (t / g.G) % g.H, b = t / (g.G * g.H);
    load_group<T>(w, Q, K, V, nullptr, keep, g, b, h, c);
    T* oc = o + ((b * g.S + g.first(c)) * g.H + h) * g.hd;
    for (int64_t i0 = 0; i0 < g.block; i0 += QT) {
      const int64_t rows = std::min(QT, g.block - i0);
      probabilities(w.p.data(), w, g, i0, rows);
      if (p > 0)
        apply_dropout(w.p.data(), rows, g.block, static_cast<uint64_t>((t * g.block + i0) * g.block), p, seed, offset);
      small_gemm<T>(rows, g.hd, g.block, w.p.data(), g.block, 1, w.v.data(), g.hd, w.rows.data(), g.hd, nullptr,
                    nullptr, false);
      unpack_rows(oc + i0 * ro, ro, w.rows.data(), rows, g.hd);
    }
  });
}

template <class T>
void backward_cpu(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Operand& Q,
                  const Operand& K, const Operand& V, const T* keep, const Geometry& g, double p, uint64_t seed,
                  uint64_t offset) {
  const int64_t QT = query_tile(g.block), ro = g.stride * g.H * g.hd;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(g.hd)));
  tile::for_each_task(g.B * g.H * g.G, [&] { return Scratch<T>(g, true); }, [&](Scratch<T>& w, int64_t t) {
    const int64_t c = t % g.G, h = (t / g.G) % g.H, b = t / (g.G * g.H);
    const int64_t at = ((b * g.S + g.first(c)) * g.H + h) * g.hd;  // group start in the contiguous tensors
    load_group<T>(w, Q, K, V, dout.data<T>(), keep, g, b, h, c);
    T* P = w.p.data();
    T* dP = w.dp.data();
    for (int64_t i0 = 0; i0 < g.block; i0 += QT) {
      const int64_t rows = std::min(QT, g.block - i0);
      const T* dO = w.dout.data() + i0 * g.hd;
      probabilities(P, w, g, i0, rows);
      // dP_drop = dO V^T, then dP = dropout'(dP_drop).
      small_gemm<T>(rows, g.block, g.hd, dO, g.hd, 1, w.vt.data(), g.block, dP, g.block, nullptr, nullptr, false);
      const uint64_t first = static_cast<uint64_t>((t * g.block + i0) * g.block);
      if (p > 0) apply_dropout(dP, rows, g.block, first, p, seed, offset);
      // dS = P (dP - D) / sqrt(hd), D_i = sum_j P_ij dP_ij; kept in dP.
      for (int64_t i = 0; i < rows; ++i) {
        const T* pr = P + i * g.block;
        T* dr = dP + i * g.block;
        T d = 0;
#pragma omp simd reduction(+ : d)
        for (int64_t j = 0; j < g.block; ++j) d += pr[j] * dr[j];
#pragma omp simd
        for (int64_t j = 0; j < g.block; ++j) dr[j] = pr[j] * (dr[j] - d) * scale;
      }
      // dQ = dS K (rows of this tile), dK += dS^T Q, dV += P_drop^T dO.
      small_gemm<T>(rows, g.hd, g.block, dP, g.block, 1, w.k.data(), g.hd, w.rows.data(), g.hd, nullptr, nullptr,
                    false);
      unpack_rows(dq.data<T>() + at + i0 * ro, ro, w.rows.data(), rows, g.hd);
      small_gemm<T>(g.block, g.hd, rows, dP, 1, g.block, w.q.data() + i0 * g.hd, g.hd, w.dk.data(), g.hd, nullptr,
                    nullptr, i0 > 0);
      if (p > 0) apply_dropout(P, rows, g.block, first, p, seed, offset);
      small_gemm<T>(g.block, g.hd, rows, P, 1, g.block, dO, g.hd, w.dv.data(), g.hd, nullptr, nullptr, i0 > 0);
    }
    unpack_rows(dk.data<T>() + at, ro, w.dk.data(), g.block, g.hd);
    unpack_rows(dv.data<T>() + at, ro, w.dv.data(), g.block, g.hd);
  });
}

// q/k/v with a unit head-dim stride (a contiguous copy otherwise).
Tensor unit_inner(const Tensor& t) { return t.strides()[3] == 1 || t.sizes()[3] == 1 ? t : t.contiguous_raw(); }

}  // namespace

Tensor block_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int64_t block, int64_t stride,
                       const Tensor& key_mask, double dropout_p, Generator* gen) {
  const char* op = "block_attention";
  check_floating(op, q_in);
  check_dim(op, q_in, 4, "q [B, S, H, hd]");
  for (const Tensor* t : {&k_in, &v_in}) {
    check_same_device(op, q_in, *t);
    check_same_dtype(op, q_in, *t);
    DIMIX_CHECK(t->sizes() == q_in.sizes(), op, ": q, k, v must have the same shape [B, S, H, hd], got q ",
                q_in.shape_str(), ", k ", k_in.shape_str(), ", v ", v_in.shape_str());
  }
  const int64_t B = q_in.sizes()[0], S = q_in.sizes()[1], H = q_in.sizes()[2], hd = q_in.sizes()[3];
  DIMIX_CHECK(block >= 1 && stride >= 1, op, ": block and stride must be >= 1, got block ", block, ", stride ", stride);
  DIMIX_CHECK(S % block == 0, op, ": sequence length S = ", S, " of q ", q_in.shape_str(),
              " is not divisible by block ", block);
  const int64_t G = S / block;
  DIMIX_CHECK(G % stride == 0, op, ": the number of groups S / block = ", S, " / ", block, " = ", G,
              " must be divisible by stride ", stride);
  DIMIX_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  Tensor keep;
  if (key_mask.defined()) {
    check_same_device(op, q_in, key_mask);
    DIMIX_CHECK(key_mask.dim() == 2 && key_mask.sizes()[0] == B && key_mask.sizes()[1] == S, op,
                ": expected key_mask [B, S] = [", B, ", ", S, "] for q ", q_in.shape_str(), ", got ",
                key_mask.shape_str());
    keep = cast_raw(key_mask, q_in.dtype());  // nonzero stays nonzero
  }
  const Geometry g{B, S, H, hd, block, stride, G};
  uint64_t seed = 0, offset = 0;
  if (dropout_p > 0) {
    Generator& gr = gen ? *gen : default_generator();
    seed = gr.seed();
    offset = gr.reserve(static_cast<uint64_t>(B * H * S * block));
  }
  const Tensor q = unit_inner(q_in), k = unit_inner(k_in), v = unit_inner(v_in);
  Tensor out = empty({B, S, H, hd}, q.dtype(), q.device());
  if (out.numel() == 0) return out;
  // CUDA, dense and long (block == S > 128): the flash kernels, which keep
  // the per-row logsumexp (and the output) for the backward instead of
  // recomputing them (cuda/flash_attention.cu).
  const bool flash = q.device().is_cuda() && block == S && S > 128;
  Tensor lse;
  if (flash) {
    lse = empty({B * H * S}, q.dtype(), q.device());
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                     int64_t, double, uint64_t, uint64_t)>("flash_attention_forward")(out, lse, q, k, v, keep, block,
                                                                                      stride, dropout_p, seed, offset);
  } else if (q.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double,
                     uint64_t, uint64_t)>("block_attention_forward")(out, q, k, v, keep, block, stride, dropout_p, seed,
                                                                      offset);
  } else {
    dispatch_float(q.dtype(), op, [&]<class T>() {
      forward_cpu<T>(out, operand(q), operand(k), operand(v), keep.defined() ? keep.data<T>() : nullptr, g, dropout_p,
                     seed, offset);
    });
  }
  if (needs_grad({q_in, k_in, v_in})) {
    const Tensor sq = q.detach(), sk = k.detach(), sv = v.detach();
    const Tensor saved_out = flash ? out.detach() : Tensor();  // detached: no cycle through out's own node
    record(out, op, {q_in, k_in, v_in}, [=](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor dout = grad.contiguous_raw();
      Tensor dq = empty(sq.sizes(), sq.dtype(), sq.device());
      Tensor dk = empty(sq.sizes(), sq.dtype(), sq.device());
      Tensor dv = empty(sq.sizes(), sq.dtype(), sq.device());
      if (flash) {
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double, uint64_t,
                         uint64_t)>("flash_attention_backward")(dq, dk, dv, dout, sq, sk, sv, saved_out, lse, keep,
                                                                block, stride, dropout_p, seed, offset);
      } else if (sq.device().is_cuda()) {
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, int64_t, int64_t, double, uint64_t, uint64_t)>(
            "block_attention_backward")(dq, dk, dv, dout, sq, sk, sv, keep, block, stride, dropout_p, seed, offset);
      } else {
        dispatch_float(sq.dtype(), "block_attention", [&]<class T>() {
          backward_cpu<T>(dq, dk, dv, dout, operand(sq), operand(sk), operand(sv),
                          keep.defined() ? keep.data<T>() : nullptr, g, dropout_p, seed, offset);
        });
      }
      return {dq, dk, dv};
    });
  }
  return out;
}

// ---- registry cases -------------------------------------------------------------------
namespace {
// q, k, v as slices of one fused [B, S, 3, H, hd] tensor (a QKV projection's output).
std::vector<Tensor> fused_qkv(Generator& g, DType t, const Shape& shape) {
  const Tensor qkv = randn({shape[0], shape[1], 3, shape[2], shape[3]}, t, &g);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < 3; ++i) {
    const Shape st = qkv.strides();
    Tensor view = qkv.as_strided(shape, {st[0], st[1], st[3], st[4]}, qkv.offset() + i * st[2]);
    view.set_requires_grad(true);
    out.push_back(view);
  }
  return out;
}
}  // namespace

DIMIX_REGISTER_OP_CASES({
    // Butterfly groups: S = 12, block 3, stride 2 (groups {0,2,4}, {1,3,5}, ...).
    {"block_attention/block3_stride2", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 12, 2, 3}, t), randn_input(g, {2, 12, 2, 3}, t),
                          randn_input(g, {2, 12, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 3, 2); }},
    // Dense: block = S, odd sizes.
    {"block_attention/dense", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {1, 7, 3, 5}, t), randn_input(g, {1, 7, 3, 5}, t),
                          randn_input(g, {1, 7, 3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 7, 1); }},
    // A key mask with zeros (one row of batch 1 fully masked in a group).
    {"block_attention/key_mask", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 1, 4}, t), randn_input(g, {2, 8, 1, 4}, t),
                          randn_input(g, {2, 8, 1, 4}, t)}; },
     [](const std::vector<Tensor>& x) {
       const Tensor mask = from_vector<int64_t>({1, 0, 1, 1, 0, 1, 1, 1,  0, 0, 1, 0, 1, 0, 0, 1}, {2, 8});
       return block_attention(x[0], x[1], x[2], 4, 2, mask);
     }},
    // Attention dropout from a fixed generator (the same mask in every call).
    {"block_attention/dropout", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 2, 3}, t), randn_input(g, {2, 8, 2, 3}, t),
                          randn_input(g, {2, 8, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       Generator gen(21);
       return block_attention(x[0], x[1], x[2], 4, 1, Tensor(), 0.3, &gen);
     }},
    // Non-contiguous q, k, v: slices of one fused QKV tensor, stride 3 groups.
    {"block_attention/fused_qkv_noncontig", [](Generator& g, DType t) { return fused_qkv(g, t, {2, 18, 2, 4}); },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 3, 3); }},
});

}  // namespace dimix
