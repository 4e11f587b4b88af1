// CUDA kernel of ops/topk: "topk_indices", out [rows, k] int64 = the
// positions of the k first entries of every row of x [rows, L] (contiguous)
// in the op's total order: by value (largest or smallest first), NaN above
// every number, ties by lower index.
//
// Part-1 form, obviously right: a thread per (row, i) counts the entries that
// come before x[row, i] (its rank, unique because the order is total) and,
// when the rank is below k, writes i to out[row, rank]. O(L^2) per row: fine
// for Sparsifiner's rows (a few hundred keys); a sort-based kernel replaces
// it for long rows.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T>
__device__ __forceinline__ bool comes_before(T a, int64_t i, T c, int64_t j, bool largest) {
  const bool na = dm::isnan(a), nc = dm::isnan(c);
  if (na != nc) return largest ? na : nc;
  if (na || a == c) return i < j;
  return largest ? a > c : a < c;
}

template <class T>
__global__ void topk_rank_kernel(int64_t* out, const T* x, int64_t rows, int64_t L, int64_t k, bool largest) {
  DIMIX_GRID_STRIDE(idx, rows * L) {
    const int64_t r = idx / L, i = idx - r * L;
    const T* row = x + r * L;
    const T a = row[i];
    int64_t rank = 0;
    for (int64_t j = 0; j < L && rank < k; ++j) rank += comes_before(row[j], j, a, i, largest) ? 1 : 0;
    if (rank < k) out[r * k + rank] = i;
  }
}

void topk_indices_cuda(const Tensor& out, const Tensor& x, int64_t k, bool largest) {
  DIMIX_CHECK(x.is_contiguous() && out.is_contiguous(), "topk_indices: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(out);
  const int64_t L = x.sizes().back(), rows = L > 0 ? x.numel() / L : 0;
  if (rows == 0 || k == 0) return;
  dispatch_float(x.dtype(), "topk_indices", [&]<class T>() {
    topk_rank_kernel<T><<<grid_for(rows * L, ctx), kThreads, 0, ctx.stream>>>(ptr<int64_t>(out), ptr<T>(x), rows, L, k,
                                                                             largest);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("topk_indices", topk_indices_cuda);

}  // namespace dimix::cuda
