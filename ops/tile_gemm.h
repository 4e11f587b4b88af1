// tile_gemm: a register-tiled GEMM for the small block products of the
// butterfly ops (block_linear, block_attention), where BLAS is weakest
// (b = 8..64: a BLAS call costs as much as the product, and its packing does
// not pay off).
//
//   C[m, n] (=|+=) row_init[m] + col_init[n] + sum_k A(m, k) * B[k, n]
//
// for m < M, n < N, k < K. A is read one scalar at a time and broadcast, so it
// may have any strides (a_m, a_k): that is how a strided butterfly group or a
// transposed weight is read in place. B rows and C rows must be contiguous
// along n (they are the vector lanes); their row strides are b_k and c_m.
// An MR x (NV * lanes) block of C stays in registers for the whole K loop
// (the classic GEMM micro-kernel; Goto & van de Geijn, 2008). Vectors are GCC
// vector extensions of 64 bytes (one AVX-512 register; the compiler splits
// them on narrower machines), so there are no intrinsics to port.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "core/parallel.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define DIMIX_TILE_MASKED 1
#else
#define DIMIX_TILE_MASKED 0
#endif

namespace dimix::tile {

template <class T> inline constexpr int kLanes = static_cast<int>(64 / sizeof(T));

template <class T, int N>
struct VecOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
template <class T, int N = kLanes<T>> using Vec = typename VecOf<T, N>::type;

// Unaligned loads and stores through memcpy: one vmovups, no aliasing games.
template <class T, int N = kLanes<T>>
inline Vec<T, N> load(const T* p) {
  Vec<T, N> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <class T, int N = kLanes<T>>
inline void store(T* p, Vec<T, N> v) { __builtin_memcpy(p, &v, sizeof(v)); }
template <class T, int N = kLanes<T>>
inline Vec<T, N> splat(T s) { return Vec<T, N>{} + s; }
template <class T, int N>
inline T hsum(Vec<T, N> v) {
  T s = 0;
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i) s += v[i];
  return s;
}

// The same sum in halving steps (log2(N) adds of half-width vectors instead
// of N scalar adds); the order of additions differs from hsum's.
template <class T, int N>
inline T hsum_tree(Vec<T, N> v) {
  if constexpr (N == 1) {
    return v[0];
  } else {
    // Halves by value (no address taken, so that arrays of accumulators
    // stay in registers).
    return [&]<int... I>(std::integer_sequence<int, I...>) {
      const Vec<T, N / 2> lo = __builtin_shufflevector(v, v, I...);
      const Vec<T, N / 2> hi = __builtin_shufflevector(v, v, (I + N / 2)...);
      return hsum_tree<T, N / 2>(lo + hi);
    }(std::make_integer_sequence<int, N / 2>{});
  }
}

// Shuffle index vectors: lane indices as integers of the element's width.
template <class T> struct MaskElem;
template <> struct MaskElem<float> { using type = int32_t; };
template <> struct MaskElem<double> { using type = int64_t; };

// A shuffle index vector from its constexpr array.
template <class I, std::size_t N>
inline Vec<I, static_cast<int>(N)> index_vec(const std::array<I, N>& a) {
  Vec<I, static_cast<int>(N)> v;
  __builtin_memcpy(&v, a.data(), sizeof(v));
  return v;
}

// The shuffle of one round of hsum_each: lanes [0, N/2) of the result take,
// from the first source, segment s's lower (Hi false) or upper half of w
// lanes (w/2 each, segment after segment), and lanes [N/2, N) the same from
// the second source (indices N and up).
template <class I, int N, int w, bool Hi>
constexpr std::array<I, N> hsum_each_mask() {
  std::array<I, N> m{};
  for (int e = 0; e < N; ++e) {
    const int src = e < N / 2 ? 0 : N, f = e % (N / 2), s = f / (w / 2), o = f % (w / 2);
    m[e] = static_cast<I>(src + s * w + (Hi ? w / 2 : 0) + o);
  }
  return m;
}

// One round of hsum_each on the first w vectors of r, each of N/w
// segments of w lanes: pairs fold into the first w/2 vectors, each segment
// halved (lower half + upper half), then the next round.
template <class T, int N, int w>
inline void hsum_each_round(Vec<T, N>* r) {
  if constexpr (w > 1) {
    using I = typename MaskElem<T>::type;
    static constexpr std::array<I, N> lo_idx = hsum_each_mask<I, N, w, false>();
    static constexpr std::array<I, N> hi_idx = hsum_each_mask<I, N, w, true>();
    const Vec<I, N> lo = index_vec(lo_idx), hi = index_vec(hi_idx);
#pragma GCC unroll 16
    for (int i = 0; i < w / 2; ++i)
      r[i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], lo) + __builtin_shuffle(r[2 * i], r[2 * i + 1], hi);
    hsum_each_round<T, N, w / 2>(r);
  }
}

