// CUDA kernels of ops/block_attention: softmax attention within butterfly
// groups of tokens, "block_attention_forward" and "block_attention_backward".
//
// Letters as the op: B batch, S tokens, H heads, hd head dim, G = S / block
// groups; group c = a * stride + s holds tokens first(c) + j * stride, j <
// block; task t = (b * H + h) * G + c. q, k, v [B, S, H, hd] with unit
// head-dim stride (other strides free); out and the gradients contiguous;
// key_keep [B, S] in q's dtype (0 = masked: score - 1e6) or undefined.
// Scores s_ij = q_i . (k_j / sqrt(hd)) + bias_j; P = softmax_j; dropout of P
// at flat index (t * block + i) * block + j (philox_uniform < p drops, kept
// ones scaled by 1/(1-p)), exactly the CPU's draw.
//
// Part-1 kernels, flash-attention style so nothing block x block is stored:
//  forward: a warp per query row, lanes over the head dim; one pass over the
//    keys with an online max/sum, rescaling the output accumulator when the
//    max grows.
//  backward: a warp per query row recomputes its statistics (max m_i, sum
//    l_i, D_i = sum_j P_ij dP_ij) and writes dq_i and the statistics; then a
//    warp per key row gathers dk_j and dv_j over the group's queries in
//    order. No atomics: gradients are deterministic.
#include "core/rng.h"
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

constexpr double kMaskedScore = -1e6;
constexpr int kPerLane = 8;  // head dims per lane per pass: hd <= 256 in one pass

struct Geometry {
  int64_t B, S, H, hd, block, stride, G;
  __device__ int64_t first(int64_t c) const { return (c / stride) * block * stride + c % stride; }
};

// Element offsets of a [B, S, H, hd] operand (unit hd stride).
struct Strides {
  int64_t b, s, h;
  __device__ int64_t at(int64_t bb, int64_t tok, int64_t hh) const { return bb * b + tok * s + hh * h; }
};
Strides strides_of(const Tensor& t) { return {t.strides()[0], t.strides()[1], t.strides()[2]}; }

struct Dropout {
  double p;
  uint64_t seed, offset;
};

// One task's row i: (b, h, c) and token of slot i.
struct RowId {
  int64_t t, b, h, c, i;
};
__device__ __forceinline__ RowId row_id(int64_t r, const Geometry& g) {
  RowId id;
  id.t = r / g.block;
  id.i = r - id.t * g.block;
  id.c = id.t % g.G;
  id.h = (id.t / g.G) % g.H;
  id.b = id.t / (g.G * g.H);
  return id;
}

template <class T>
__device__ __forceinline__ T warp_dot(const T* a, const T* b, int64_t hd, int lane) {
  T s = 0;
  for (int64_t d = lane; d < hd; d += 32) s += a[d] * b[d];
  return warp_sum(s);
}

// Score of query q_i against key k_j (k scaled first, as the CPU's K^T/sqrt(hd)).
template <class T>
__device__ __forceinline__ T score(const T* qi, const T* kj, int64_t hd, T scale, int lane) {
  T s = 0;
  for (int64_t d = lane; d < hd; d += 32) s += qi[d] * (kj[d] * scale);
  return warp_sum(s);
}

template <class T>
__device__ __forceinline__ T key_bias(const T* keep, int64_t b, int64_t tok, int64_t S) {
  return keep && keep[b * S + tok] == T(0) ? T(kMaskedScore) : T(0);
}

// 1/(1-p) when element `index` is kept, 0 when dropped (1 without dropout).
template <class T>
__device__ __forceinline__ T keep_factor(const Dropout& dp, uint64_t index) {
  if (dp.p <= 0) return T(1);
  const T u = philox_uniform<T>(dp.seed, dp.offset, index);
  return u < static_cast<T>(dp.p) ? T(0) : static_cast<T>(1.0 / (1.0 - dp.p));
}

