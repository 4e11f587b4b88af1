// What every cuda/*.cu file includes: the checked-call macros, the per-device
// context (stream, cuBLAS handle, error word), launch helpers, the strided
// index calculator and dtype dispatch for kernels.
//
// Conventions of this folder:
//   - every registered kernel function begins with `DeviceContext& ctx =
//     context_of(t)`, which makes t's device current and gives its stream;
//   - every launch goes on ctx.stream and is followed by DIMIX_CUDA_LAUNCH_CHECK();
//   - element loops are grid-stride loops over int64 indices, so any size is
//     handled by any grid (grids are capped by grid_for);
//   - operands may have any strides unless a comment says otherwise; the
//     fast paths for contiguous operands are optimisations, never assumptions.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/kernel_table.h"
#include "core/tensor.h"
#include "cuda/runtime.h"

namespace dimix::cuda {

// ---- errors ----------------------------------------------------------------------
[[noreturn]] void fail_cuda(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line);
// After a launch: reports a launch error (bad configuration, no kernel image
// for this GPU), and in DIMIX_CUDA_SYNC=1 mode waits and reports faults.
void check_launch(cudaStream_t stream, const char* file, int line);

}  // namespace dimix::cuda

#define DIMIX_CUDA_CHECK(expr)                                                         \
  do {                                                                                 \
    const cudaError_t dimix_e_ = (expr);                                               \
    if (dimix_e_ != cudaSuccess) ::dimix::cuda::fail_cuda(dimix_e_, #expr, __FILE__, __LINE__); \
  } while (0)
#define DIMIX_CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                              \
    const cublasStatus_t dimix_s_ = (expr);                                                         \
    if (dimix_s_ != CUBLAS_STATUS_SUCCESS) ::dimix::cuda::fail_cublas(dimix_s_, #expr, __FILE__, __LINE__); \
  } while (0)
// Uses the `ctx` in scope (every kernel function has one).
#define DIMIX_CUDA_LAUNCH_CHECK() ::dimix::cuda::check_launch(ctx.stream, __FILE__, __LINE__)

namespace dimix::cuda {

// ---- the per-device context ----------------------------------------------------------
struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  int num_sms = 1;
  // A device word kernels set when they meet a bad index, and its pinned
  // host mirror (see IndexChecker below).
  unsigned long long* error_word = nullptr;
  unsigned long long* error_host = nullptr;
};

// Makes `device` current on the calling thread and returns its context
// (created on first use). Error if there is no such device.
DeviceContext& context(int device);
inline DeviceContext& context_of(const Tensor& t) {
  DIMIX_CHECK(t.device().is_cuda(), "cuda kernel: expected a CUDA tensor, got one on ", t.device().str());
  return context(t.device().index);
}
// The device's cuBLAS handle, bound to its stream, with a workspace; math
// mode follows set_allow_tf32.
cublasHandle_t cublas_handle(DeviceContext& ctx);

// ---- launch helpers ---------------------------------------------------------------------
constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n items: enough to fill the device,
// capped so huge n does not make huge grids (the loop covers the rest).
inline unsigned grid_for(int64_t n, const DeviceContext& ctx, int threads = kThreads) {
  const int64_t want = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(ctx.num_sms) * 32;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}
// Blocks for kernels that give each row a warp (kThreads / 32 rows a block).
inline unsigned warp_grid(int64_t rows, const DeviceContext& ctx) {
  const int64_t want = (rows + kThreads / 32 - 1) / (kThreads / 32);
  const int64_t cap = static_cast<int64_t>(ctx.num_sms) * 32;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}
// The warp's lane, its global index and the number of warps in the grid, for
// loops that hand rows to warps.
#define DIMIX_WARP_IDS(lane, warp, nwarps)                                                    \
  const int lane = threadIdx.x & 31;                                                          \
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;    \
  const int64_t nwarps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5
#define DIMIX_GRID_STRIDE(i, n)                                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);              \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- strided indexing --------------------------------------------------------------------
// Maps a row-major linear index over `sizes` to an element offset in each of
// N operands. Built on the host like core/strided.h's collapse_layout (size-1
// dims dropped, dims contiguous for every operand merged), so typical
// layouts collapse to one or two dims.
constexpr int kMaxDims = 12;
template <int N>
struct StridedIndex {
  int ndim = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];

  __host__ __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t s = sizes[d];
      const int64_t q = linear / s;
      const int64_t i = linear - q * s;
      linear = q;
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

template <int N>
StridedIndex<N> make_strided_index(const Shape& sizes, const std::array<const Shape*, N>& strides, const char* op) {
  StridedIndex<N> r;
  const int64_t nd = static_cast<int64_t>(sizes.size());
  for (int k = 0; k < N; ++k)
    DIMIX_CHECK(static_cast<int64_t>(strides[k]->size()) == nd, op, ": operand ", k, " has ", strides[k]->size(),
                " strides for a ", nd, "-d shape");
  for (int64_t d = 0; d < nd; ++d) {
    if (sizes[d] == 1) continue;
    if (r.ndim > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        if (r.strides[k][r.ndim - 1] != (*strides[k])[d] * sizes[d]) { mergeable = false; break; }
      if (mergeable) {
        r.sizes[r.ndim - 1] *= sizes[d];
        for (int k = 0; k < N; ++k) r.strides[k][r.ndim - 1] = (*strides[k])[d];
        continue;
      }
    }
    DIMIX_CHECK(r.ndim < kMaxDims, op, ": shape ", shape_str(sizes), " has more than ", kMaxDims,
                " non-mergeable dims, more than the CUDA kernels index");
    r.sizes[r.ndim] = sizes[d];
    for (int k = 0; k < N; ++k) r.strides[k][r.ndim] = (*strides[k])[d];
    ++r.ndim;
  }
  return r;
}

// Strides of t seen as `target` (a broadcast: stretched dims get stride 0).
inline Shape broadcast_strides_to(const Tensor& t, const Shape& target) {
  const size_t n = target.size(), m = static_cast<size_t>(t.dim());
  Shape st(n, 0);
  for (size_t i = 0; i < m; ++i) {
    const size_t j = n - m + i;
    st[j] = t.sizes()[i] == 1 && target[j] != 1 ? 0 : t.strides()[i];
  }
  return st;
}

// Typed device pointer to element [0, ..., 0] of t (no dtype check: callers
// dispatch on t.dtype() first).
template <class T>
inline T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

// ---- dtype dispatch ------------------------------------------------------------------------
// The same shape as core/dtype.h's dispatchers, restricted to what the
// kernels instantiate.
template <class Fn>
decltype(auto) dispatch_float_types(DType t, const char* op, Fn&& fn) {
  return dispatch_float(t, op, static_cast<Fn&&>(fn));
}
template <class Fn>
decltype(auto) dispatch_index_types(DType t, const char* op, Fn&& fn) {
  if (t == DType::i64) return fn.template operator()<int64_t>();
  if (t == DType::i32) return fn.template operator()<int32_t>();
  DIMIX_FAIL(op, ": expected an integer index tensor (i64 or i32), got ", dtype_name(t));
}

// ---- index checking ---------------------------------------------------------------------
// Kernels that read an index tensor report the position (row-major in the
// index tensor) of every bad index they meet instead of reading out of
// bounds; the smallest position is kept, so the error names the first bad
// index as the CPU loops do. `first_bad_index` waits for the kernel: index
// ops are few per step, so the wait is affordable, and a bad index stays a
// dimix::Error rather than a device fault.
struct IndexChecker {
  unsigned long long* word;
  __device__ __forceinline__ void report(int64_t position) const {
    atomicMin(word, static_cast<unsigned long long>(position));
  }
};
IndexChecker index_checker(DeviceContext& ctx);  // arms the word (async)
// -1 when every index was in range, else the first bad position.
int64_t first_bad_index(DeviceContext& ctx);
// The value at row-major position `pos` of an index tensor on any device.
int64_t index_value_at(const Tensor& index, int64_t pos);

// Rows of a source grouped by target, for deterministic scatter-adds
// (index_add, embedding backward): the source rows j with index[j] == t are
// rows[rows_of[t] .. rows_of[t+1]), in increasing j. Built on the host (the
// index is small: one entry per source row) with the range checked there
// (op: "index V out of range for a dim of size n"); both are i64 tensors on
// `device`.
struct GroupedRows {
  Tensor rows_of;  // [n + 1]
  Tensor rows;     // [k]
};
GroupedRows group_rows(const Tensor& index, int64_t n, const char* op, Device device);

}  // namespace dimix::cuda