// The sums of K vectors at once: out[j] = the sum of v[j]'s lanes, for
// j < K <= N. Rounds of two-source shuffles fold pairs of vectors into one,
// halving each one's lanes (16 -> 8 -> 4 -> 2 -> 1 vectors for N = 16): 45
// shuffles and adds for 16 sums, against 128 for 16 hsum_trees. Each sum
// is added in hsum_tree's order (lower half + upper half, recursively), so
// the results are the same bits.
template <class T, int N, int K>
inline void hsum_each(const Vec<T, N>* v, T* out) {
  static_assert(K >= 1 && K <= N);
  Vec<T, N> r[N];
#pragma GCC unroll 16
  for (int j = 0; j < N; ++j) r[j] = j < K ? v[j] : Vec<T, N>{};
  hsum_each_round<T, N, N>(r);
  T s[N];
  __builtin_memcpy(s, &r[0], sizeof(s));
#pragma GCC unroll 16
  for (int j = 0; j < K; ++j) out[j] = s[j];
}

// Pins v to a register: GCC otherwise reloads a vector that several FMAs
// share once per FMA (as a memory operand), doubling the loads of a kernel
// whose speed is its loads per FMA.
// (Only where V fits one register; elsewhere it does nothing.)
template <class V>
inline void in_register(V& v) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) <= 64) __asm__("" : "+v"(v));
#elif defined(__AVX__)
  if constexpr (sizeof(V) <= 32) __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}

// Fetches the cache line of p into L1. Not __builtin_prefetch: GCC drops
// that from loops it vectorises, such as a loop of prefetch addresses.
inline void prefetch(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

// Prefetches the part-th of `parts` shares of rows [r0, r1) of a matrix with
// `span` elements per row, rows `stride` apart (one linear range when the
// rows touch). Spreading the shares over a loop's iterations keeps a few
// misses in flight all the time instead of a burst that fills the queue.
template <class T>
inline void prefetch_rows(const T* base, int64_t stride, int64_t span, int64_t r0, int64_t r1, int64_t part,
                          int64_t parts) {
  constexpr int64_t E = 64 / sizeof(T);
  if (r1 <= r0 || span <= 0) return;
  if (stride == span) {
    const int64_t n = (r1 - r0) * span, b = r0 * span + n * part / parts, e = r0 * span + n * (part + 1) / parts;
    for (int64_t i = b; i < e; i += E) prefetch(base + i);
    if (e > b) prefetch(base + e - 1);
    return;
  }
  const int64_t rb = r0 + (r1 - r0) * part / parts, re = r0 + (r1 - r0) * (part + 1) / parts;
  for (int64_t r = rb; r < re; ++r) {
    const T* p = base + r * stride;
    for (int64_t i = 0; i < span; i += E) prefetch(p + i);
    prefetch(p + span - 1);
  }
}

// Calls f.template operator()<C>() with C == count, for 1 <= count <= Max:
// turns a runtime block size (a ragged edge) into a register-tiled kernel.
template <int Max, class F>
inline void dispatch_count(int64_t count, F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (void)((count == I + 1 ? (f.template operator()<I + 1>(), true) : false) || ...);
  }(std::make_integer_sequence<int, Max>{});
}

#if DIMIX_TILE_MASKED
// The first n lanes of p (0 < n <= lanes), the rest zero; masked-off lanes are
// never touched, so this is safe at the end of a buffer.
template <class T>
inline Vec<T> load_first(const T* p, int n) {
  if constexpr (sizeof(T) == 4) return (Vec<T>)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  else return (Vec<T>)_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
}
template <class T>
inline void store_first(T* p, Vec<T> v, int n) {
  if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), (__m512)v);
  else _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), (__m512d)v);
}
#endif

