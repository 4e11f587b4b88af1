// Matrix products: on the CPU our AVX-512 f32 kernel (ops/cpu_sgemm.h) where
// the build has AVX-512, OpenBLAS for f64 and elsewhere; cuBLAS on GPUs.
//
// matmul: a [..., M, K] @ b [..., K, N] -> [..., M, N], batch dims broadcast
// (a 2-d operand is shared by every batch). linear: x [..., in] with weight
// [out, in] and optional bias [out] -> [..., out], as torch.nn.functional.linear,
// done as one GEMM over all rows (the workhorse of every dense layer).
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor matmul(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// C[M,N] = alpha * op(A) @ op(B) + beta * C on raw row-major buffers with
// leading dims; the CPU GEMM that every product here goes through. Products
// of 2^20 multiply-adds or more are cut over the threads (core/parallel.h).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Raw (unrecorded) batched product used by backward passes:
// out[b] = op(a[b]) @ op(b[b]) for 3-d contiguous-able operands.
Tensor bmm_raw(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);

}  // namespace dimix
