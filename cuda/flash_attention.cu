// Flash-style fused attention (FlashAttention-2, Dao 2023) for dense
// attention (block = S, stride = 1) and any group too big for the group-fused
// kernels of cuda/block_attention.cu: "flash_attention_forward" and
// "flash_attention_backward" (letters, layouts, score and dropout rule:
// cuda/attention_common.cuh; the geometry is general, dense is block = S).
//
// Nothing block x block is ever stored:
//  forward: a block of kQ threads, a thread per query row, walks the group's
//    keys in tiles of kK rows staged in shared memory, keeping the row's
//    running max m, sum l and output accumulator in registers (online
//    softmax: rescaled when m grows). It writes the output and, for the
//    backward, only lse_i = m_i + log l_i per row;
//  backward: D_i = dO_i . O_i (one thread per row; equals sum_j P_ij dP_ij,
//    dropout included), then P_ij = exp(s_ij - lse_i) is recomputed tile by
//    tile in two kernels, so that every gradient row has one owner and is
//    summed in a fixed order (deterministic, no atomics):
//      dk/dv: a thread per key row j, query tiles staged:
//        dv_j = sum_i keep_ij P_ij dO_i,  dk_j = sum_i dS_ij q_i
//      dq:    a thread per query row i, key tiles staged:
//        dq_i = sum_j dS_ij k_j,  dS_ij = P_ij (keep_ij dO_i.v_j - D_i) / sqrt(hd).
//
// Assumptions: hd <= 64 (HD = hd rounded up to 8/16/32/64, padding zero;
// accumulators live in registers: HD values per thread in the forward and
// the dq kernel, 2 HD in the dk/dv kernel); the thread's own query or key row
// sits in shared memory at pitch HD + 1 (conflict-free), staged tiles at
// pitch HD (every thread reads the same row: a broadcast); the shared memory
// (at most ~66 KiB in f32, ~133 KiB in f64) fits the device (flash_supported).
// Otherwise the entry points run the simple kernels (plus a row-statistics
// kernel for lse).
// The score is s = sum_d q[d] * (k[d] * scale) + bias in every kernel, so the
// backward's P is bit-for-bit the forward's.
#include <algorithm>

#include "cuda/attention_common.cuh"
#include "cuda/tiling.cuh"