// One MR x (NV * lanes) block of C over the whole K loop. With Masked, the
// last vector holds only `tail` valid lanes (masked loads and stores). With
// UnitA, a_m is 1: the MR scalars of A are then fixed offsets from one
// pointer, where a runtime a_m takes a register per row and spills some of
// them inside the K loop (17% of a b = 11 weight gradient).
template <class T, int MR, int NV, bool Masked = false, bool UnitA = false>
inline void micro_kernel(int64_t K, const T* __restrict A, int64_t a_m, int64_t a_k, const T* __restrict B,
                         int64_t b_k, T* C, int64_t c_m, const T* row_init, const T* col_init, bool accumulate,
                         int tail = kLanes<T>) {
  constexpr int L = kLanes<T>;
  using V = Vec<T>;
  auto ld = [&](const T* p, int v) -> V {
#if DIMIX_TILE_MASKED
    if constexpr (Masked) if (v == NV - 1) return load_first<T>(p, tail);
#endif
    return load<T>(p);
  };
  V acc[MR][NV] = {};
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      acc[m][v] = accumulate ? ld(C + m * c_m + v * L, v) : V{};
      if (row_init) acc[m][v] += row_init[m];
      if (col_init) acc[m][v] += ld(col_init + v * L, v);
    }
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = ld(B + k * b_k + v * L, v);
    const T* a = A + k * a_k;
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const T s = a[m * (UnitA ? 1 : a_m)];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] += s * b[v];
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
#if DIMIX_TILE_MASKED
      if constexpr (Masked)
        if (v == NV - 1) {
          store_first<T>(C + m * c_m + v * L, acc[m][v], tail);
          continue;
        }
#endif
      store<T>(C + m * c_m + v * L, acc[m][v]);
    }
}

// Runs micro_kernel<MR', NV> for the rows [m0, M) in blocks of at most MR.
template <class T, int MR, int NV, bool Masked = false, bool UnitA = false>
inline void row_blocks(int64_t M, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B, int64_t b_k, T* C,
                       int64_t c_m, const T* row_init, const T* col_init, bool accumulate, int tail = kLanes<T>) {
  int64_t m0 = 0;
  for (; m0 + MR <= M; m0 += MR)
    micro_kernel<T, MR, NV, Masked, UnitA>(K, A + m0 * a_m, a_m, a_k, B, b_k, C + m0 * c_m, c_m,
                                           row_init ? row_init + m0 : nullptr, col_init, accumulate, tail);
  if (m0 == M) return;
  dispatch_count<MR - 1>(M - m0, [&]<int R>() {
    micro_kernel<T, R, NV, Masked, UnitA>(K, A + m0 * a_m, a_m, a_k, B, b_k, C + m0 * c_m, c_m,
                                          row_init ? row_init + m0 : nullptr, col_init, accumulate, tail);
  });
}

// small_gemm's body; UnitA: a_m == 1, see micro_kernel.
template <class T, bool UnitA>
void small_gemm_impl(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B,
                     int64_t b_k, T* C, int64_t c_m, const T* row_init, const T* col_init, bool accumulate) {
  constexpr int L = kLanes<T>;
  if (M <= 0 || N <= 0) return;
  int64_t n0 = 0;
  auto col = [&](int64_t n) { return col_init ? col_init + n : nullptr; };
  // Wide blocks first: the B panel (K x lanes*NV) is reused by every row block.
  for (; n0 + 4 * L <= N; n0 += 4 * L)
    row_blocks<T, 6, 4, false, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate);
  for (; n0 + 2 * L <= N; n0 += 2 * L)
    row_blocks<T, 12, 2, false, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate);
#if DIMIX_TILE_MASKED
  // The rest (< 2 vectors) in one pass with a masked last vector.
  const int64_t rest = N - n0;
  if (rest > L)
    row_blocks<T, 12, 2, true, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate,
                               static_cast<int>(rest - L));
  else if (rest == L)
    row_blocks<T, 12, 1, false, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate);
  else if (rest > 0)
    row_blocks<T, 12, 1, true, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate,
                               static_cast<int>(rest));
