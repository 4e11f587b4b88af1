// CUDA kernel of ops/linalg: "bmm", out [B, M, N] = op(a) @ op(b) through
// cuBLAS strided-batched GEMM.
//
// a, b are 3-d with batch B or 1 (1 = shared by every batch: batch stride
// 0); `ta`/`tb` ask for the transpose of a's/b's last two dims. As on the CPU
// (ops/linalg.cpp blas_view), an operand whose last two dims are row-major
// or column-major is used in place (a column-major operand is a transposed
// row-major one); any other layout is compacted first.
//
// cuBLAS is column-major: a row-major C [M, N] is a column-major C^T, so we
// compute C^T [N, M] = op(B)^T op(A)^T, i.e. pass B before A.
#include "cuda/common.cuh"

namespace dimix::cuda {
namespace {

struct BlasView {
  Tensor t;              // keeps compacted data alive
  int64_t batch_stride;  // elements between batches
  bool trans;            // stored as the row-major transpose
  int64_t ld;
};

BlasView blas_view(const Tensor& x) {
  const int64_t R = x.sizes()[1], C = x.sizes()[2];
  const int64_t sb = x.strides()[0], sr = x.strides()[1], sc = x.strides()[2];
  if ((sc == 1 || C == 1) && sr >= std::max<int64_t>(C, 1)) return {x, sb, false, std::max<int64_t>(sr, 1)};
  if ((sr == 1 || R == 1) && sc >= std::max<int64_t>(R, 1)) return {x, sb, true, std::max<int64_t>(sc, 1)};
  const Tensor c = x.contiguous_raw();
  return {c, c.strides()[0], false, std::max<int64_t>(C, 1)};
}

void check_int(int64_t v, const char* what) {
  DIMIX_CHECK(v <= INT32_MAX, "matmul: ", what, " = ", v, " exceeds cuBLAS's 32-bit limit");
}

void bmm_cuda(const Tensor& out, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  DIMIX_CHECK(out.dim() == 3 && out.is_contiguous(), "bmm: expected a contiguous 3-d output, got ", out.shape_str());
  DeviceContext& ctx = context_of(out);
  const int64_t B = out.sizes()[0], M = out.sizes()[1], N = out.sizes()[2];
  const int64_t K = ta ? a.sizes()[1] : a.sizes()[2];
  if (B == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    DIMIX_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.numel() * dtype_size(out.dtype()), ctx.stream));
    return;
  }
  const BlasView va = blas_view(a), vb = blas_view(b);
  const bool ta_eff = ta != va.trans, tb_eff = tb != vb.trans;
  const int64_t sa = a.sizes()[0] == 1 ? 0 : va.batch_stride, sb = b.sizes()[0] == 1 ? 0 : vb.batch_stride;
  check_int(M, "M");
  check_int(N, "N");
  check_int(K, "K");
  check_int(va.ld, "lda");
  check_int(vb.ld, "ldb");
  check_int(B, "batch");
  const cublasOperation_t op_a = ta_eff ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb_eff ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasHandle_t h = cublas_handle(ctx);
  dispatch_float(out.dtype(), "matmul", [&]<class T>() {
    const T one = 1, zero = 0;
    const T* pa = ptr<T>(va.t);
    const T* pb = ptr<T>(vb.t);
    T* pc = ptr<T>(out);
    if constexpr (std::is_same_v<T, float>) {
      DIMIX_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, static_cast<int>(N), static_cast<int>(M),
                                                   static_cast<int>(K), &one, pb, static_cast<int>(vb.ld), sb, pa,
                                                   static_cast<int>(va.ld), sa, &zero, pc, static_cast<int>(N),
                                                   M * N, static_cast<int>(B)));
    } else {
      DIMIX_CUBLAS_CHECK(cublasDgemmStridedBatched(h, op_b, op_a, static_cast<int>(N), static_cast<int>(M),
                                                   static_cast<int>(K), &one, pb, static_cast<int>(vb.ld), sb, pa,
                                                   static_cast<int>(va.ld), sa, &zero, pc, static_cast<int>(N),
                                                   M * N, static_cast<int>(B)));
    }
  });
  if (sync_debug()) DIMIX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

}  // namespace

DIMIX_REGISTER_KERNEL("bmm", bmm_cuda);

}  // namespace dimix::cuda
