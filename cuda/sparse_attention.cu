// CUDA kernels of ops/sparse_attention (Sparsifiner's attention over a kept
// key list per query row): "sparse_attention_forward" and
// "sparse_attention_backward".
//
// B batch, H heads, N tokens, hd head dim, R dense rows (every key), M = N - R
// sparse rows with K keys each (indices [B, H, M, K], valid: checked by the
// op on the CPU path only). q, k, v, out and grads [B, H, N, hd] contiguous;
// key_keep [B, N] u8 or undefined (masked keys' scores get -1e6, as the CPU);
// probs_dense [B, H, R, N] / probs_sparse [B, H, M, K] written by the forward.
//
// A warp per query row; lanes split the head dim (dot products by warp
// shuffle, outputs in registers, up to kMaxHd / 32 per lane a pass).
// Backward: dq per row as on the CPU; dk and dv are scatter-adds over every
// row that kept a key, done with atomicAdd: correct, but the order of the
// additions (so the last bits) may differ run to run. A keyed-sort pass would
// make them deterministic; left for part 2.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

constexpr double kMaskedScore = 1e6;
constexpr int kPerLane = 8;  // registers per lane: head dims up to 256 a pass

template <class T>
struct Rows {
  const int64_t* indices;  // [BH, M, K]
  const uint8_t* keep;     // [B, N] or null
  T* probs_dense;          // [BH, R, N]
  T* probs_sparse;         // [BH, M, K]
  int64_t H, N, hd, R, M, K;

  __device__ int64_t count(int64_t i) const { return i < R ? N : K; }
  __device__ int64_t key(int64_t bh, int64_t i, int64_t j) const { return i < R ? j : indices[(bh * M + (i - R)) * K + j]; }
  __device__ T* probs(int64_t bh, int64_t i) const {
    return i < R ? probs_dense + (bh * R + i) * N : probs_sparse + (bh * M + (i - R)) * K;
  }
};

template <class T>
__device__ __forceinline__ T warp_dot(const T* a, const T* b, int64_t hd, int lane) {
  T s = 0;
  for (int64_t d = lane; d < hd; d += 32) s += a[d] * b[d];
  return warp_sum(s);
}

template <class T>
__global__ void sparse_attention_forward_kernel(T* out, const T* q, const T* k, const T* v, Rows<T> L, int64_t BH,
                                                T scale) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const int64_t hd = L.hd;
  for (int64_t row = warp; row < BH * L.N; row += nwarps) {
    const int64_t bh = row / L.N, i = row - bh * L.N, nk = L.count(i);
    const T* qi = q + row * hd;
    const T* kb = k + bh * L.N * hd;
    const T* vb = v + bh * L.N * hd;
    const uint8_t* keep = L.keep ? L.keep + (bh / L.H) * L.N : nullptr;
    T* p = L.probs(bh, i);
    T* o = out + row * hd;
    if (nk == 0) {
      for (int64_t d = lane; d < hd; d += 32) o[d] = T(0);
      continue;
    }
    T m = -dm::infinity<T>();
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t key = L.key(bh, i, j);
      T s = scale * warp_dot(qi, kb + key * hd, hd, lane);
      if (keep && !keep[key]) s -= T(kMaskedScore);
      if (lane == 0) p[j] = s;
      m = s > m ? s : m;
    }
    __syncwarp();
    T sum = 0;
    for (int64_t j = lane; j < nk; j += 32) {
      const T e = dm::exp(p[j] - m);
      p[j] = e;
      sum += e;
    }
    const T inv = T(1) / warp_sum(sum);
    for (int64_t j = lane; j < nk; j += 32) p[j] *= inv;
    __syncwarp();
    for (int64_t d0 = 0; d0 < hd; d0 += 32 * kPerLane) {
      T acc[kPerLane];
      for (int c = 0; c < kPerLane; ++c) acc[c] = T(0);
      for (int64_t j = 0; j < nk; ++j) {
        const T pj = p[j];
        const T* vk = vb + L.key(bh, i, j) * hd;
        for (int c = 0; c < kPerLane; ++c) {
          const int64_t d = d0 + c * 32 + lane;
          if (d < hd) acc[c] += pj * vk[d];
        }
      }
      for (int c = 0; c < kPerLane; ++c) {
        const int64_t d = d0 + c * 32 + lane;
        if (d < hd) o[d] = acc[c];
      }
    }
  }
}