#else
  for (; n0 + L <= N; n0 += L)
    row_blocks<T, 12, 1, false, UnitA>(M, K, A, a_m, a_k, B + n0, b_k, C + n0, c_m, row_init, col(n0), accumulate);
  if (n0 == N) return;
  // Ragged edge (< lanes columns): run on zero-padded copies of the B and C
  // columns, then copy the valid part back.
  const int64_t nr = N - n0;
  thread_local std::vector<T> scratch;
  constexpr int64_t MB = 12;
  scratch.assign(static_cast<size_t>((K + MB + 1) * L), T(0));
  T* Bp = scratch.data();
  T* Cp = Bp + K * L;
  T* colp = Cp + MB * L;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < nr; ++n) Bp[k * L + n] = B[k * b_k + n0 + n];
  if (col_init)
    for (int64_t n = 0; n < nr; ++n) colp[n] = col_init[n0 + n];
  for (int64_t m0 = 0; m0 < M; m0 += MB) {
    const int64_t mb = std::min(MB, M - m0);
    if (accumulate)
      for (int64_t m = 0; m < mb; ++m)
        for (int64_t n = 0; n < nr; ++n) Cp[m * L + n] = C[(m0 + m) * c_m + n0 + n];
    row_blocks<T, 12, 1, false, UnitA>(mb, K, A + m0 * a_m, a_m, a_k, Bp, L, Cp, L, row_init ? row_init + m0 : nullptr,
                         col_init ? colp : nullptr, accumulate);
    for (int64_t m = 0; m < mb; ++m)
      for (int64_t n = 0; n < nr; ++n) C[(m0 + m) * c_m + n0 + n] = Cp[m * L + n];
  }
#endif
}

// C = (accumulate ? C : 0) + row_init + col_init + A B, see the file comment.
// row_init [M] and col_init [N] may be null. Safe inside parallel regions.
template <class T>
void small_gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B, int64_t b_k,
                T* C, int64_t c_m, const T* row_init = nullptr, const T* col_init = nullptr,
                bool accumulate = false) {
  small_gemm_impl<T, false>(M, N, K, A, a_m, a_k, B, b_k, C, c_m, row_init, col_init, accumulate);
}

// small_gemm with a_m == 1 known at compile time (kernels that call it with
// a unit A row stride in a hot loop; the others keep their code size).
template <class T>
void small_gemm_unit_a(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_k, const T* B, int64_t b_k, T* C,
                       int64_t c_m, const T* row_init = nullptr, const T* col_init = nullptr,
                       bool accumulate = false) {
  small_gemm_impl<T, true>(M, N, K, A, 1, a_k, B, b_k, C, c_m, row_init, col_init, accumulate);
}

// ---- dot-product tiles ----------------------------------------------------------------

// NA x NB dot products along a contiguous i (the vector lanes), summed over
// O slices:  sum over o < O, i < n of A[o * a_o + a * a_r + i] * B[o * b_o + b * b_r + i]
// for a < NA, b < NB, added to P[a * p_a + b]; or, with VecOut, to the
// vectors P + (a * p_a + b) * lanes before any reduction across lanes (the
// caller reduces once after many calls: a weight gradient dW = dY X^T whose
// reduction dim is the contiguous one). The NA * NB accumulators stay in
// registers over all O * n terms; each step costs NA + NB loads for NA * NB
// FMAs.
template <class T, int NA, int NB, bool VecOut = false>
void dot_tile(int64_t O, int64_t n, const T* __restrict A, int64_t a_o, int64_t a_r, const T* __restrict B,
              int64_t b_o, int64_t b_r, T* P, int64_t p_a) {
  constexpr int L = kLanes<T>;
  using V = Vec<T>;
  V acc[NA][NB];
#pragma GCC unroll 8
  for (int a = 0; a < NA; ++a)
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) acc[a][b] = VecOut ? load<T>(P + (a * p_a + b) * L) : V{};
  const int64_t full = n / L * L;
  const int tail = static_cast<int>(n - full);
#if !DIMIX_TILE_MASKED
  T sacc[NA][NB] = {};  // the ragged end, in scalars
#endif
  for (int64_t o = 0; o < O; ++o) {
    const T* ao = A + o * a_o;
    const T* bo = B + o * b_o;
    for (int64_t i = 0; i < full; i += L) {
      V bv[NB];
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        bv[b] = load<T>(bo + b * b_r + i);
        in_register(bv[b]);
      }
#pragma GCC unroll 8
      for (int a = 0; a < NA; ++a) {
        V av = load<T>(ao + a * a_r + i);
        in_register(av);
#pragma GCC unroll 8
        for (int b = 0; b < NB; ++b) acc[a][b] += av * bv[b];
      }
    }
    if (tail) {
#if DIMIX_TILE_MASKED
      V bv[NB];
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        bv[b] = load_first<T>(bo + b * b_r + full, tail);
        in_register(bv[b]);
      }
#pragma GCC unroll 8
      for (int a = 0; a < NA; ++a) {
        V av = load_first<T>(ao + a * a_r + full, tail);
        in_register(av);
#pragma GCC unroll 8
        for (int b = 0; b < NB; ++b) acc[a][b] += av * bv[b];
      }