// ---- device math -------------------------------------------------------------------------
// Overloads that pick the float or double CUDA intrinsic, so templated
// kernels call one name (the accurate versions: no fast-math, to match the
// CPU reference).
namespace dimix::cuda::dm {
#define DIMIX_DM_UNARY(name, f32, f64)                                   \
  __device__ __forceinline__ float name(float x) { return ::f32(x); }  \
  __device__ __forceinline__ double name(double x) { return ::f64(x); }
DIMIX_DM_UNARY(exp, expf, exp)
DIMIX_DM_UNARY(log, logf, log)
DIMIX_DM_UNARY(sqrt, sqrtf, sqrt)
DIMIX_DM_UNARY(rsqrt, rsqrtf, rsqrt)
DIMIX_DM_UNARY(tanh, tanhf, tanh)
DIMIX_DM_UNARY(erf, erff, erf)
DIMIX_DM_UNARY(sin, sinf, sin)
DIMIX_DM_UNARY(cos, cosf, cos)
DIMIX_DM_UNARY(abs, fabsf, fabs)
DIMIX_DM_UNARY(floor, floorf, floor)
#undef DIMIX_DM_UNARY
__device__ __forceinline__ float pow(float x, float y) { return ::powf(x, y); }
__device__ __forceinline__ double pow(double x, double y) { return ::pow(x, y); }
template <class T>
__device__ __forceinline__ bool isnan(T x) { return x != x; }
template <class T>
__device__ __forceinline__ T lowest();
template <> __device__ __forceinline__ float lowest<float>() { return -3.402823466e+38f; }
template <> __device__ __forceinline__ double lowest<double>() { return -1.7976931348623157e+308; }
template <class T>
__device__ __forceinline__ T infinity();
template <> __device__ __forceinline__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double infinity<double>() { return __longlong_as_double(0x7ff0000000000000ll); }
}  // namespace dimix::cuda::dm

