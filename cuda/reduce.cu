// CUDA kernels of ops/reduce: "sum" over any set of dims and "max" (values
// and first-argmax) over one dim.
//
// sum(out, x): out has x's shape with the reduced dims set to 1 (keepdim,
// contiguous); x any strides. The kept dims form M outputs and the reduced
// dims a reduction of length R, each walked by its own StridedIndex, so any
// layout works without a copy. Two kernels:
//   - rows: a block per output, threads stride through the reduction, then a
//     warp-shuffle block sum. Long reductions with few outputs are split in
//     P chunks (partials to a buffer, then a second rows pass), so a full
//     sum still fills the GPU.
//   - columns: a thread per output looping over the reduction, when the
//     kept dims are innermost in memory (e.g. the bias gradient, sum over
//     rows of [rows, D]): neighbouring threads read neighbouring addresses.
// Both sum in a fixed order: results are deterministic run to run.
//
// max(values, indices, x, dim): a warp per output row; ties and NaN follow
// the CPU (the first maximal element; the first NaN beats any number).
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T>
__global__ void sum_rows(T* out, const T* x, int64_t M, int64_t R, int64_t P, StridedIndex<1> outer,
                         StridedIndex<1> inner) {
  __shared__ T scratch[32];
  const int64_t chunk = (R + P - 1) / P;
  for (int64_t job = blockIdx.x; job < M * P; job += gridDim.x) {
    const int64_t m = job / P, p = job - m * P;
    const int64_t r0 = p * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    int64_t base[1];
    outer.offsets(m, base);
    T acc = T(0);
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
      int64_t off[1];
      inner.offsets(r, off);
      acc += x[base[0] + off[0]];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[job] = acc;
  }
}

template <class T>
__global__ void sum_columns(T* out, const T* x, int64_t M, int64_t R, StridedIndex<1> outer, StridedIndex<1> inner) {
  DIMIX_GRID_STRIDE(m, M) {
    int64_t base[1];
    outer.offsets(m, base);
    T acc = T(0);
    if (inner.ndim == 1) {
      const int64_t s = inner.strides[0][0];
      for (int64_t r = 0; r < R; ++r) acc += x[base[0] + r * s];
    } else {
      for (int64_t r = 0; r < R; ++r) {
        int64_t off[1];
        inner.offsets(r, off);
        acc += x[base[0] + off[0]];
      }
    }
    out[m] = acc;
  }
}

