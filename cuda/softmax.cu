// CUDA kernels of ops/softmax: "softmax_forward" and "softmax_backward"
// (`log` selects log_softmax). All tensors contiguous, seen as [outer, L,
// inner] around the softmax dim.
//
// inner == 1 (rows): a warp per row when L <= 1024, else a block per row.
// The forward is one reading pass with an online max (each thread keeps a
// running max m and sum s of exp(x - m), rescaling s when m grows; partial
// (m, s) pairs merge the same way), then one writing pass.
// inner > 1 (a middle dim): a thread per (outer, inner) column walks L with
// stride inner, so neighbouring threads read neighbouring addresses.
// Formulas as ops/softmax.cpp: y = exp(x - m) * (1 / s) or x - (m + log s);
// backward gx = y * (g - sum(g * y)) or g - exp(y) * sum(g).
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

// Reduces (m, s) over the threads of a row group: 32 (one warp) or the block.
template <class T>
__device__ __forceinline__ void row_reduce(T& m, T& s, bool whole_block, T* sm, T* ss) {
  for (int o = 16; o > 0; o >>= 1) {
    const T m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  if (!whole_block) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) { sm[warp] = m; ss[warp] = s; }
  __syncthreads();
  m = lane < nwarps ? sm[lane] : -dm::infinity<T>();
  s = lane < nwarps ? ss[lane] : T(0);
  for (int o = 16; o > 0; o >>= 1) {
    const T m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
}

template <class T>
__device__ __forceinline__ T group_sum(T v, bool whole_block, T* scratch) {
  return whole_block ? block_sum(v, scratch) : warp_sum(v);
}

// Rows of length L; each group of `width` threads (32 or blockDim.x) owns a row.
template <class T, bool Log>
__global__ void softmax_rows(T* y, const T* x, int64_t rows, int64_t L) {
  __shared__ T sm[32], ss[32];
  const bool whole_block = blockDim.x > 32 && L > 1024;
  const int width = whole_block ? blockDim.x : 32;
  const int t = whole_block ? threadIdx.x : (threadIdx.x & 31);
  const int64_t group = whole_block ? blockIdx.x : (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t groups = whole_block ? gridDim.x : (static_cast<int64_t>(gridDim.x) * blockDim.x) / 32;
  for (int64_t r = group; r < rows; r += groups) {
    const T* xr = x + r * L;
    T* yr = y + r * L;
    T m = -dm::infinity<T>(), s = T(0);
    for (int64_t i = t; i < L; i += width) online_add(m, s, xr[i]);
    row_reduce(m, s, whole_block, sm, ss);
    if constexpr (Log) {
      const T shift = m + dm::log(s);
      for (int64_t i = t; i < L; i += width) yr[i] = xr[i] - shift;
    } else {
      const T inv = T(1) / s;
      for (int64_t i = t; i < L; i += width) yr[i] = dm::exp(xr[i] - m) * inv;
    }
  }
}

template <class T, bool Log>
__global__ void softmax_columns(T* y, const T* x, int64_t outer, int64_t L, int64_t inner) {
  DIMIX_GRID_STRIDE(c, outer * inner) {
    const int64_t o = c / inner, j = c - o * inner;
    const T* xc = x + o * L * inner + j;
    T* yc = y + o * L * inner + j;
    T m = -dm::infinity<T>(), s = T(0);
    for (int64_t l = 0; l < L; ++l) online_add(m, s, xc[l * inner]);
    if constexpr (Log) {
      const T shift = m + dm::log(s);
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = xc[l * inner] - shift;
    } else {
      const T inv = T(1) / s;
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = dm::exp(xc[l * inner] - m) * inv;
    }
  }
}

template <class T, bool Log>
__global__ void softmax_backward_rows(T* gx, const T* g, const T* y, int64_t rows, int64_t L) {
  __shared__ T scratch[32];
  const bool whole_block = blockDim.x > 32 && L > 1024;
  const int width = whole_block ? blockDim.x : 32;
  const int t = whole_block ? threadIdx.x : (threadIdx.x & 31);
  const int64_t group = whole_block ? blockIdx.x : (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t groups = whole_block ? gridDim.x : (static_cast<int64_t>(gridDim.x) * blockDim.x) / 32;
  for (int64_t r = group; r < rows; r += groups) {
    const T* gr = g + r * L;
    const T* yr = y + r * L;
    T* out = gx + r * L;
    T s = T(0);
    for (int64_t i = t; i < L; i += width) s += Log ? gr[i] : gr[i] * yr[i];
    s = group_sum(s, whole_block, scratch);
    for (int64_t i = t; i < L; i += width) out[i] = Log ? gr[i] - dm::exp(yr[i]) * s : yr[i] * (gr[i] - s);
  }
}

template <class T, bool Log>
__global__ void softmax_backward_columns(T* gx, const T* g, const T* y, int64_t outer, int64_t L, int64_t inner) {
  DIMIX_GRID_STRIDE(c, outer * inner) {
    const int64_t o = c / inner, j = c - o * inner, base = o * L * inner + j;
    T s = T(0);
    for (int64_t l = 0; l < L; ++l) s += Log ? g[base + l * inner] : g[base + l * inner] * y[base + l * inner];
    for (int64_t l = 0; l < L; ++l) {
      const int64_t i = base + l * inner;
      gx[i] = Log ? g[i] - dm::exp(y[i]) * s : y[i] * (g[i] - s);
    }
  }
}

struct Layout {
  int64_t outer = 1, L = 1, inner = 1;
};
Layout layout_around(const Shape& sizes, int64_t dim) {
  Layout s;
  for (int64_t d = 0; d < static_cast<int64_t>(sizes.size()); ++d) {
    if (d < dim) s.outer *= sizes[d];
    else if (d == dim) s.L = sizes[d];
    else s.inner *= sizes[d];
  }
  return s;
}

// Launch shape for the row kernels: a warp per row (8 rows per block) or a
// block per row.
unsigned row_blocks(int64_t rows, int64_t L, const DeviceContext& ctx) {
  const int64_t cap = int64_t(ctx.num_sms) * 32;
  const int64_t want = L > 1024 ? rows : (rows + kThreads / 32 - 1) / (kThreads / 32);
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

void softmax_forward_cuda(const Tensor& y, const Tensor& x, int64_t dim, bool log) {
  DIMIX_CHECK(x.is_contiguous() && y.is_contiguous(), "softmax: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(y);
  if (x.numel() == 0) return;
  const Layout s = layout_around(x.sizes(), dim);
  dispatch_float(x.dtype(), "softmax", [&]<class T>() {
    auto launch = [&]<bool Log>() {
      if (s.inner == 1)
        softmax_rows<T, Log><<<row_blocks(s.outer, s.L, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(y), ptr<T>(x),
                                                                                         s.outer, s.L);
      else
        softmax_columns<T, Log><<<grid_for(s.outer * s.inner, ctx), kThreads, 0, ctx.stream>>>(
            ptr<T>(y), ptr<T>(x), s.outer, s.L, s.inner);
      DIMIX_CUDA_LAUNCH_CHECK();
    };
    if (log) launch.template operator()<true>();
    else launch.template operator()<false>();
  });
}

void softmax_backward_cuda(const Tensor& gx, const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  DIMIX_CHECK(gx.is_contiguous() && g.is_contiguous() && y.is_contiguous(),
              "softmax backward: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(gx);
  if (y.numel() == 0) return;
  const Layout s = layout_around(y.sizes(), dim);
  dispatch_float(y.dtype(), "softmax", [&]<class T>() {
    auto launch = [&]<bool Log>() {
      if (s.inner == 1)
        softmax_backward_rows<T, Log><<<row_blocks(s.outer, s.L, ctx), kThreads, 0, ctx.stream>>>(
            ptr<T>(gx), ptr<T>(g), ptr<T>(y), s.outer, s.L);
      else
        softmax_backward_columns<T, Log><<<grid_for(s.outer * s.inner, ctx), kThreads, 0, ctx.stream>>>(
            ptr<T>(gx), ptr<T>(g), ptr<T>(y), s.outer, s.L, s.inner);
      DIMIX_CUDA_LAUNCH_CHECK();
    };
    if (log) launch.template operator()<true>();
    else launch.template operator()<false>();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("softmax_forward", softmax_forward_cuda);
DIMIX_REGISTER_KERNEL("softmax_backward", softmax_backward_cuda);

}  // namespace dimix::cuda