// ---- warp and block reductions -------------------------------------------------------------
namespace dimix::cuda {
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
// gets the result. `scratch` holds 32 values; the call synchronises.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(r);
}
template <class T>
__device__ __forceinline__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : dm::lowest<T>();
  return warp_max(r);
}
}  // namespace dimix::cuda

// ---- online softmax statistics --------------------------------------------------------------
// A running max m and sum s of exp(x - m) over a stream of values, rescaled
// when m grows (Milakov & Gimelshein 2018): one pass instead of max-then-sum.
namespace dimix::cuda {
// (m, s) <- merge of (m, s) and (m2, s2); an empty side has m = -inf, s = 0.
template <class T>
__device__ __forceinline__ void online_merge(T& m, T& s, T m2, T s2) {
  const T mm = m > m2 ? m : m2;
  if (mm == -dm::infinity<T>()) return;  // both empty (or all -inf): keep s = sum so far
  s = (m == mm ? s : s * dm::exp(m - mm)) + (m2 == mm ? s2 : s2 * dm::exp(m2 - mm));
  m = mm;
}

template <class T>
__device__ __forceinline__ void online_add(T& m, T& s, T x) {
  if (x > m) {
    s = (m == -dm::infinity<T>() ? T(0) : s * dm::exp(m - x)) + T(1);
    m = x;
  } else if (m != -dm::infinity<T>()) {  // x = m = -inf adds exp(-inf) = 0, not exp(NaN)
    s += dm::exp(x - m);
  }
}

}  // namespace dimix::cuda