void sum_cuda(const Tensor& out, const Tensor& x) {
  DIMIX_CHECK(out.dim() == x.dim() && out.is_contiguous(), "sum: expected a contiguous keepdim output for ",
              x.shape_str(), ", got ", out.shape_str());
  DeviceContext& ctx = context_of(out);
  const int64_t M = out.numel();
  if (M == 0) return;
  Shape kept_sizes, kept_strides, red_sizes, red_strides;
  int64_t min_red_stride = INT64_MAX, min_kept_stride = INT64_MAX;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t n = x.sizes()[d], s = x.strides()[d];
    if (n == 1) continue;
    if (out.sizes()[d] == 1) {
      red_sizes.push_back(n);
      red_strides.push_back(s);
      min_red_stride = std::min(min_red_stride, std::abs(s));
    } else {
      DIMIX_CHECK(out.sizes()[d] == n, "sum: output ", out.shape_str(), " is not a keepdim shape of ", x.shape_str());
      kept_sizes.push_back(n);
      kept_strides.push_back(s);
      min_kept_stride = std::min(min_kept_stride, std::abs(s));
    }
  }
  const int64_t R = shape_numel(red_sizes);
  if (R == 0) {
    DIMIX_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, M * dtype_size(out.dtype()), ctx.stream));
    return;
  }
  const auto outer = make_strided_index<1>(kept_sizes, {&kept_strides}, "sum");
  const auto inner = make_strided_index<1>(red_sizes, {&red_strides}, "sum");
  dispatch_float(x.dtype(), "sum", [&]<class T>() {
    T* po = ptr<T>(out);
    const T* px = ptr<T>(x);
    const bool columns = M >= 2048 && min_kept_stride < min_red_stride;
    if (columns) {
      sum_columns<T><<<grid_for(M, ctx), kThreads, 0, ctx.stream>>>(po, px, M, R, outer, inner);
      DIMIX_CUDA_LAUNCH_CHECK();
      return;
    }
    // Split long reductions when there are too few outputs to fill the SMs.
    int64_t P = 1;
    if (M < 2 * ctx.num_sms && R > 16384)
      P = std::min<int64_t>((R + 8191) / 8192, (4 * ctx.num_sms + M - 1) / M);
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(M * P, int64_t(ctx.num_sms) * 32));
    if (P == 1) {
      sum_rows<T><<<blocks, kThreads, 0, ctx.stream>>>(po, px, M, R, 1, outer, inner);
      DIMIX_CUDA_LAUNCH_CHECK();
      return;
    }
    const Tensor partial = empty({M, P}, x.dtype(), out.device());
    sum_rows<T><<<blocks, kThreads, 0, ctx.stream>>>(ptr<T>(partial), px, M, R, P, outer, inner);
    DIMIX_CUDA_LAUNCH_CHECK();
    const Shape ps{M}, pst{P}, qs{P}, qst{1};
    const auto outer2 = make_strided_index<1>(ps, {&pst}, "sum");
    const auto inner2 = make_strided_index<1>(qs, {&qst}, "sum");
    sum_rows<T><<<static_cast<unsigned>(std::min<int64_t>(M, int64_t(ctx.num_sms) * 32)), kThreads, 0, ctx.stream>>>(
        po, ptr<T>(partial), M, P, 1, outer2, inner2);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- max --------------------------------------------------------------------------------
// Is (av, ai) a better maximum than (bv, bi)? NaN first, then larger, then
// the smaller index: the CPU's left-to-right scan as a total order.
template <class T>
__device__ __forceinline__ bool better(T av, int64_t ai, T bv, int64_t bi) {
  const bool an = dm::isnan(av), bn = dm::isnan(bv);
  if (an != bn) return an;
  if (!an && av != bv) return av > bv;
  return ai < bi;
}

template <class T>
__global__ void max_rows(T* values, int64_t* indices, const T* x, int64_t M, int64_t L, int64_t step,
                         StridedIndex<1> outer) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t m = warp; m < M; m += nwarps) {
    int64_t base[1];
    outer.offsets(m, base);
    T bv = x[base[0]];
    int64_t bi = 0;
    for (int64_t i = lane; i < L; i += 32) {
      const T v = x[base[0] + i * step];
      if (better(v, i, bv, bi)) { bv = v; bi = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const T ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) {
      values[m] = bv;
      indices[m] = bi;
    }
  }
}

void max_cuda(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t dim) {
  DIMIX_CHECK(dim >= 0 && dim < x.dim() && x.sizes()[dim] > 0, "max: bad dim ", dim, " for ", x.shape_str());
  DIMIX_CHECK(values.is_contiguous() && indices.is_contiguous() && indices.dtype() == DType::i64,
              "max: expected contiguous keepdim outputs (values, i64 indices)");
  DeviceContext& ctx = context_of(x);
  const int64_t M = values.numel(), L = x.sizes()[dim];
  if (M == 0) return;
  Shape os, ost;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim) { os.push_back(x.sizes()[d]); ost.push_back(x.strides()[d]); }
  const auto outer = make_strided_index<1>(os, {&ost}, "max");
  dispatch_float(x.dtype(), "max", [&]<class T>() {
    max_rows<T><<<grid_for(M * 32, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(values), ptr<int64_t>(indices),
                                                                   ptr<T>(x), M, L, x.strides()[dim], outer);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("sum", sum_cuda);
DIMIX_REGISTER_KERNEL("max", max_cuda);

}  // namespace dimix::cuda
