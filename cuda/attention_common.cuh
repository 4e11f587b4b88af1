// What the attention kernels of cuda/block_attention.cu (part-1 simple
// kernels, the group-fused kernels) and cuda/flash_attention.cu (flash-style
// kernels for big groups and dense attention) share: the group geometry,
// operand strides, the key-mask bias, the dropout rule, and the entry points
// one file calls in the other.
//
// Letters as ops/block_attention: B batch, S tokens, H heads, hd head dim,
// G = S / block groups; group c = a * stride + s holds tokens first(c) + j *
// stride, j < block; task t = (b * H + h) * G + c; query row r = t * block + i.
// q, k, v [B, S, H, hd] with unit head-dim stride (other strides free); out,
// dout and the gradients contiguous; key_keep [B, S] in q's dtype (0 = masked:
// score - 1e6, as the LRA code) or undefined.
// Scores s_ij = q_i . (k_j / sqrt(hd)) + bias_j; P = softmax_j; dropout of P
// at flat index (t * block + i) * block + j (philox_uniform < p drops, kept
// ones scaled by 1/(1-p)), exactly the CPU's draw.
#pragma once
#include <type_traits>

#include "core/rng.h"
#include "cuda/common.cuh"

namespace dimix::cuda::attention {

constexpr double kMaskedScore = -1e6;

struct Geometry {
  int64_t B, S, H, hd, block, stride, G;
  __host__ __device__ int64_t first(int64_t c) const { return (c / stride) * block * stride + c % stride; }
  __host__ __device__ int64_t tasks() const { return B * H * G; }
};

// Element offsets of a [B, S, H, hd] operand (unit hd stride).
struct Strides {
  int64_t b, s, h;
  __host__ __device__ int64_t at(int64_t bb, int64_t tok, int64_t hh) const { return bb * b + tok * s + hh * h; }
};
inline Strides strides_of(const Tensor& t) { return {t.strides()[0], t.strides()[1], t.strides()[2]}; }
// The contiguous [B, S, H, hd] layout (out, dout, gradients).
__host__ __device__ inline Strides contiguous_strides_of(const Geometry& g) { return {g.S * g.H * g.hd, g.H * g.hd, g.hd}; }

struct Dropout {
  double p;
  uint64_t seed, offset;
};

// A task's (b, h, c).
struct TaskId {
  int64_t b, h, c;
};
__device__ __forceinline__ TaskId task_id(int64_t t, const Geometry& g) {
  return {t / (g.G * g.H), (t / g.G) % g.H, t % g.G};
}

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

// A pointer to the thread's own row in shared memory. Those rows are
// loop-invariant, so the compiler would keep them in registers; for wide
// rows (hd 64 in f32) that plus the accumulators exceeds 255 registers and
// spills, so wide rows are read through volatile (re-read from shared
// memory, which is cheap: the pitch makes the reads conflict-free).
template <class T, int HD>
using OwnRow = std::conditional_t<(HD * sizeof(T) > 128), const volatile T*, const T*>;

inline Geometry geometry_of(const Tensor& q, int64_t block, int64_t stride) {
  const int64_t S = q.sizes()[1];
  return {q.sizes()[0], S, q.sizes()[2], q.sizes()[3], block, stride, S / block};
}

inline void check_operands(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep) {
  for (const Tensor* t : {&q, &k, &v})
    DIMIX_CHECK(t->dim() == 4 && (t->strides()[3] == 1 || t->sizes()[3] == 1) && t->sizes() == q.sizes(), op,
                ": CUDA kernel expects [B, S, H, hd] operands of one shape with unit head-dim stride");
  DIMIX_CHECK(!keep.defined() || (keep.is_contiguous() && keep.dtype() == q.dtype()), op,
              ": expected key_keep contiguous in q's dtype");
}

// ---- entry points shared between the two files ----------------------------------------
// The part-1 kernels (cuda/block_attention.cu).
void simple_forward(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& keep,
                    const Geometry& g, const Dropout& dp);
void simple_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& keep, const Geometry& g, const Dropout& dp);

// The flash kernels (cuda/flash_attention.cu) handle head dims up to this,
// when their shared memory fits the device (flash_supported).
constexpr int64_t kFlashMaxHeadDim = 64;
bool flash_supported(const Geometry& g, DType dtype, const DeviceContext& ctx);
// out [B, S, H, hd] and lse [B * H * S] (row r = t * block + i, q's dtype:
// m_i + log l_i of the row's softmax) for any geometry; needs flash_supported.
void flash_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& keep, const Geometry& g, const Dropout& dp);
// Gradients from the saved out and lse; needs flash_supported.
void flash_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                    const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& keep,
                    const Geometry& g, const Dropout& dp);

}  // namespace dimix::cuda::attention
