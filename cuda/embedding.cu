// CUDA kernels of ops/embedding: "embedding_forward" (out [T, D] = rows of
// weight [V, D] picked by ids [T]) and "embedding_backward" (grad_weight
// [V, D], zeroed by the op, += grad_out rows). Tensors contiguous; ids i64 or
// i32 (T tokens, V vocabulary, D model dim).
//
// Forward: a thread per output element; a bad id is reported by position and
// becomes the CPU's error message. Backward without atomics: the tokens are
// grouped by id on the host (group_rows), then a thread per grad_weight
// element adds its tokens' gradients in token order, the CPU's order: the
// result is deterministic and bit-identical run to run.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

template <class T, class I>
__global__ void embedding_forward_kernel(T* out, const I* ids, const T* weight, int64_t n_tok, int64_t V, int64_t D,
                                         IndexChecker bad) {
  DIMIX_GRID_STRIDE(i, n_tok * D) {
    const int64_t t = i / D, d = i - t * D;
    const int64_t id = static_cast<int64_t>(ids[t]);
    if (id < 0 || id >= V) {
      bad.report(t);
      out[i] = T(0);
      continue;
    }
    out[i] = weight[id * D + d];
  }
}

template <class T>
__global__ void embedding_backward_kernel(T* dweight, const T* g, const int64_t* rows_of, const int64_t* rows,
                                          int64_t V, int64_t D) {
  DIMIX_GRID_STRIDE(i, V * D) {
    const int64_t v = i / D, d = i - v * D;
    T acc = dweight[i];
    for (int64_t p = rows_of[v]; p < rows_of[v + 1]; ++p) acc += g[rows[p] * D + d];
    dweight[i] = acc;
  }
}

void embedding_forward_cuda(const Tensor& out, const Tensor& ids, const Tensor& weight) {
  DIMIX_CHECK(ids.is_contiguous() && weight.is_contiguous() && out.is_contiguous(),
              "embedding: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(out);
  const int64_t V = weight.sizes()[0], D = weight.sizes()[1], n_tok = ids.numel();
  if (n_tok == 0 || D == 0) return;
  const IndexChecker bad = index_checker(ctx);
  dispatch_float(weight.dtype(), "embedding", [&]<class T>() {
    dispatch_index_types(ids.dtype(), "embedding", [&]<class I>() {
      embedding_forward_kernel<T, I><<<grid_for(n_tok * D, ctx), kThreads, 0, ctx.stream>>>(
          ptr<T>(out), ptr<I>(ids), ptr<T>(weight), n_tok, V, D, bad);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
  const int64_t pos = first_bad_index(ctx);
  if (pos >= 0)
    DIMIX_FAIL("embedding: id ", index_value_at(ids, pos), " (position ", pos,
               ") is out of range for a vocabulary of V = ", V, " rows");
}

void embedding_backward_cuda(const Tensor& dweight, const Tensor& ids, const Tensor& g) {
  DIMIX_CHECK(dweight.is_contiguous() && g.is_contiguous(), "embedding backward: CUDA kernel expects contiguous tensors");
  const int64_t V = dweight.sizes()[0], D = dweight.sizes()[1];
  if (ids.numel() == 0 || V * D == 0) return;
  const GroupedRows grouped = group_rows(ids, V, "embedding", dweight.device());
  DeviceContext& ctx = context_of(dweight);
  dispatch_float(dweight.dtype(), "embedding", [&]<class T>() {
    embedding_backward_kernel<T><<<grid_for(V * D, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(dweight), ptr<T>(g), ptr<int64_t>(grouped.rows_of), ptr<int64_t>(grouped.rows), V, D);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("embedding_forward", embedding_forward_cuda);
DIMIX_REGISTER_KERNEL("embedding_backward", embedding_backward_cuda);

}  // namespace dimix::cuda
