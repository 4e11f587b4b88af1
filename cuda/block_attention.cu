// CUDA kernels of ops/block_attention: softmax attention within butterfly
// groups of tokens, "block_attention_forward" and "block_attention_backward"
// (letters, layouts, score and dropout rule: cuda/attention_common.cuh).
//
// Three families, picked per call by the registered entry points below:
//  1. part-1 simple kernels ("block_attention_forward_simple",
//     "block_attention_backward_simple"), written to be obviously right and
//     kept as the oracles of the others: a warp per query row, one pass over
//     the keys with an online max/sum; the backward recomputes per query
//     row (dq and the row statistics), then per key row (dk, dv);
//  2. group-fused kernels (this file, part 2): one thread block per few
//     (batch, head, group) tasks, the tasks' K and V (and for the backward Q
//     and dO) staged in shared memory once, a thread per query row (and in
//     the backward's second phase a thread per key row), the butterfly
//     permutation folded into the row addresses, the padding mask and the
//     Philox dropout applied in the kernel. For the butterfly blocks (8..64)
//     and small dense sequences; assumes block <= 256, hd <= 64 and the
//     backward's staged rows (4 (hd+1) + 4 values per row) fitting in shared
//     memory;
//  3. flash kernels (cuda/flash_attention.cu) for bigger groups and dense
//     attention, hd <= 64; the op calls them directly when block == S > 128
//     so the forward's per-row logsumexp is kept for the backward.
// A shape outside all of these (hd > 64 with block > 256) runs the simple
// kernels; DIMIX_CUDA_SIMPLE=1 (cuda/tiling.cuh) forces them everywhere.
//
// Every family's backward is deterministic (no atomics): sums over a group's
// queries or keys run in a fixed order.
#include <algorithm>

#include "cuda/attention_common.cuh"
#include "cuda/tiling.cuh"