namespace dimix::cuda {
namespace attention {
namespace {

constexpr int kQ = 128;  // query rows per forward block: a thread each
constexpr int kK = 64;   // rows per staged tile
// Rows (threads) per backward block, whose own rows sit in shared memory:
// fewer for wide rows, so that f32 with hd 64 stays at ~66 KiB (three blocks
// per H100 SM) and f64 fits an A100.
template <class T, int HD>
constexpr int own_rows() {
  return HD * sizeof(T) >= 256 ? 64 : 128;
}
template <class T, int HD>
constexpr size_t smem_kv_bytes() {
  return (2 * own_rows<T, HD>() * (HD + 1) + 2 * kK * HD + 2 * kK) * sizeof(T);
}
template <class T, int HD>
constexpr size_t smem_q_bytes() {
  return (2 * own_rows<T, HD>() * (HD + 1) + 2 * kK * HD + kK) * sizeof(T);
}
template <class T, int HD>
constexpr size_t smem_forward_bytes() {
  return (2 * kK * HD + kK) * sizeof(T);
}

// Stages rows [r0, r0 + kK) of task t's group from src (rows past block are
// zero), times `mul`, at pitch HD; and the key bias of those rows if `bias`.
template <class T, int HD>
__device__ __forceinline__ void stage_tile(T* dst, const T* src, const Strides& st, const Geometry& g, const TaskId& id,
                                           int64_t r0, T mul) {
  const int64_t first = g.first(id.c);
  for (int e = threadIdx.x; e < kK * HD; e += blockDim.x) {
    const int row = e / HD, d = e - row * HD;
    const int64_t j = r0 + row;
    T v = T(0);
    if (j < g.block && d < g.hd) v = src[st.at(id.b, first + j * g.stride, id.h) + d] * mul;
    dst[e] = v;
  }
}

template <class T>
__device__ __forceinline__ void stage_bias(T* dst, const T* keep, const Geometry& g, const TaskId& id, int64_t r0) {
  for (int row = threadIdx.x; row < kK; row += blockDim.x) {
    const int64_t j = r0 + row;
    dst[row] = j < g.block ? key_bias(keep, id.b, g.first(id.c) + j * g.stride, g.S) : T(0);
  }
}

// Per-row vectors (lse, D) of query rows [r0, r0 + kK) of task t.
template <class T>
__device__ __forceinline__ void stage_row_values(T* dst, const T* src, const Geometry& g, int64_t t, int64_t r0) {
  for (int row = threadIdx.x; row < kK; row += blockDim.x) {
    const int64_t i = r0 + row;
    dst[row] = i < g.block ? src[t * g.block + i] : T(0);
  }
}

// This block's own rows (task t, slots r0 + row, one per thread), at pitch HD + 1.
template <class T, int HD>
__device__ __forceinline__ void stage_own(T* dst, const T* src, const Strides& st, const Geometry& g, const TaskId& id,
                                          int64_t r0) {
  constexpr int P = HD + 1;
  const int64_t first = g.first(id.c);
  for (int e = threadIdx.x; e < own_rows<T, HD>() * HD; e += blockDim.x) {
    const int row = e / HD, d = e - row * HD;
    const int64_t j = r0 + row;
    T v = T(0);
    if (j < g.block && d < g.hd) v = src[st.at(id.b, first + j * g.stride, id.h) + d];
    dst[row * P + d] = v;
  }
}

template <class T, int HD>
__global__ void __launch_bounds__(kQ)
    flash_forward_kernel(T* __restrict__ out, T* __restrict__ lse, const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, const T* __restrict__ keep, Geometry g, Strides sq, Strides sk,
                         Strides sv, Dropout dp) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* ks = reinterpret_cast<T*>(smem_raw);  // K tile, already scaled by 1/sqrt(hd)
  T* vs = ks + kK * HD;
  T* bs = vs + kK * HD;
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const Strides so = contiguous_strides_of(g);
  const int64_t qtiles = (g.block + kQ - 1) / kQ;
  for (int64_t item = blockIdx.x; item < g.tasks() * qtiles; item += gridDim.x) {
    const int64_t t = item / qtiles, i = (item % qtiles) * kQ + threadIdx.x;
    const TaskId id = task_id(t, g);
    const bool active = i < g.block;
    const int64_t tok_i = g.first(id.c) + (active ? i : 0) * g.stride;
    T qr[HD], acc[HD];
    const T* qi = q + sq.at(id.b, tok_i, id.h);
#pragma unroll
    for (int d = 0; d < HD; ++d) {
      qr[d] = active && d < g.hd ? qi[d] : T(0);
      acc[d] = T(0);
    }
    T m = -dm::infinity<T>(), l = T(0);
    const uint64_t base = static_cast<uint64_t>((t * g.block + (active ? i : 0)) * g.block);
    for (int64_t j0 = 0; j0 < g.block; j0 += kK) {
      __syncthreads();  // everyone is done with the previous tile
      stage_tile<T, HD>(ks, k, sk, g, id, j0, scale);
      stage_tile<T, HD>(vs, v, sv, g, id, j0, T(1));
      stage_bias(bs, keep, g, id, j0);
      __syncthreads();
      if (!active) continue;
      const int n = static_cast<int>(g.block - j0 < kK ? g.block - j0 : kK);
      for (int jj = 0; jj < n; ++jj) {
        T s = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += qr[d] * ks[jj * HD + d];
        s += bs[jj];
        if (s > m) {
          const T r = m == -dm::infinity<T>() ? T(0) : dm::exp(m - s);
          l *= r;
#pragma unroll
          for (int d = 0; d < HD; ++d) acc[d] *= r;
          m = s;
        }
        const T e = dm::exp(s - m);
        l += e;
        const T w = e * keep_factor<T>(dp, base + static_cast<uint64_t>(j0 + jj));
#pragma unroll
        for (int d = 0; d < HD; ++d) acc[d] += w * vs[jj * HD + d];
      }
    }
    if (active) {
      const T inv = T(1) / l;
      T* o = out + so.at(id.b, tok_i, id.h);
#pragma unroll
      for (int d = 0; d < HD; ++d)
        if (d < g.hd) o[d] = acc[d] * inv;
      lse[t * g.block + i] = m + dm::log(l);
    }
  }
}

// D[r] = dO_r . O_r for every query row r = t * block + i.
template <class T>
__global__ void flash_row_dot(T* __restrict__ D, const T* __restrict__ dout, const T* __restrict__ out, Geometry g) {
  const Strides so = contiguous_strides_of(g);
  DIMIX_GRID_STRIDE(r, g.tasks() * g.block) {
    const int64_t t = r / g.block, i = r - t * g.block;
    const TaskId id = task_id(t, g);
    const int64_t at = so.at(id.b, g.first(id.c) + i * g.stride, id.h);
    T s = T(0);
    for (int64_t d = 0; d < g.hd; ++d) s += dout[at + d] * out[at + d];
    D[r] = s;
  }
}

// dk, dv: a thread per key row j of a tile of own_rows keys; query tiles staged.
template <class T, int HD>
__global__ void __launch_bounds__(own_rows<T, HD>())
    flash_backward_kv(T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout, const T* __restrict__ q,
                      const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ lse,
                      const T* __restrict__ Dv, const T* __restrict__ keep, Geometry g, Strides sq, Strides sk,
                      Strides sv, Dropout dp) {
  constexpr int P = HD + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int R = own_rows<T, HD>();
  T* ko = reinterpret_cast<T*>(smem_raw);  // own keys, raw
  T* vo = ko + R * P;                        // own values
  T* qs = vo + R * P;                        // query tile
  T* gs = qs + kK * HD;                      // dO tile
  T* lt = gs + kK * HD;                      // lse of the tile's queries
  T* Dt = lt + kK;                           // D of the tile's queries
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const Strides so = contiguous_strides_of(g);
  const int64_t ktiles = (g.block + R - 1) / R;
  for (int64_t item = blockIdx.x; item < g.tasks() * ktiles; item += gridDim.x) {
    const int64_t t = item / ktiles, j0 = (item % ktiles) * R, j = j0 + threadIdx.x;
    const TaskId id = task_id(t, g);
    const bool active = j < g.block;
    const int64_t tok_j = g.first(id.c) + (active ? j : 0) * g.stride;
    __syncthreads();
    stage_own<T, HD>(ko, k, sk, g, id, j0);
    stage_own<T, HD>(vo, v, sv, g, id, j0);
    const T bias = active ? key_bias(keep, id.b, tok_j, g.S) : T(0);
    const OwnRow<T, HD> kj = ko + threadIdx.x * P;
    const OwnRow<T, HD> vj = vo + threadIdx.x * P;
    T ak[HD], av[HD];
#pragma unroll
    for (int d = 0; d < HD; ++d) ak[d] = av[d] = T(0);
    for (int64_t i0 = 0; i0 < g.block; i0 += kK) {
      __syncthreads();
      stage_tile<T, HD>(qs, q, sq, g, id, i0, T(1));
      stage_tile<T, HD>(gs, dout, so, g, id, i0, T(1));
      stage_row_values(lt, lse, g, t, i0);
      stage_row_values(Dt, Dv, g, t, i0);
      __syncthreads();
      if (!active) continue;
      const int n = static_cast<int>(g.block - i0 < kK ? g.block - i0 : kK);
      for (int ii = 0; ii < n; ++ii) {
        const T* qi = qs + ii * HD;
        const T* gi = gs + ii * HD;
        T s = T(0), gv = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += qi[d] * (kj[d] * scale);
        s += bias;
#pragma unroll
        for (int d = 0; d < HD; ++d) gv += gi[d] * vj[d];
        const T Pij = dm::exp(s - lt[ii]);
        const T kf = keep_factor<T>(dp, static_cast<uint64_t>((t * g.block + i0 + ii) * g.block + j));
        const T dS = Pij * (kf * gv - Dt[ii]) * scale;
        const T pd = Pij * kf;
#pragma unroll
        for (int d = 0; d < HD; ++d) {
          ak[d] += dS * qi[d];
          av[d] += pd * gi[d];
        }
      }
    }
    if (active) {
      T* ok = dk + so.at(id.b, tok_j, id.h);
      T* ov = dv + so.at(id.b, tok_j, id.h);
#pragma unroll
      for (int d = 0; d < HD; ++d)
        if (d < g.hd) {
          ok[d] = ak[d];
          ov[d] = av[d];
        }
    }
  }
}

// dq: a thread per query row i of a tile of own_rows queries; key tiles staged.
template <class T, int HD>
__global__ void __launch_bounds__(own_rows<T, HD>())
    flash_backward_q(T* __restrict__ dq, const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, const T* __restrict__ lse, const T* __restrict__ Dv,
                     const T* __restrict__ keep, Geometry g, Strides sq, Strides sk, Strides sv, Dropout dp) {
  constexpr int P = HD + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int R = own_rows<T, HD>();
  T* qo = reinterpret_cast<T*>(smem_raw);  // own queries
  T* go = qo + R * P;                        // own dO rows
  T* ks = go + R * P;                        // key tile, raw
  T* vs = ks + kK * HD;                      // value tile
  T* bs = vs + kK * HD;                      // key bias of the tile
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  const Strides so = contiguous_strides_of(g);
  const int64_t qtiles = (g.block + R - 1) / R;
  for (int64_t item = blockIdx.x; item < g.tasks() * qtiles; item += gridDim.x) {
    const int64_t t = item / qtiles, i0 = (item % qtiles) * R, i = i0 + threadIdx.x;
    const TaskId id = task_id(t, g);
    const bool active = i < g.block;
    const int64_t tok_i = g.first(id.c) + (active ? i : 0) * g.stride;
    __syncthreads();
    stage_own<T, HD>(qo, q, sq, g, id, i0);
    stage_own<T, HD>(go, dout, so, g, id, i0);
    const OwnRow<T, HD> qi = qo + threadIdx.x * P;
    const OwnRow<T, HD> gi = go + threadIdx.x * P;
    const T lse_i = active ? lse[t * g.block + i] : T(0);
    const T D_i = active ? Dv[t * g.block + i] : T(0);
    const uint64_t base = static_cast<uint64_t>((t * g.block + (active ? i : 0)) * g.block);
    T acc[HD];
#pragma unroll
    for (int d = 0; d < HD; ++d) acc[d] = T(0);
    for (int64_t j0 = 0; j0 < g.block; j0 += kK) {
      __syncthreads();
      stage_tile<T, HD>(ks, k, sk, g, id, j0, T(1));
      stage_tile<T, HD>(vs, v, sv, g, id, j0, T(1));
      stage_bias(bs, keep, g, id, j0);
      __syncthreads();
      if (!active) continue;
      const int n = static_cast<int>(g.block - j0 < kK ? g.block - j0 : kK);
      for (int jj = 0; jj < n; ++jj) {
        const T* kj = ks + jj * HD;
        const T* vj = vs + jj * HD;
        T s = T(0), gv = T(0);
#pragma unroll
        for (int d = 0; d < HD; ++d) s += qi[d] * (kj[d] * scale);
        s += bs[jj];
#pragma unroll
        for (int d = 0; d < HD; ++d) gv += gi[d] * vj[d];
        const T Pij = dm::exp(s - lse_i);
        const T kf = keep_factor<T>(dp, base + static_cast<uint64_t>(j0 + jj));
        const T dS = Pij * (kf * gv - D_i) * scale;
#pragma unroll
        for (int d = 0; d < HD; ++d) acc[d] += dS * kj[d];
      }
    }
    if (active) {
      T* o = dq + so.at(id.b, tok_i, id.h);
#pragma unroll
      for (int d = 0; d < HD; ++d)
        if (d < g.hd) o[d] = acc[d];
    }
  }
}

// lse of every query row by a warp per row (the simple kernels' statistics
// pass), for the hd > 64 fallback of "flash_attention_forward".
template <class T>
__global__ void row_logsumexp(T* lse, const T* q, const T* k, const T* keep, Geometry g, Strides sq, Strides sk) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const T scale = static_cast<T>(1.0 / ::sqrt(static_cast<double>(g.hd)));
  for (int64_t r = warp; r < g.tasks() * g.block; r += nwarps) {
    const RowId id = row_id(r, g);
    const int64_t f = g.first(id.c);
    const T* qi = q + sq.at(id.b, f + id.i * g.stride, id.h);
    T m = -dm::infinity<T>(), l = 0;
    for (int64_t j = 0; j < g.block; ++j) {
      const int64_t tok_j = f + j * g.stride;
      online_add(m, l, score(qi, k + sk.at(id.b, tok_j, id.h), g.hd, scale, lane) + key_bias(keep, id.b, tok_j, g.S));
    }
    if (lane == 0) lse[r] = m + dm::log(l);
  }
}

template <class Fn>
void with_head_dim(int64_t hd, Fn&& fn) {
  if (hd <= 8) fn.template operator()<8>();
  else if (hd <= 16) fn.template operator()<16>();
  else if (hd <= 32) fn.template operator()<32>();
  else fn.template operator()<64>();
}

unsigned items_grid(int64_t items, const DeviceContext& ctx) { return tile_grid(items, ctx, 32); }

}  // namespace