template <class T>
__global__ void block_attention_forward_kernel(T* out, const T* q, const T* k, const T* v, const T* keep, Geometry g,
                                               Strides sq, Strides sk, Strides sv, Dropout dp) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const int64_t rows = g.B * g.H * g.S;
  for (int64_t r = warp; r < rows; r += nwarps) {
    const RowId id = row_id(r, g);
    const int64_t f = g.first(id.c), tok_i = f + id.i * g.stride;
    const T* qi = q + sq.at(id.b, tok_i, id.h);
    T* o = out + ((id.b * g.S + tok_i) * g.H + id.h) * g.hd;
    for (int64_t d0 = 0; d0 < g.hd; d0 += 32 * kPerLane) {
      T acc[kPerLane];
      for (int e = 0; e < kPerLane; ++e) acc[e] = T(0);
      T m = -dm::infinity<T>(), l = 0;
      for (int64_t j = 0; j < g.block; ++j) {
        const int64_t tok_j = f + j * g.stride;
        const T s = score(qi, k + sk.at(id.b, tok_j, id.h), g.hd, scale, lane) + key_bias(keep, id.b, tok_j, g.S);
        // Online softmax: rescale what was summed under the old max.
        const T m_new = s > m ? s : m;
        const T rescale = m == m_new ? T(1) : dm::exp(m - m_new);
        const T e = dm::exp(s - m_new);
        l = l * rescale + e;
        m = m_new;
        const T w = e * keep_factor<T>(dp, static_cast<uint64_t>((id.t * g.block + id.i) * g.block + j));
        const T* vj = v + sv.at(id.b, tok_j, id.h);
        for (int c = 0; c < kPerLane; ++c) {
          const int64_t d = d0 + c * 32 + lane;
          acc[c] = acc[c] * rescale + (d < g.hd ? w * vj[d] : T(0));
        }
      }
      const T inv = T(1) / l;
      for (int c = 0; c < kPerLane; ++c) {
        const int64_t d = d0 + c * 32 + lane;
        if (d < g.hd) o[d] = acc[c] * inv;
      }
    }
  }
}

// Pass 1 of the backward, a warp per query row i: m_i, l_i, D_i into stats
// [rows, 3], and dq_i = sum_j dS_ij k_j with dS_ij = P_ij (dP_ij - D_i) / sqrt(hd),
// dP_ij = keep_ij * (dO_i . v_j).
template <class T>
__global__ void block_attention_backward_rows(T* dq, T* stats, const T* dout, const T* q, const T* k, const T* v,
                                              const T* keep, Geometry g, Strides sq, Strides sk, Strides sv,
                                              Dropout dp) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const int64_t rows = g.B * g.H * g.S;
  for (int64_t r = warp; r < rows; r += nwarps) {
    const RowId id = row_id(r, g);
    const int64_t f = g.first(id.c), tok_i = f + id.i * g.stride;
    const int64_t oi = ((id.b * g.S + tok_i) * g.H + id.h) * g.hd;
    const T* qi = q + sq.at(id.b, tok_i, id.h);
    const T* gi = dout + oi;
    const uint64_t base = static_cast<uint64_t>((id.t * g.block + id.i) * g.block);
    T m = -dm::infinity<T>(), l = 0;
    for (int64_t j = 0; j < g.block; ++j) {
      const int64_t tok_j = f + j * g.stride;
      online_add(m, l, score(qi, k + sk.at(id.b, tok_j, id.h), g.hd, scale, lane) + key_bias(keep, id.b, tok_j, g.S));
    }
    T D = 0;
    for (int64_t j = 0; j < g.block; ++j) {
      const int64_t tok_j = f + j * g.stride;
      const T P = dm::exp(score(qi, k + sk.at(id.b, tok_j, id.h), g.hd, scale, lane) +
                          key_bias(keep, id.b, tok_j, g.S) - m) / l;
      const T dP = keep_factor<T>(dp, base + j) * warp_dot(gi, v + sv.at(id.b, tok_j, id.h), g.hd, lane);
      D += P * dP;
    }
    if (lane == 0) {
      stats[3 * r] = m;
      stats[3 * r + 1] = l;
      stats[3 * r + 2] = D;
    }
    for (int64_t d0 = 0; d0 < g.hd; d0 += 32 * kPerLane) {
      T acc[kPerLane];
      for (int c = 0; c < kPerLane; ++c) acc[c] = T(0);
      for (int64_t j = 0; j < g.block; ++j) {
        const int64_t tok_j = f + j * g.stride;
        const T* kj = k + sk.at(id.b, tok_j, id.h);
        const T P = dm::exp(score(qi, kj, g.hd, scale, lane) + key_bias(keep, id.b, tok_j, g.S) - m) / l;
        const T dP = keep_factor<T>(dp, base + j) * warp_dot(gi, v + sv.at(id.b, tok_j, id.h), g.hd, lane);
        const T dS = P * (dP - D) * scale;
        for (int c = 0; c < kPerLane; ++c) {
          const int64_t d = d0 + c * 32 + lane;
          if (d < g.hd) acc[c] += dS * kj[d];
        }
      }
      for (int c = 0; c < kPerLane; ++c) {
        const int64_t d = d0 + c * 32 + lane;
        if (d < g.hd) dq[oi + d] = acc[c];
      }
    }
  }
}

