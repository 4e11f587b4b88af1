// dimix's own single-threaded f32 GEMM for AVX-512 CPUs, the kernel under
// gemm<float> (ops/linalg.h) wherever the build targets AVX-512.
//
//   C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N] + beta * C      (row-major)
//
// Why our own: Debian's OpenBLAS (0.3.21) runs its AVX2 Haswell kernel on
// AVX-512 parts it does not know (Zen 4/5), at about half their FMA rate, and
// most of a dense layer's step is GEMM. The layout is the classic one (Goto &
// van de Geijn, 2008; BLIS): op(B) is packed KC x NR slivers at a time, and a
// 14 x 32 block of C lives in 28 zmm registers for the whole K loop, fed by one
// broadcast of A per row and two loads of B per k. A is read in place (rows or
// columns, whichever op(A) says): the shapes here have N of 64-1024, where
// packing A would cost as much as it saves.
//
// beta == 0 never reads C (it may hold garbage, NaN included), as BLAS.
#pragma once
#include <cstdint>

namespace dimix::cpu {

#if defined(__AVX512F__)
inline constexpr bool kHaveSgemm = true;
#else
inline constexpr bool kHaveSgemm = false;
#endif

// Single-threaded; callers cut big products over threads (ops/linalg.cpp).
// Throws dimix::Error when the build has no AVX-512 kernel (kHaveSgemm false).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace dimix::cpu
