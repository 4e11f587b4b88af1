// The AVX-512 f32 GEMM (see cpu_sgemm.h). Loop nest, outermost first:
//
//   jc: NC columns of C     pc: KC of the K dim, op(B)[pc.., jc..] packed
//   ic: MC rows of C        jr: one NR = 32 sliver of packed B (sits in L1)
//   ir: MR = 14 rows        micro-kernel: C[ir.., jr..] (+)= A rows @ sliver
//
// so a packed sliver (KC x 32 floats, 32 KB) is reused by all MC / 14 row
// tiles while it sits in L1, and the MC x KC block of A by every sliver while
// it sits in L2. Edges: fewer than 14 rows pick a kernel compiled for that
// many rows; fewer than 32 columns are masked loads/stores of C over a
// zero-padded sliver, and a last sliver of at most 16 columns uses a
// one-vector kernel.
#include "ops/cpu_sgemm.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <utility>

#include "core/error.h"
#include "ops/tile_gemm.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace dimix::cpu {

#if defined(__AVX512F__)

namespace {

constexpr int kMR = 14;         // rows of C per micro-kernel (28 accumulators of 32 zmm)
constexpr int kNR = 32;         // columns of C per micro-kernel: two zmm
constexpr int64_t kKC = 256;    // K per packed block: a sliver is 256 x 32 floats = 32 KB (L1 is 48 KB)
constexpr int64_t kMC = 168;    // rows of A per block: 168 x 256 floats = 168 KB of L2
constexpr int64_t kNC = 1024;   // columns per packed block: 256 x 1024 floats = 1 MB... of L2 and L3

// The packed op(B) block of the calling thread, 64-byte aligned.
float* pack_buffer(int64_t floats) {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float, Free> buf;
  thread_local int64_t cap = 0;
  if (floats > cap) {
    buf.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(floats) * sizeof(float))));
    DIMIX_CHECK(buf, "sgemm: could not allocate a ", floats * 4, "-byte packing buffer");
    cap = floats;
  }
  return buf.get();
}

__mmask16 lane_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1); }

// op(B)[0..kc, 0..nc] into slivers of 32 columns: dst[s][k][0..32], columns
// past nc zero. op(B)(k, n) = B[k * ldb + n], or B[n * ldb + k] when trans_b.
void pack_b(bool trans_b, int64_t kc, int64_t nc, const float* B, int64_t ldb, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += kNR, dst += kc * kNR) {
    const int64_t w = std::min<int64_t>(kNR, nc - j0);
    if (!trans_b) {
      const __mmask16 m0 = lane_mask(w), m1 = lane_mask(w - 16);
      const float* src = B + j0;
      for (int64_t k = 0; k < kc; ++k, src += ldb) {
        _mm512_store_ps(dst + k * kNR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + k * kNR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    } else {
      // Column n of the sliver is row j0 + n of B, contiguous along k: a
      // transpose in 16 x 16 register blocks.
      if (w < kNR)
        for (int64_t k = 0; k < kc; ++k) std::fill(dst + k * kNR + w, dst + (k + 1) * kNR, 0.f);
      tile::transpose(B + j0 * ldb, ldb, dst, kNR, w, kc);
    }
  }
}

// C[0..R, 0..16*NV] (masked by m0, m1) = alpha * sum_k op(A)(r, k) * b[k] + beta * C
// over kc steps. op(A)(r, k) is a[r * lda + k], or a[k * lda + r] when TransA.
template <int R, int NV, bool TransA>
void micro_kernel(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                  float beta, __mmask16 m0, __mmask16 m1) {
  __m512 acc[R][NV];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * NV - 1), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k, b += kNR) {
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    const float* ak = TransA ? a + k * lda : a + k;
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(TransA ? ak[r] : ak[r * lda]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 mask[2] = {m0, m1};
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      __m512 out = _mm512_mul_ps(va, acc[r][v]);
      if (beta != 0.f) out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], cr + 16 * v), out);
      _mm512_mask_storeu_ps(cr + 16 * v, mask[v], out);
    }
  }
}

using Kernel = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, float, float, __mmask16,
                        __mmask16);

template <int NV, bool TransA, int... Rs>
constexpr auto kernel_table(std::integer_sequence<int, Rs...>) {
  return std::array<Kernel, sizeof...(Rs)>{&micro_kernel<Rs + 1, NV, TransA>...};
}
// kKernels[nv - 1][trans_a][rows - 1]
const std::array<std::array<std::array<Kernel, kMR>, 2>, 2> kKernels = {{
    {kernel_table<1, false>(std::make_integer_sequence<int, kMR>()),
     kernel_table<1, true>(std::make_integer_sequence<int, kMR>())},
    {kernel_table<2, false>(std::make_integer_sequence<int, kMR>()),
     kernel_table<2, true>(std::make_integer_sequence<int, kMR>())},
}};

// C = beta * C (K == 0 or alpha == 0: A and B are not read, as BLAS).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f)
      std::fill(c, c + N, 0.f);
    else
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int64_t nc_max = std::min(kNC, (N + kNR - 1) / kNR * kNR);
  float* packed = pack_buffer(std::min(kKC, K) * nc_max);
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      pack_b(trans_b, kc, nc, trans_b ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, packed);
      const float beta_block = pc == 0 ? beta : 1.f;  // later K blocks add to C
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int64_t w = std::min<int64_t>(kNR, nc - jr);
          const __mmask16 m0 = lane_mask(w), m1 = lane_mask(w - 16);
          const auto& by_rows = kKernels[w > 16 ? 1 : 0][trans_a ? 1 : 0];
          const float* sliver = packed + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int64_t i = ic + ir, rows = std::min<int64_t>(kMR, mc - ir);
            const float* a = trans_a ? A + pc * lda + i : A + i * lda + pc;
            by_rows[rows - 1](kc, a, lda, sliver, C + i * ldc + jc + jr, ldc, alpha, beta_block, m0, m1);
          }
        }
      }
    }
  }
}

#else  // no AVX-512: gemm<float> uses BLAS (kHaveSgemm is false)

void sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
           int64_t) {
  DIMIX_FAIL("sgemm: this build has no AVX-512 kernel (compile with -march=native on an AVX-512 CPU)");
}

#endif

}  // namespace dimix::cpu