// Pass 2, a warp per key row j: dk_j = sum_i dS_ij q_i, dv_j = sum_i keep_ij P_ij dO_i,
// over the queries i of j's group in order.
template <class T>
__global__ void block_attention_backward_keys(T* dk, T* dv, const T* stats, const T* dout, const T* q, const T* k,
                                              const T* v, const T* keep, Geometry g, Strides sq, Strides sk,
                                              Strides sv, Dropout dp) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const int64_t rows = g.B * g.H * g.S;
  for (int64_t r = warp; r < rows; r += nwarps) {
    const RowId id = row_id(r, g);  // id.i is the key slot j here
    const int64_t j = id.i, f = g.first(id.c), tok_j = f + j * g.stride;
    const T* kj = k + sk.at(id.b, tok_j, id.h);
    const T* vj = v + sv.at(id.b, tok_j, id.h);
    const T bias = key_bias(keep, id.b, tok_j, g.S);
    const int64_t oj = ((id.b * g.S + tok_j) * g.H + id.h) * g.hd;
    for (int64_t d0 = 0; d0 < g.hd; d0 += 32 * kPerLane) {
      T ak[kPerLane], av[kPerLane];
      for (int c = 0; c < kPerLane; ++c) ak[c] = av[c] = T(0);
      for (int64_t i = 0; i < g.block; ++i) {
        const int64_t tok_i = f + i * g.stride, ri = id.t * g.block + i;
        const T* qi = q + sq.at(id.b, tok_i, id.h);
        const T* gi = dout + ((id.b * g.S + tok_i) * g.H + id.h) * g.hd;
        const T P = dm::exp(score(qi, kj, g.hd, scale, lane) + bias - stats[3 * ri]) / stats[3 * ri + 1];
        const T kf = keep_factor<T>(dp, static_cast<uint64_t>(ri * g.block + j));
        const T dP = kf * warp_dot(gi, vj, g.hd, lane);
        const T dS = P * (dP - stats[3 * ri + 2]) * scale;
        const T pd = P * kf;
        for (int c = 0; c < kPerLane; ++c) {
          const int64_t d = d0 + c * 32 + lane;
          if (d < g.hd) {
            ak[c] += dS * qi[d];
            av[c] += pd * gi[d];
          }
        }
      }
      for (int c = 0; c < kPerLane; ++c) {
        const int64_t d = d0 + c * 32 + lane;
        if (d < g.hd) {
          dk[oj + d] = ak[c];
          dv[oj + d] = av[c];
        }
      }
    }
  }
}

Geometry geometry_of(const Tensor& q, int64_t block, int64_t stride) {
  const int64_t S = q.sizes()[1];
  return {q.sizes()[0], S, q.sizes()[2], q.sizes()[3], block, stride, S / block};
}

void check_operands(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep) {
  for (const Tensor* t : {&q, &k, &v})
    DIMIX_CHECK(t->dim() == 4 && (t->strides()[3] == 1 || t->sizes()[3] == 1), op,
                ": CUDA kernel expects [B, S, H, hd] operands with unit head-dim stride");
  DIMIX_CHECK(!keep.defined() || (keep.is_contiguous() && keep.dtype() == q.dtype()), op,
              ": expected key_keep contiguous in q's dtype");
}

void block_attention_forward_cuda(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& keep, int64_t block, int64_t stride, double p, uint64_t seed,
                                  uint64_t offset) {
  check_operands("block_attention", q, k, v, keep);
  DIMIX_CHECK(out.is_contiguous(), "block_attention: expected a contiguous output");
  DeviceContext& ctx = context_of(out);
  if (out.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    block_attention_forward_kernel<T><<<warp_grid(g.B * g.H * g.S, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v), keep.defined() ? ptr<T>(keep) : nullptr, g, strides_of(q),
        strides_of(k), strides_of(v), Dropout{p, seed, offset});
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void block_attention_backward_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep,
                                   int64_t block, int64_t stride, double p, uint64_t seed, uint64_t offset) {
  check_operands("block_attention backward", q, k, v, keep);
  DIMIX_CHECK(dq.is_contiguous() && dk.is_contiguous() && dv.is_contiguous() && dout.is_contiguous(),
              "block_attention backward: expected contiguous gradients");
  DeviceContext& ctx = context_of(dq);
  if (dq.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  const int64_t rows = g.B * g.H * g.S;
  const Tensor stats = empty({rows, 3}, q.dtype(), q.device());
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    const T* kp = keep.defined() ? ptr<T>(keep) : nullptr;
    block_attention_backward_rows<T><<<warp_grid(rows, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dq), ptr<T>(stats), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), kp, g, strides_of(q), strides_of(k),
        strides_of(v), Dropout{p, seed, offset});
    DIMIX_CUDA_LAUNCH_CHECK();
    block_attention_backward_keys<T><<<warp_grid(rows, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dk), ptr<T>(dv), ptr<T>(stats), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), kp, g, strides_of(q),
        strides_of(k), strides_of(v), Dropout{p, seed, offset});
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("block_attention_forward", block_attention_forward_cuda);
DIMIX_REGISTER_KERNEL("block_attention_backward", block_attention_backward_cuda);

}  // namespace dimix::cuda