// With p the row's probabilities and g its output gradient:
//   ds_j = g.v_j, t = sum_j p_j ds_j, s_j = scale p_j (ds_j - t),
//   dq_i = sum_j s_j k_j, dk_j += s_j q_i, dv_j += p_j g_i.
template <class T>
__global__ void sparse_attention_backward_kernel(T* dq, T* dk, T* dv, const T* gout, const T* q, const T* k,
                                                 const T* v, Rows<T> L, int64_t BH, T scale) {
  DIMIX_WARP_IDS(lane, warp, nwarps);
  const int64_t hd = L.hd;
  for (int64_t row = warp; row < BH * L.N; row += nwarps) {
    const int64_t bh = row / L.N, i = row - bh * L.N, nk = L.count(i);
    const T* kb = k + bh * L.N * hd;
    const T* vb = v + bh * L.N * hd;
    T* dkb = dk + bh * L.N * hd;
    T* dvb = dv + bh * L.N * hd;
    const T* gi = gout + row * hd;
    const T* qi = q + row * hd;
    const T* p = L.probs(bh, i);
    T t = 0;
    for (int64_t j = 0; j < nk; ++j) t += p[j] * warp_dot(gi, vb + L.key(bh, i, j) * hd, hd, lane);
    for (int64_t d0 = 0; d0 < hd; d0 += 32 * kPerLane) {
      T acc[kPerLane];
      for (int c = 0; c < kPerLane; ++c) acc[c] = T(0);
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t key = L.key(bh, i, j);
        const T ds = warp_dot(gi, vb + key * hd, hd, lane);
        const T sj = scale * p[j] * (ds - t);
        for (int c = 0; c < kPerLane; ++c) {
          const int64_t d = d0 + c * 32 + lane;
          if (d < hd) {
            acc[c] += sj * kb[key * hd + d];
            atomicAdd(dkb + key * hd + d, sj * qi[d]);
            atomicAdd(dvb + key * hd + d, p[j] * gi[d]);
          }
        }
      }
      for (int c = 0; c < kPerLane; ++c) {
        const int64_t d = d0 + c * 32 + lane;
        if (d < hd) dq[row * hd + d] = acc[c];
      }
    }
  }
}

template <class T>
Rows<T> rows_of(const Tensor& q, const Tensor& indices, const Tensor& keep, const Tensor& probs_dense,
                const Tensor& probs_sparse, int64_t R) {
  Rows<T> L;
  L.indices = ptr<int64_t>(indices);
  L.keep = keep.defined() ? ptr<uint8_t>(keep) : nullptr;
  L.probs_dense = ptr<T>(probs_dense);
  L.probs_sparse = ptr<T>(probs_sparse);
  L.H = q.sizes()[1];
  L.N = q.sizes()[2];
  L.hd = q.sizes()[3];
  L.R = R;
  L.M = L.N - R;
  L.K = indices.sizes()[3];
  return L;
}

void check_inputs(const char* op, std::initializer_list<const Tensor*> ts, const Tensor& keep) {
  for (const Tensor* t : ts) DIMIX_CHECK(t->is_contiguous(), op, ": CUDA kernel expects contiguous tensors");
  DIMIX_CHECK(!keep.defined() || (keep.dtype() == DType::u8 && keep.is_contiguous()), op,
              ": expected key_keep as contiguous u8");
}

void sparse_attention_forward_cuda(const Tensor& out, const Tensor& probs_dense, const Tensor& probs_sparse,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& indices,
                                   const Tensor& keep, int64_t R, double scale) {
  check_inputs("sparse_attention", {&out, &probs_dense, &probs_sparse, &q, &k, &v, &indices}, keep);
  DeviceContext& ctx = context_of(out);
  const int64_t BH = q.sizes()[0] * q.sizes()[1], N = q.sizes()[2];
  if (BH * N == 0) return;
  dispatch_float(q.dtype(), "sparse_attention", [&]<class T>() {
    sparse_attention_forward_kernel<T><<<warp_grid(BH * N, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v), rows_of<T>(q, indices, keep, probs_dense, probs_sparse, R), BH,
        static_cast<T>(scale));
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void sparse_attention_backward_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& gout,
                                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& indices,
                                    const Tensor& keep, const Tensor& probs_dense, const Tensor& probs_sparse,
                                    int64_t R, double scale) {
  check_inputs("sparse_attention backward", {&dq, &dk, &dv, &gout, &q, &k, &v, &indices}, keep);
  DeviceContext& ctx = context_of(dq);
  const int64_t BH = q.sizes()[0] * q.sizes()[1], N = q.sizes()[2];
  if (BH * N == 0) return;
  dispatch_float(q.dtype(), "sparse_attention", [&]<class T>() {
    sparse_attention_backward_kernel<T><<<warp_grid(BH * N, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dq), ptr<T>(dk), ptr<T>(dv), ptr<T>(gout), ptr<T>(q), ptr<T>(k), ptr<T>(v),
        rows_of<T>(q, indices, keep, probs_dense, probs_sparse, R), BH, static_cast<T>(scale));
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("sparse_attention_forward", sparse_attention_forward_cuda);
DIMIX_REGISTER_KERNEL("sparse_attention_backward", sparse_attention_backward_cuda);

}  // namespace dimix::cuda