#else
      for (int a = 0; a < NA; ++a)
        for (int b = 0; b < NB; ++b)
          for (int64_t i = full; i < n; ++i) sacc[a][b] += ao[a * a_r + i] * bo[b * b_r + i];
#endif
    }
  }
#if !DIMIX_TILE_MASKED
  for (int a = 0; a < NA; ++a)
    for (int b = 0; b < NB; ++b) acc[a][b][0] += sacc[a][b];
#endif
  if constexpr (VecOut) {
#pragma GCC unroll 8
    for (int a = 0; a < NA; ++a)
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) store<T>(P + (a * p_a + b) * L, acc[a][b]);
  } else if constexpr (NA * NB <= L) {
    T sums[NA * NB];  // all the tile's sums in one shuffle tree
    hsum_each<T, L, NA * NB>(&acc[0][0], sums);
#pragma GCC unroll 8
    for (int a = 0; a < NA; ++a)
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) P[a * p_a + b] += sums[a * NB + b];
  } else {
#pragma GCC unroll 8
    for (int a = 0; a < NA; ++a)
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) P[a * p_a + b] += hsum_tree<T, L>(acc[a][b]);
  }
}

// dot_tile over a whole [M, N] block of P, in register tiles of at most MA x NB.
template <class T, int MA = 4, int NB = 4, bool VecOut = false>
void dot_block(int64_t M, int64_t N, int64_t O, int64_t n, const T* A, int64_t a_o, int64_t a_r, const T* B,
               int64_t b_o, int64_t b_r, T* P, int64_t p_a) {
  const int64_t p_step = VecOut ? kLanes<T> : 1;
  for (int64_t m0 = 0; m0 < M; m0 += MA)
    for (int64_t n0 = 0; n0 < N; n0 += NB)
      dispatch_count<MA>(std::min<int64_t>(MA, M - m0), [&]<int RA>() {
        dispatch_count<NB>(std::min<int64_t>(NB, N - n0), [&]<int RB>() {
          dot_tile<T, RA, RB, VecOut>(O, n, A + m0 * a_r, a_o, a_r, B + n0 * b_r, b_o, b_r,
                                      P + (m0 * p_a + n0) * p_step, p_a);
        });
      });
}

// dst[0, n) = src[0, n) in whole vectors (short rows, where a memmove call
// would cost more than the copy).
template <class T>
inline void copy_short(T* __restrict dst, const T* __restrict src, int64_t n) {
  constexpr int L = kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) store<T>(dst + i, load<T>(src + i));
#if DIMIX_TILE_MASKED
  if (i < n) store_first<T>(dst + i, load_first<T>(src + i, static_cast<int>(n - i)), static_cast<int>(n - i));
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}

// ---- scratch ------------------------------------------------------------------------

// A thread's scratch buffer, 64-byte aligned like tensors (core/storage.h): a
// vector register then never straddles two cache lines where a slab's rows
// are whole registers (std::vector only guarantees 16 bytes).
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
};

// n elements of this thread's scratch, kept from call to call: an op's
// per-thread slabs (a few hundred KB) are then neither allocated (a fresh
// aligned block of that size is a fresh mmap, page faults and all) nor
// zeroed on every call. The contents are left from the last user. While a
// lease is held a second one on the same thread (a nested op) gets its own
// buffer.
template <class T>
class ScratchLease {
 public:
  explicit ScratchLease(int64_t n) {
    Kept& k = kept();
    Buffer* buf = &own_;
    if (!k.busy) {
      k.busy = true;
      held_ = &k;
      buf = &k.buf;
    }
    if (static_cast<int64_t>(buf->size()) < n) *buf = Buffer(static_cast<size_t>(n));
    data_ = buf->data();
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  ~ScratchLease() {
    if (held_) held_->busy = false;
  }
  T* data() const { return data_; }

 private:
  using Buffer = std::vector<T, AlignedAllocator<T>>;
  struct Kept {
    Buffer buf;
    bool busy = false;
  };
  static Kept& kept() {
    thread_local Kept k;
    return k;
  }
  Kept* held_ = nullptr;
  Buffer own_;
  T* data_ = nullptr;
};

// n elements rounded up to whole cache lines, so that consecutive regions of
// a scratch buffer all start aligned.
template <class T>
constexpr int64_t lines(int64_t n) {
  constexpr int64_t per = 64 / static_cast<int64_t>(sizeof(T));
  return (n + per - 1) / per * per;
}

// ---- scheduling ---------------------------------------------------------------------

// Runs body(state, t) for every task t in [0, n), handing tasks out one at a
// time to whichever thread is free. On a machine shared with other jobs a
// thread that loses its core then delays the op by about one task instead of
// half the op (a static split waits for the slowest half). make_state()
// builds each thread's scratch once. Tasks must write disjoint outputs.
template <class MakeState, class Body>
void for_each_task(int64_t n, MakeState&& make_state, Body&& body) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(n, get_num_threads());
  parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    auto state = make_state();
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) break;
      body(state, t);
    }
  });
}