bool flash_supported(const Geometry& g, DType dtype, const DeviceContext& ctx) {
  if (g.hd < 1 || g.hd > kFlashMaxHeadDim) return false;
  size_t need = 0;
  dispatch_float(dtype, "flash_attention", [&]<class T>() {
    with_head_dim(g.hd, [&]<int HD>() {
      need = std::max({smem_forward_bytes<T, HD>(), smem_kv_bytes<T, HD>(), smem_q_bytes<T, HD>()});
    });
  });
  return need <= smem_budget(ctx, size_t(1) << 30);
}

void flash_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& keep, const Geometry& g, const Dropout& dp) {
  DIMIX_CHECK(g.hd <= kFlashMaxHeadDim, "flash_attention: head dim ", g.hd, " > ", kFlashMaxHeadDim);
  DeviceContext& ctx = context_of(out);
  const int64_t items = g.tasks() * ((g.block + kQ - 1) / kQ);
  dispatch_float(q.dtype(), "flash_attention", [&]<class T>() {
    with_head_dim(g.hd, [&]<int HD>() {
      const size_t smem = smem_forward_bytes<T, HD>();
      auto* kernel = &flash_forward_kernel<T, HD>;
      allow_smem(kernel, smem);
      kernel<<<items_grid(items, ctx), kQ, smem, ctx.stream>>>(ptr<T>(out), ptr<T>(lse), ptr<T>(q), ptr<T>(k),
                                                              ptr<T>(v), keep.defined() ? ptr<T>(keep) : nullptr, g,
                                                              strides_of(q), strides_of(k), strides_of(v), dp);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

void flash_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                    const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& keep,
                    const Geometry& g, const Dropout& dp) {
  DIMIX_CHECK(g.hd <= kFlashMaxHeadDim, "flash_attention backward: head dim ", g.hd, " > ", kFlashMaxHeadDim);
  DeviceContext& ctx = context_of(dq);
  const int64_t rows = g.tasks() * g.block;
  const Tensor D = empty({rows}, q.dtype(), q.device());
  dispatch_float(q.dtype(), "flash_attention", [&]<class T>() {
    const T* kp = keep.defined() ? ptr<T>(keep) : nullptr;
    flash_row_dot<T><<<grid_for(rows, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(D), ptr<T>(dout), ptr<T>(out), g);
    DIMIX_CUDA_LAUNCH_CHECK();
    with_head_dim(g.hd, [&]<int HD>() {
      constexpr int R = own_rows<T, HD>();
      const int64_t items = g.tasks() * ((g.block + R - 1) / R);
      const size_t smem_kv = smem_kv_bytes<T, HD>();
      auto* kv = &flash_backward_kv<T, HD>;
      allow_smem(kv, smem_kv);
      kv<<<items_grid(items, ctx), R, smem_kv, ctx.stream>>>(ptr<T>(dk), ptr<T>(dv), ptr<T>(dout), ptr<T>(q),
                                                             ptr<T>(k), ptr<T>(v), ptr<T>(lse), ptr<T>(D), kp, g,
                                                             strides_of(q), strides_of(k), strides_of(v), dp);
      DIMIX_CUDA_LAUNCH_CHECK();
      const size_t smem_q = smem_q_bytes<T, HD>();
      auto* qk = &flash_backward_q<T, HD>;
      allow_smem(qk, smem_q);
      qk<<<items_grid(items, ctx), R, smem_q, ctx.stream>>>(ptr<T>(dq), ptr<T>(dout), ptr<T>(q), ptr<T>(k),
                                                            ptr<T>(v), ptr<T>(lse), ptr<T>(D), kp, g, strides_of(q),
                                                            strides_of(k), strides_of(v), dp);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace attention

namespace {
using namespace attention;

void check_args(const char* op, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                const Tensor& v, const Tensor& keep, int64_t block, int64_t stride) {
  check_operands(op, q, k, v, keep);
  DIMIX_CHECK(out.is_contiguous() && out.sizes() == q.sizes(), op, ": expected a contiguous output of q's shape");
  const int64_t B = q.sizes()[0], S = q.sizes()[1], H = q.sizes()[2];
  DIMIX_CHECK(block >= 1 && stride >= 1 && S % block == 0 && (S / block) % stride == 0, op, ": block ", block,
              " and stride ", stride, " do not tile S = ", S);
  DIMIX_CHECK(lse.is_contiguous() && lse.numel() == B * H * S && lse.dtype() == q.dtype(), op,
              ": expected lse of ", B * H * S, " elements in q's dtype, got ", lse.shape_str());
}

// out [B, S, H, hd], lse [B * H * S] (row (t, i) = t * block + i).
void flash_attention_forward_cuda(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& keep, int64_t block, int64_t stride, double p,
                                  uint64_t seed, uint64_t offset) {
  check_args("flash_attention", out, lse, q, k, v, keep, block, stride);
  DeviceContext& ctx = context_of(out);
  if (out.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  const Dropout dp{p, seed, offset};
  if (!use_simple_kernels() && flash_supported(g, q.dtype(), ctx)) return flash_forward(out, lse, q, k, v, keep, g, dp);
  simple_forward(out, q, k, v, keep, g, dp);
  dispatch_float(q.dtype(), "flash_attention", [&]<class T>() {
    row_logsumexp<T><<<warp_grid(g.tasks() * g.block, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(lse), ptr<T>(q), ptr<T>(k), keep.defined() ? ptr<T>(keep) : nullptr, g, strides_of(q), strides_of(k));
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void flash_attention_backward_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                   const Tensor& lse, const Tensor& keep, int64_t block, int64_t stride, double p,
                                   uint64_t seed, uint64_t offset) {
  const char* op = "flash_attention backward";
  check_args(op, out, lse, q, k, v, keep, block, stride);
  DIMIX_CHECK(dout.is_contiguous() && dout.sizes() == q.sizes() && dq.is_contiguous() && dk.is_contiguous() &&
                  dv.is_contiguous() && dq.sizes() == q.sizes() && dk.sizes() == q.sizes() && dv.sizes() == q.sizes(),
              op, ": expected contiguous gradients of q's shape");
  DeviceContext& ctx = context_of(dq);
  if (dq.numel() == 0) return;
  const Geometry g = geometry_of(q, block, stride);
  const Dropout dp{p, seed, offset};
  if (!use_simple_kernels() && flash_supported(g, q.dtype(), ctx))
    return flash_backward(dq, dk, dv, dout, q, k, v, out, lse, keep, g, dp);
  simple_backward(dq, dk, dv, dout, q, k, v, keep, g, dp);
}

}  // namespace

DIMIX_REGISTER_KERNEL("flash_attention_forward", flash_attention_forward_cuda);
DIMIX_REGISTER_KERNEL("flash_attention_backward", flash_attention_backward_cuda);

}  // namespace dimix::cuda