namespace dimix::cuda {
namespace attention {
namespace {

constexpr int kPerLane = 8;  // head dims per lane per pass: hd <= 256 in one pass

// ---- 1. the part-1 simple kernels ------------------------------------------------------------

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


// ---- 2. group-fused kernels --------------------------------------------------------------------
//
// A block takes `tpc` consecutive tasks (tpc * block query rows, at most
// 256). Rows are staged at pitch HD + 1 (HD = hd rounded up to 8, 16, 32 or
// 64, the padding zero, so the unrolled loops need no bounds): a warp
// reading one row of several tasks, or its own rows, hits distinct banks.
// Score arithmetic is the same expression in forward and backward, s =
// sum_d q[d] * (k[d] * scale) + bias, so the backward's P is the forward's.

constexpr int kGroupRows = 128;  // query rows per block aimed at

// Stages rows [0, tpc * block) of an operand (task t0 + row / block, slot row % block)
// into rows at pitch HD + 1; rows of tasks past the end and dims past hd are zero.
template <class T, int HD>
__device__ __forceinline__ void stage_group_rows(T* dst, const T* src, const Strides& st, const Geometry& g, int64_t t0,
                                                 int rows) {
  constexpr int P = HD + 1;
  const int block = static_cast<int>(g.block);
  for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
    const int row = e / HD, d = e - row * HD;
    const int64_t t = t0 + row / block;
    T v = T(0);
    if (t < g.tasks() && d < g.hd) {
      const TaskId id = task_id(t, g);
      const int64_t tok = g.first(id.c) + static_cast<int64_t>(row % block) * g.stride;
      v = src[st.at(id.b, tok, id.h) + d];
    }
    dst[row * P + d] = v;
  }
}

template <class T>
__device__ __forceinline__ void stage_group_bias(T* dst, const T* keep, const Geometry& g, int64_t t0, int rows) {
  const int block = static_cast<int>(g.block);
  for (int row = threadIdx.x; row < rows; row += blockDim.x) {
    const int64_t t = t0 + row / block;
    T v = T(0);
    if (t < g.tasks()) {
      const TaskId id = task_id(t, g);
      v = key_bias(keep, id.b, g.first(id.c) + static_cast<int64_t>(row % block) * g.stride, g.S);
    }
    dst[row] = v;
  }
}

template <class T, int HD>
__global__ void __launch_bounds__(256)
    attention_group_forward(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, const T* __restrict__ keep, Geometry g, Strides sq, Strides sk,
                            Strides sv, Dropout dp, int tpc) {
  constexpr int P = HD + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int block = static_cast<int>(g.block), rows = tpc * block;
  T* ks = reinterpret_cast<T*>(smem_raw);
  T* vs = ks + rows * P;
  T* bs = vs + rows * P;
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const Strides so = contiguous_strides_of(g);
  for (int64_t t0 = static_cast<int64_t>(blockIdx.x) * tpc; t0 < g.tasks();
       t0 += static_cast<int64_t>(gridDim.x) * tpc) {
    __syncthreads();  // the previous tasks' readers are done
    stage_group_rows<T, HD>(ks, k, sk, g, t0, rows);
    stage_group_rows<T, HD>(vs, v, sv, g, t0, rows);
    stage_group_bias(bs, keep, g, t0, rows);
    __syncthreads();
    const int row = threadIdx.x;
    const int tl = row / block, i = row - tl * block;
    const int64_t t = t0 + tl;
    if (row >= rows || t >= g.tasks()) continue;
    const TaskId id = task_id(t, g);
    const int64_t tok_i = g.first(id.c) + static_cast<int64_t>(i) * g.stride;
    T qr[HD], acc[HD];
    const T* qi = q + sq.at(id.b, tok_i, id.h);
#pragma unroll
    for (int d = 0; d < HD; ++d) {
      qr[d] = d < g.hd ? qi[d] : T(0);
      acc[d] = T(0);
    }
    const T* kr = ks + tl * block * P;
    const T* vr = vs + tl * block * P;
    const T* br = bs + tl * block;
    const uint64_t base = static_cast<uint64_t>((t * g.block + i) * g.block);
    T m = -dm::infinity<T>(), l = T(0);
    for (int j = 0; j < block; ++j) {
      T s = T(0);
#pragma unroll
      for (int d = 0; d < HD; ++d) s += qr[d] * (kr[j * P + d] * scale);
      s += br[j];
      if (s > m) {  // a new max: rescale what was summed under the old one
        const T r = m == -dm::infinity<T>() ? T(0) : dm::exp(m - s);
        l *= r;
#pragma unroll
        for (int d = 0; d < HD; ++d) acc[d] *= r;
        m = s;
      }
      const T e = dm::exp(s - m);
      l += e;
      const T w = e * keep_factor<T>(dp, base + j);
#pragma unroll
      for (int d = 0; d < HD; ++d) acc[d] += w * vr[j * P + d];
    }
    const T inv = T(1) / l;
    T* o = out + so.at(id.b, tok_i, id.h);
#pragma unroll
    for (int d = 0; d < HD; ++d)
      if (d < g.hd) o[d] = acc[d] * inv;
  }
}

// Backward, per block of tasks, two phases over the staged Q, K, V, dO:
//  phase 1, a thread per query row i: m_i, l_i (online), D_i = sum_j P_ij dP_ij
//    with dP_ij = keep_ij (dO_i . v_j), then dq_i = sum_j dS_ij k_j,
//    dS_ij = P_ij (dP_ij - D_i) / sqrt(hd); (m, l, D) go to shared memory;
//  phase 2, a thread per key row j: dk_j = sum_i dS_ij q_i and
//    dv_j = sum_i keep_ij P_ij dO_i over the task's queries in order.
template <class T, int HD>
__global__ void __launch_bounds__(256)
    attention_group_backward(T* __restrict__ dq, T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout,
                             const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                             const T* __restrict__ keep, Geometry g, Strides sq, Strides sk, Strides sv, Dropout dp,
                             int tpc) {
  constexpr int P = HD + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int block = static_cast<int>(g.block), rows = tpc * block;
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* ks = qs + rows * P;
  T* vs = ks + rows * P;
  T* gs = vs + rows * P;  // dO
  T* bs = gs + rows * P;
  T* ms = bs + rows;
  T* ls = ms + rows;
  T* Ds = ls + rows;
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const Strides so = contiguous_strides_of(g);
  for (int64_t t0 = static_cast<int64_t>(blockIdx.x) * tpc; t0 < g.tasks();
       t0 += static_cast<int64_t>(gridDim.x) * tpc) {
    __syncthreads();
    stage_group_rows<T, HD>(qs, q, sq, g, t0, rows);
    stage_group_rows<T, HD>(ks, k, sk, g, t0, rows);
    stage_group_rows<T, HD>(vs, v, sv, g, t0, rows);
    stage_group_rows<T, HD>(gs, dout, so, g, t0, rows);
    stage_group_bias(bs, keep, g, t0, rows);
    __syncthreads();
    const int row = threadIdx.x;
    const int tl = row / block, slot = row - tl * block;
    const int64_t t = t0 + tl;
    const bool active = row < rows && t < g.tasks();
    const T* kr = ks + tl * block * P;
    const T* vr = vs + tl * block * P;
    const T* qr = qs + tl * block * P;
    const T* gr = gs + tl * block * P;
    const T* br = bs + tl * block;
    TaskId id{0, 0, 0};
    int64_t tok = 0;
    if (active) {
      id = task_id(t, g);
      tok = g.first(id.c) + static_cast<int64_t>(slot) * g.stride;
    }
    // Phase 1: this thread is query i = slot.
    if (active) {
      const int i = slot;
      const OwnRow<T, HD> qi = qr + i * P;
      const OwnRow<T, HD> gi = gr + i * P;
      const uint64_t base = static_cast<uint64_t>((t * g.block + i) * g.block);
      auto score_of = [&](int j) {
        T s = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += qi[d] * (kr[j * P + d] * scale);
        return s + br[j];
      };
      auto dprob_of = [&](int j) {
        T s = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += gi[d] * vr[j * P + d];
        return keep_factor<T>(dp, base + j) * s;
      };
      T m = -dm::infinity<T>(), l = T(0);
      for (int j = 0; j < block; ++j) online_add(m, l, score_of(j));
      T D = T(0);
      for (int j = 0; j < block; ++j) D += dm::exp(score_of(j) - m) / l * dprob_of(j);
      T acc[HD];
#pragma unroll
      for (int d = 0; d < HD; ++d) acc[d] = T(0);
      for (int j = 0; j < block; ++j) {
        const T dS = dm::exp(score_of(j) - m) / l * (dprob_of(j) - D) * scale;
#pragma unroll
        for (int d = 0; d < HD; ++d) acc[d] += dS * kr[j * P + d];
      }
      T* o = dq + so.at(id.b, tok, id.h);
#pragma unroll
      for (int d = 0; d < HD; ++d)
        if (d < g.hd) o[d] = acc[d];
      ms[row] = m;
      ls[row] = l;
      Ds[row] = D;
    }
    __syncthreads();
    // Phase 2: this thread is key j = slot.
    if (active) {
      const int j = slot;
      const OwnRow<T, HD> kj = kr + j * P;
      const OwnRow<T, HD> vj = vr + j * P;
      const T bias = br[j];
      const T* mr = ms + tl * block;
      const T* lr = ls + tl * block;
      const T* Dr = Ds + tl * block;
      T ak[HD], av[HD];
#pragma unroll
      for (int d = 0; d < HD; ++d) ak[d] = av[d] = T(0);
      for (int i = 0; i < block; ++i) {
        const T* qi = qr + i * P;
        const T* gi = gr + i * P;
        T s = T(0), gv = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += qi[d] * (kj[d] * scale);
        s += bias;
#pragma unroll
        for (int d = 0; d < HD; ++d) gv += gi[d] * vj[d];
        const T Pij = dm::exp(s - mr[i]) / lr[i];
        const T kf = keep_factor<T>(dp, static_cast<uint64_t>((t * g.block + i) * g.block + j));
        const T dS = Pij * (kf * gv - Dr[i]) * scale;
        const T pd = Pij * kf;
#pragma unroll
        for (int d = 0; d < HD; ++d) {
          ak[d] += dS * qi[d];
          av[d] += pd * gi[d];
        }
      }
      T* ok = dk + so.at(id.b, tok, id.h);
      T* ov = dv + so.at(id.b, tok, id.h);
#pragma unroll
      for (int d = 0; d < HD; ++d)
        if (d < g.hd) {
          ok[d] = ak[d];
          ov[d] = av[d];
        }
    }
  }
}

int head_dim_bucket(int64_t hd) { return hd <= 8 ? 8 : hd <= 16 ? 16 : hd <= 32 ? 32 : 64; }

// Tasks per block and shared bytes of the group kernels; tpc = 0 when they do
// not apply (block > 256, hd > 64, or one task's rows do not fit).
struct GroupPlan {
  int tpc = 0, threads = 0, HD = 0;
  size_t smem = 0;
};
GroupPlan plan_group(const Geometry& g, size_t elem, size_t budget, bool backward) {
  GroupPlan p;
  if (g.block > 256 || g.hd > kFlashMaxHeadDim || g.hd < 1) return p;
  p.HD = head_dim_bucket(g.hd);
  const size_t per_row = backward ? (4 * (p.HD + 1) + 4) * elem : (2 * (p.HD + 1) + 1) * elem;
  int tpc = static_cast<int>(std::max<int64_t>(1, kGroupRows / g.block));
  while (tpc > 1 && static_cast<size_t>(tpc) * g.block * per_row > budget) --tpc;
  if (static_cast<size_t>(tpc) * g.block * per_row > budget) return p;
  p.tpc = tpc;
  p.threads = static_cast<int>((tpc * g.block + 31) / 32 * 32);
  p.smem = static_cast<size_t>(tpc) * g.block * per_row;
  return p;
}

template <class Fn>
void with_head_dim(int HD, Fn&& fn) {
  switch (HD) {
    case 8: fn.template operator()<8>(); break;
    case 16: fn.template operator()<16>(); break;
    case 32: fn.template operator()<32>(); break;
    default: fn.template operator()<64>(); break;
  }
}

void group_forward(const GroupPlan& p, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& keep, const Geometry& g, const Dropout& dp) {
  DeviceContext& ctx = context_of(out);
  const unsigned grid = tile_grid((g.tasks() + p.tpc - 1) / p.tpc, ctx);
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    with_head_dim(p.HD, [&]<int HD>() {
      auto* kernel = &attention_group_forward<T, HD>;
      allow_smem(kernel, p.smem);
      kernel<<<grid, p.threads, p.smem, ctx.stream>>>(ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v),
                                                      keep.defined() ? ptr<T>(keep) : nullptr, g, strides_of(q),
                                                      strides_of(k), strides_of(v), dp, p.tpc);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

void group_backward(const GroupPlan& p, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep, const Geometry& g,
                    const Dropout& dp) {
  DeviceContext& ctx = context_of(dq);
  const unsigned grid = tile_grid((g.tasks() + p.tpc - 1) / p.tpc, ctx);
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    with_head_dim(p.HD, [&]<int HD>() {
      auto* kernel = &attention_group_backward<T, HD>;
      allow_smem(kernel, p.smem);
      kernel<<<grid, p.threads, p.smem, ctx.stream>>>(ptr<T>(dq), ptr<T>(dk), ptr<T>(dv), ptr<T>(dout), ptr<T>(q),
                                                      ptr<T>(k), ptr<T>(v), keep.defined() ? ptr<T>(keep) : nullptr,
                                                      g, strides_of(q), strides_of(k), strides_of(v), dp, p.tpc);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace

// ---- entry points ---------------------------------------------------------------------------

void simple_forward(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep,
                    const Geometry& g, const Dropout& dp) {
  DeviceContext& ctx = context_of(out);
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    block_attention_forward_kernel<T><<<warp_grid(g.B * g.H * g.S, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v), keep.defined() ? ptr<T>(keep) : nullptr, g, strides_of(q),
        strides_of(k), strides_of(v), dp);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void simple_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& keep, const Geometry& g, const Dropout& dp) {
  DeviceContext& ctx = context_of(dq);
  const int64_t rows = g.B * g.H * g.S;
  const Tensor stats = empty({rows, 3}, q.dtype(), q.device());
  dispatch_float(q.dtype(), "block_attention", [&]<class T>() {
    const T* kp = keep.defined() ? ptr<T>(keep) : nullptr;
    block_attention_backward_rows<T><<<warp_grid(rows, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dq), ptr<T>(stats), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), kp, g, strides_of(q), strides_of(k),
        strides_of(v), dp);
    DIMIX_CUDA_LAUNCH_CHECK();
    block_attention_backward_keys<T><<<warp_grid(rows, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dk), ptr<T>(dv), ptr<T>(stats), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), kp, g, strides_of(q),
        strides_of(k), strides_of(v), dp);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace attention

namespace {
using namespace attention;

void check_forward_args(const char* op, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& keep, int64_t block, int64_t stride) {
  check_operands(op, q, k, v, keep);
  DIMIX_CHECK(out.is_contiguous() && out.sizes() == q.sizes(), op, ": expected a contiguous output of q's shape");
  const int64_t S = q.sizes()[1];
  DIMIX_CHECK(block >= 1 && stride >= 1 && S % block == 0 && (S / block) % stride == 0, op, ": block ", block,
              " and stride ", stride, " do not tile S = ", S);
}

void check_backward_args(const char* op, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                         const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep, int64_t block,
                         int64_t stride) {
  check_forward_args(op, dout, q, k, v, keep, block, stride);
  DIMIX_CHECK(dq.is_contiguous() && dk.is_contiguous() && dv.is_contiguous() && dq.sizes() == q.sizes() &&
                  dk.sizes() == q.sizes() && dv.sizes() == q.sizes(),
              op, ": expected contiguous gradients of q's shape");
}

void block_attention_forward_simple_cuda(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& keep, int64_t block, int64_t stride, double p, uint64_t seed,
                                         uint64_t offset) {
  check_forward_args("block_attention", out, q, k, v, keep, block, stride);
  context_of(out);
  if (out.numel() == 0) return;
  simple_forward(out, q, k, v, keep, geometry_of(q, block, stride), Dropout{p, seed, offset});
}

void block_attention_backward_simple_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                          const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep,
                                          int64_t block, int64_t stride, double p, uint64_t seed, uint64_t offset) {
  check_backward_args("block_attention backward", dq, dk, dv, dout, q, k, v, keep, block, stride);
  context_of(dq);
  if (dq.numel() == 0) return;
  simple_backward(dq, dk, dv, dout, q, k, v, keep, geometry_of(q, block, stride), Dropout{p, seed, offset});
}

// The op's entry points: group-fused kernels for groups that fit, flash
// kernels for the rest (the backward then recomputes the forward's out and
// logsumexp first), the simple kernels beyond both.
void block_attention_forward_cuda(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& keep, int64_t block, int64_t stride, double p, uint64_t seed,
                                  uint64_t offset) {
  check_forward_args("block_attention", out, q, k, v, keep, block, stride);
  DeviceContext& ctx = context_of(out);
  if (out.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  const Dropout dp{p, seed, offset};
  if (use_simple_kernels()) return simple_forward(out, q, k, v, keep, g, dp);
  const GroupPlan plan = plan_group(g, dtype_size(q.dtype()), smem_budget(ctx), false);
  if (plan.tpc > 0) return group_forward(plan, out, q, k, v, keep, g, dp);
  if (flash_supported(g, q.dtype(), ctx)) {
    const Tensor lse = empty({g.tasks() * g.block}, q.dtype(), q.device());
    return flash_forward(out, lse, q, k, v, keep, g, dp);
  }
  simple_forward(out, q, k, v, keep, g, dp);
}

void block_attention_backward_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep,
                                   int64_t block, int64_t stride, double p, uint64_t seed, uint64_t offset) {
  check_backward_args("block_attention backward", dq, dk, dv, dout, q, k, v, keep, block, stride);
  DeviceContext& ctx = context_of(dq);
  if (dq.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  const Dropout dp{p, seed, offset};
  if (use_simple_kernels()) return simple_backward(dq, dk, dv, dout, q, k, v, keep, g, dp);
  const GroupPlan plan = plan_group(g, dtype_size(q.dtype()), smem_budget(ctx), true);
  if (plan.tpc > 0) return group_backward(plan, dq, dk, dv, dout, q, k, v, keep, g, dp);
  if (flash_supported(g, q.dtype(), ctx)) {
    const Tensor out = empty(q.sizes(), q.dtype(), q.device());
    const Tensor lse = empty({g.tasks() * g.block}, q.dtype(), q.device());
    flash_forward(out, lse, q, k, v, keep, g, dp);
    return flash_backward(dq, dk, dv, dout, q, k, v, out, lse, keep, g, dp);
  }
  simple_backward(dq, dk, dv, dout, q, k, v, keep, g, dp);
}

}  // namespace

DIMIX_REGISTER_KERNEL("block_attention_forward", block_attention_forward_cuda);
DIMIX_REGISTER_KERNEL("block_attention_backward", block_attention_backward_cuda);
DIMIX_REGISTER_KERNEL("block_attention_forward_simple", block_attention_forward_simple_cuda);
DIMIX_REGISTER_KERNEL("block_attention_backward_simple", block_attention_backward_simple_cuda);

}  // namespace dimix::cuda