// ---- transposes ---------------------------------------------------------------------


// The shuffle indices of one transpose round (half-size h): lo = [a0, b0, a2,
// b2, ...], hi = [a1, b1, a3, b3, ...] in chunks of h, indices into [a, b].
template <class I, int N, int h, bool Hi>
constexpr std::array<I, N> transpose_mask() {
  std::array<I, N> m{};
  for (int e = 0; e < N; ++e) {
    const int c = e / h, o = e % h;
    if (!Hi) m[e] = static_cast<I>(c % 2 == 0 ? c * h + o : N + (c - 1) * h + o);
    else m[e] = static_cast<I>(c % 2 == 0 ? (c + 1) * h + o : N + c * h + o);
  }
  return m;
}

// Rounds h, h/2, ..., 1 on the rows r[0..N): swap the off-diagonal h x h
// sub-blocks of row pairs (i, i + h).
template <class T, int N, int h>
inline void transpose_rounds(Vec<T, N>* r) {
  using I = typename MaskElem<T>::type;
  static constexpr std::array<I, N> lo_idx = transpose_mask<I, N, h, false>();
  static constexpr std::array<I, N> hi_idx = transpose_mask<I, N, h, true>();
  const Vec<I, N> lo = index_vec(lo_idx), hi = index_vec(hi_idx);
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i) {
    if (i & h) continue;
    const Vec<T, N> a = r[i], b = r[i + h];
    r[i] = __builtin_shuffle(a, b, lo);
    r[i + h] = __builtin_shuffle(a, b, hi);
  }
  if constexpr (h > 1) transpose_rounds<T, N, h / 2>(r);
}

// Transposes the N x N block src (row stride ss) into dst (row stride ds) in
// registers: log2(N) rounds that swap the off-diagonal h x h sub-blocks of
// row pairs (i, i + h), each a two-source shuffle (vpermt2ps on AVX-512).
// With Partial, only rows < rv and columns < cv of src exist (masked loads,
// zeros elsewhere) and only the valid part of dst is written.
template <class T, int N, bool Partial = false>
inline void transpose_block(const T* __restrict src, int64_t ss, T* __restrict dst, int64_t ds, int rv = N,
                            int cv = N) {
  using V = Vec<T, N>;
  V r[N];
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i) {
    if constexpr (Partial) {
#if DIMIX_TILE_MASKED
      r[i] = i < rv ? load_first<T>(src + i * ss, cv) : V{};
#endif
    } else {
      r[i] = load<T, N>(src + i * ss);
    }
  }
  transpose_rounds<T, N, N / 2>(r);
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i) {
    if constexpr (Partial) {
#if DIMIX_TILE_MASKED
      if (i < cv) store_first<T>(dst + i * ds, r[i], rv);
#endif
    } else {
      store<T, N>(dst + i * ds, r[i]);
    }
  }
}

// dst[c * ds + r] = src[r * ss + c] for r < rows, c < cols, in register
// blocks (masked ones on the ragged edges where AVX-512 allows, else scalar).
template <class T>
void transpose(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols) {
  constexpr int L = kLanes<T>;
  for (int64_t r0 = 0; r0 < rows; r0 += L) {
    const int rv = static_cast<int>(std::min<int64_t>(L, rows - r0));
    for (int64_t c0 = 0; c0 < cols; c0 += L) {
      const int cv = static_cast<int>(std::min<int64_t>(L, cols - c0));
      const T* s = src + r0 * ss + c0;
      T* d = dst + c0 * ds + r0;
      if (rv == L && cv == L) {
        transpose_block<T, L>(s, ss, d, ds);
      } else {
#if DIMIX_TILE_MASKED
        transpose_block<T, L, true>(s, ss, d, ds, rv, cv);
#else
        for (int c = 0; c < cv; ++c)
          for (int r = 0; r < rv; ++r) d[c * ds + r] = s[r * ss + c];
#endif
      }
    }
  }
}

}  // namespace dimix::tile
