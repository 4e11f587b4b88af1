// block_attention (see block_attention.h): softmax attention within butterfly
// groups of tokens (PAPERS.md 1.5, 1.6), dense attention when block = S.
//
// Letters: B batch, S tokens, H heads, hd head dim, G = S / block groups,
// group c = a * stride + s holds tokens a*block*stride + s + j*stride, j < block
// (block_linear's grouping), so a group's rows are equally spaced in q, k, v
// (stride token rows apart):
//   scores = Q_c (K_c / sqrt(hd))^T + key_bias      key_bias = -1e6 where key_mask == 0
//   P = softmax(scores), P_drop = dropout(P),  O_c = P_drop V_c
// CPU: one task per (b, c, chunk of heads), handed out dynamically, so each
// token row of the chunk is packed once for all its heads (see Plan); queries
// in tiles of QT rows, so scratch is per thread and at most block x Hc*QT
// (flash-attention style: nothing S x S lives beyond a tile). Scores are
// computed transposed, S^T = K Q^T (keys down, queries across), so the
// softmax runs down columns in whole vectors for all heads of the chunk at
// once. The backward recomputes P per tile:
//   dP_drop = dO V^T, dP = dropout'(dP_drop), D_i = sum_j P_ij dP_ij,
//   dS = P (dP - D) / sqrt(hd), dQ = dS K, dK += dS^T Q, dV += P_drop^T dO.
// Dropout element index: the flat index of the score in [B, H, G, block, block]
// order, drawn as dropout() does (philox_uniform<T>(seed, offset, i) < p drops).
// Products go through tile::small_gemm (register-tiled), or a 32-byte-vector
// kernel here when the result is at most 8 floats wide; every task computes
// the same numbers whichever thread runs it, and dK, dV sum the query tiles
// in order, so results do not depend on the thread count.
//
// CUDA kernels dispatched to (q, k, v with unit head-dim stride; out and the
// gradients contiguous [B, S, H, hd]; key_keep [B, S] of q's dtype, nonzero =
// keep, or undefined):
//   "block_attention_forward"  void(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
//                                   const Tensor& key_keep, int64_t block, int64_t stride, double p,
//                                   uint64_t seed, uint64_t offset)
//   "block_attention_backward" void(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
//                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
//                                   int64_t block, int64_t stride, double p, uint64_t seed, uint64_t offset)
//   and for block == S > 128, the flash kernels (lse [B * H * S] saved by the forward, out saved too):
//   "flash_attention_forward"  void(out, lse, q, k, v, key_keep, block, stride, p, seed, offset)
//   "flash_attention_backward" void(dq, dk, dv, dout, q, k, v, out, lse, key_keep, block, stride, p, seed, offset)
#include "ops/block_attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ops/common.h"
#include "ops/tile_gemm.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

using tile::small_gemm;

constexpr double kMaskedScore = -1e6;  // the LRA code's "- 1e6 * (1 - mask)"

struct Geometry {
  int64_t B, S, H, hd, block, stride, G;
  // First token of group c; slot j is at first(c) + j * stride.
  int64_t first(int64_t c) const { return (c / stride) * block * stride + c % stride; }
};

// A [B, S, H, hd] operand's element strides (unit head-dim stride).
struct Operand {
  const void* data;
  int64_t sb, st, sh;
  // Head h of slot 0 of group c (batch b); slots are row(g) elements apart.
  template <class T>
  const T* group(const Geometry& g, int64_t b, int64_t h, int64_t c) const {
    return static_cast<const T*>(data) + b * sb + g.first(c) * st + h * sh;
  }
  int64_t row(const Geometry& g) const { return g.stride * st; }
};

Operand operand(const Tensor& t) { return {t.raw_data(), t.strides()[0], t.strides()[1], t.strides()[2]}; }

// How the work is cut. A task is (batch b, group c, head chunk): Hc heads
// whose hd-vectors lie side by side in a token row (W = Hc * hd floats, one
// 256-byte run at the ViTs' D = 64), so every token row of q, k, v is packed
// once per group instead of once per head; at hd = 8 a per-head task read
// 32-byte pieces of rows stride * H * hd apart, and did so H times.
// Queries go in tiles of QT rows (whole blocks up to 128, else 64): scratch
// is per thread and at most block x Hc * QT scores (flash-attention style:
// nothing S x S lives beyond a tile). Hc is capped so that W <= 128 and the
// score tile of all Hc heads (block x Hc * QT) stays within 32 KB, about L1:
// past that the column softmax and the products stream it from L2 (dense
// block 64 at hd 16 ran 5-10% slower with all 8 heads in one task).
struct Plan {
  int64_t QT, Hc, NC, W;
  // Products with an hd-wide result run with lanes over the queries, into a
  // transposed [W, QT] buffer, when that fills the vectors better (hd 8
  // against blocks of 16 and 32); else with lanes over the head dim.
  bool out_t;
  template <class T>
  static Plan make(const Geometry& g) {
    constexpr int64_t L = tile::kLanes<T>;
    Plan p{};
    p.QT = g.block <= 128 ? g.block : 64;
    p.Hc = 1;
    for (int64_t c = g.H; c >= 1; --c)
      if (g.H % c == 0 && c * g.hd <= 128 && c * p.QT * g.block <= 8192) {
        p.Hc = c;
        break;
      }
    p.NC = g.H / p.Hc;
    p.W = p.Hc * g.hd;
    auto vecs = [&](int64_t n) { return (n + L - 1) / L; };
    p.out_t = g.hd * vecs(p.QT) <= p.QT * vecs(g.hd);
    return p;
  }
};

// Per-thread scratch, reused by every task a thread runs. Rows of a group are
// packed into contiguous buffers first: rows `stride` tokens apart sit at
// power-of-two distances (stride * H * hd elements) that map to one cache
// set, and would thrash L1/L2 if every product read them in place.
//   kp, vp [block, W]   K and V rows of the chunk
//   qp, dop [QT, W]     Q and dO rows of the query tile
//   qt, dot [W, QT]     the same transposed (qt scaled by 1 / sqrt(hd))
//   s, ds [block, Hc * QT]   P^T and dS^T of all Hc heads side by side:
//                       keys down, (head, query) across, so the softmax runs
//                       down the columns with whole vectors and no
//                       horizontal reductions, for all heads at once
//   o [QT * W]          an hd-wide result (O, dQ): [W, QT] if out_t, else [QT, W]
//   dk, dv [block, W]   the chunk's key gradients, summed over query tiles
template <class T>
struct Scratch {
  std::vector<T> kp, vp, qp, qt, dop, dot, s, ds, o, dk, dv, bias, mx, inv, dcol;
  std::vector<uint64_t> colbase;
  Scratch(const Geometry& g, const Plan& pl, bool backward) {
    const int64_t kv = g.block * pl.W, qw = pl.QT * pl.W, sc = g.block * pl.Hc * pl.QT, cols = pl.Hc * pl.QT;
    kp.resize(kv);
    vp.resize(kv);
    qp.resize(qw);
    qt.resize(qw);
    s.resize(sc);
    o.resize(qw);
    bias.resize(g.block);
    mx.resize(cols);
    inv.resize(cols);
    dcol.resize(cols);
    colbase.resize(cols);
    if (backward) {
      dop.resize(qw);
      dot.resize(qw);
      ds.resize(sc);
      dk.resize(kv);
      dv.resize(kv);
    }
  }
};

// dst[0, n) = src[0, n) for the short rows packed here, in whole vectors.
// Not tile::copy_short: GCC recognises its loop as a copy and turns it into
// a memmove call per 32- to 512-byte row (call and size dispatch for a few
// vector moves); the empty asm makes the loaded vector opaque to that.
template <class T>
inline void copy_row(T* __restrict dst, const T* __restrict src, int64_t n) {
  constexpr int L = tile::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    tile::Vec<T> x = tile::load<T>(src + i);
#if DIMIX_TILE_MASKED
    asm("" : "+v"(x));
#endif
    tile::store<T>(dst + i, x);
  }
#if DIMIX_TILE_MASKED
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    tile::store_first<T>(dst + i, tile::load_first<T>(src + i, rest), rest);
  }
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}

// dst [rows, W] <- heads [h0, h0 + Hc) of `rows` token rows `step` elements
// apart (src at head h0 of the first row; heads sh apart).
template <class T>
void pack_rows(T* dst, const T* src, int64_t step, int64_t rows, int64_t sh, const Geometry& g, const Plan& pl) {
  if (sh == g.hd || pl.Hc == 1) {
    for (int64_t j = 0; j < rows; ++j) copy_row(dst + j * pl.W, src + j * step, pl.W);
  } else {
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t e = 0; e < pl.Hc; ++e) copy_row(dst + j * pl.W + e * g.hd, src + j * step + e * sh, g.hd);
  }
}
// dst rows `step` apart (a contiguous [B, S, H, hd] output) <- src [rows, W].
template <class T>
void unpack_rows(T* dst, int64_t step, const T* src, int64_t rows, int64_t W) {
  for (int64_t j = 0; j < rows; ++j) copy_row(dst + j * step, src + j * W, W);
}
// An hd-wide result buffer (see Scratch::o) -> rows `step` apart.
template <class T>
void store_result(T* dst, int64_t step, const T* o, int64_t rows, const Plan& pl) {
  if (pl.out_t) tile::transpose(o, rows, dst, step, pl.W, rows);
  else unpack_rows(dst, step, o, rows, pl.W);
}

// ---- narrow products -----------------------------------------------------------------
// C[m, n] (=|+=) row_init[m] + sum_k A(m, k) B[k, n], as tile::small_gemm,
// for N up to half a 64-byte vector (8 floats, 4 doubles): the hd = 8
// products (dK, dV; O and dQ with lanes over the head dim) and the 8-query
// score tiles of block 8. small_gemm runs them on half-masked 64-byte
// vectors, each a whole 512-bit op (two 256-bit halves on AMD Zen 4);
// 32-byte vectors do the same work in half the vector-unit time (measured:
// 3-6% off the backward at hd 8, where dK and dV are such products).
#if DIMIX_TILE_MASKED && defined(__AVX512VL__)
#define DIMIX_BA_NARROW 1
#else
#define DIMIX_BA_NARROW 0
#endif
#if DIMIX_BA_NARROW
template <class T> inline constexpr int kHalf = tile::kLanes<T> / 2;
template <class T> using Half = tile::Vec<T, kHalf<T>>;

// The first n (0 < n <= half) elements of p, zeros elsewhere; and the store.
template <class T>
inline Half<T> load_half(const T* p, int n) {
  if constexpr (sizeof(T) == 4) return (Half<T>)_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << n) - 1), p);
  else return (Half<T>)_mm256_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
}
template <class T>
inline void store_half(T* p, Half<T> v, int n) {
  if constexpr (sizeof(T) == 4) _mm256_mask_storeu_ps(p, static_cast<__mmask8>((1u << n) - 1), (__m256)v);
  else _mm256_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), (__m256d)v);
}

// MR rows of C over the whole K loop, in registers.
template <class T, int MR, bool Masked>
inline void narrow_kernel(int64_t K, const T* __restrict A, int64_t a_m, int64_t a_k, const T* __restrict B,
                          int64_t b_k, T* C, int64_t c_m, const T* row_init, bool accumulate, int n) {
  using V = Half<T>;
  auto ld = [&](const T* p) -> V {
    if constexpr (Masked) return load_half<T>(p, n);
    else return tile::load<T, kHalf<T>>(p);
  };
  V acc[MR];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    acc[m] = accumulate ? ld(C + m * c_m) : V{};
    if (row_init) acc[m] += row_init[m];
  }
  for (int64_t k = 0; k < K; ++k) {
    const V b = ld(B + k * b_k);
    const T* a = A + k * a_k;
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) acc[m] += a[m * a_m] * b;
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    if constexpr (Masked) store_half<T>(C + m * c_m, acc[m], n);
    else tile::store<T, kHalf<T>>(C + m * c_m, acc[m]);
  }
}

template <class T, bool Masked>
void narrow_gemm(int64_t M, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B, int64_t b_k, T* C,
                 int64_t c_m, const T* row_init, bool accumulate, int n) {
  constexpr int MR = 12;
  int64_t m0 = 0;
  for (; m0 + MR <= M; m0 += MR)
    narrow_kernel<T, MR, Masked>(K, A + m0 * a_m, a_m, a_k, B, b_k, C + m0 * c_m, c_m,
                                 row_init ? row_init + m0 : nullptr, accumulate, n);
  if (m0 == M) return;
  tile::dispatch_count<MR - 1>(M - m0, [&]<int R>() {
    narrow_kernel<T, R, Masked>(K, A + m0 * a_m, a_m, a_k, B, b_k, C + m0 * c_m, c_m,
                                row_init ? row_init + m0 : nullptr, accumulate, n);
  });
}
#endif

// C = (accumulate ? C : 0) + row_init + A B: narrow_gemm where N fits half a
// vector, else tile::small_gemm.
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B, int64_t b_k, T* C,
          int64_t c_m, const T* row_init = nullptr, bool accumulate = false) {
#if DIMIX_BA_NARROW
  if (N <= kHalf<T>) {
    if (M <= 0 || N <= 0) return;
    if (N == kHalf<T>) narrow_gemm<T, false>(M, K, A, a_m, a_k, B, b_k, C, c_m, row_init, accumulate, N);
    else narrow_gemm<T, true>(M, K, A, a_m, a_k, B, b_k, C, c_m, row_init, accumulate, static_cast<int>(N));
    return;
  }
#endif
  small_gemm<T>(M, N, K, A, a_m, a_k, B, b_k, C, c_m, row_init, nullptr, accumulate);
}

// The f32 softmax (with AVX-512) takes its scores in base-2 units, scaled
// by log2(e) along with 1 / sqrt(hd) (and the -1e6 of masked keys with
// them), so its exponential is a bare 2^x; f64, the gradcheck reference,
// and builds without AVX-512 keep natural units and exp_vec.
template <class T>
inline constexpr bool kBase2 = DIMIX_TILE_MASKED && std::is_same_v<T, float>;
template <class T>
T score_unit() { return kBase2<T> ? T(1.4426950408889634) : T(1); }

// Key bias of group c for batch b (0 or -1e6 in score units), from key_keep
// [B, S] (nonzero = keep).
template <class T>
void group_key_bias(T* bias, const T* keep, const Geometry& g, int64_t b, int64_t c) {
  const T masked = static_cast<T>(kMaskedScore) * score_unit<T>();
  for (int64_t j = 0; j < g.block; ++j)
    bias[j] = keep && keep[b * g.S + g.first(c) + j * g.stride] == T(0) ? masked : T(0);
}

// Column-wise softmax of a [rows, w] tile (each column one query of one
// head, rows its keys), left unnormalised: s <- exp(s - column max), and
// inv <- 1 / column sum. Every step is a whole-row vector loop over the
// columns: no horizontal max or sum, and no short-row remainder loops at
// the paper's 8, 16 and 32 keys. The 1 / sum is applied by the callers
// where it is cheaper: to the [hd, n] output instead of the [block, n] P.
template <class T>
void softmax_columns(T* s, int64_t rows, int64_t w, T* __restrict mx, T* __restrict inv) {
  copy_row(mx, s, w);
  for (int64_t j = 1; j < rows; ++j) {
    const T* __restrict r = s + j * w;
#pragma omp simd
    for (int64_t x = 0; x < w; ++x) mx[x] = r[x] > mx[x] ? r[x] : mx[x];
  }
  for (int64_t j = 0; j < rows; ++j) {
    T* __restrict r = s + j * w;
    if (j == 0) {
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) inv[x] = r[x] = exp_vec(r[x] - mx[x]);
      continue;
    }
#pragma omp simd
    for (int64_t x = 0; x < w; ++x) {
      const T e = exp_vec(r[x] - mx[x]);
      r[x] = e;
      inv[x] += e;
    }
  }
#pragma omp simd
  for (int64_t x = 0; x < w; ++x) inv[x] = T(1) / inv[x];
}

#if DIMIX_TILE_MASKED
using avx512::exp2_nonpositive;  // 2^x for x = score - column max <= 0 (base-2 units)
using avx512::kAll;

// The f32 column softmax, 16 columns at a time through both passes (a
// rows x 16 strip stays in L1).
template <>
void softmax_columns<float>(float* s, int64_t rows, int64_t w, float* __restrict, float* __restrict inv) {
  for (int64_t x0 = 0; x0 < w; x0 += 16) {
    const int64_t nv = std::min<int64_t>(16, w - x0);
    const __mmask16 k = static_cast<__mmask16>(nv == 16 ? 0xFFFFu : (1u << nv) - 1);
    float* c = s + x0;
    __m512 m = _mm512_maskz_loadu_ps(k, c);
    for (int64_t j = 1; j < rows; ++j) m = _mm512_maskz_max_ps(kAll, m, _mm512_maskz_loadu_ps(k, c + j * w));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < rows; ++j) {
      const __m512 e = exp2_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, c + j * w), m));
      _mm512_mask_storeu_ps(c + j * w, k, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_mask_storeu_ps(inv + x0, k, _mm512_div_ps(_mm512_set1_ps(1.0f), sum));
  }
}
#endif

// Dropout on a [rows = keys, w] transposed tile: element (j, x) has the flat
// score index colbase[x] + j (colbase: the index of key 0 of column x).
template <class T>
void dropout_columns(T* s, int64_t rows, int64_t w, const uint64_t* colbase, double p, uint64_t seed,
                     uint64_t offset) {
  const T threshold = static_cast<T>(p), scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t j = 0; j < rows; ++j) {
    T* r = s + j * w;
#pragma omp simd
    for (int64_t x = 0; x < w; ++x) {
      const T u = philox_uniform<T>(seed, offset, colbase[x] + static_cast<uint64_t>(j));
      r[x] = u < threshold ? T(0) : r[x] * scale;
    }
  }
}

// One query tile of one task, up to the probabilities: packs Q (and its
// scaled transpose), then s = exp(S^T - max) of the Hc heads, [block, Hc * n],
// and w.inv = 1 / its column sums: P^T = s * inv, unnormalised (see
// softmax_columns). With drop_now, s is also dropped out in place.
template <class T>
void tile_probabilities(Scratch<T>& w, const Operand& Q, const Geometry& g, const Plan& pl, int64_t b, int64_t c,
                        int64_t h0, int64_t i0, int64_t n, double p, uint64_t seed, uint64_t offset,
                        bool drop_now) {
  const int64_t cw = pl.Hc * n;
  pack_rows(w.qp.data(), Q.group<T>(g, b, h0, c) + i0 * Q.row(g), Q.row(g), n, Q.sh, g, pl);
  tile::transpose(w.qp.data(), pl.W, w.qt.data(), n, n, pl.W);
  const T scale = static_cast<T>(score_unit<T>() / std::sqrt(static_cast<double>(g.hd)));
  T* __restrict qt = w.qt.data();
#pragma omp simd
  for (int64_t e = 0; e < pl.W * n; ++e) qt[e] *= scale;
  // S^T_h = K_h (Q_h / sqrt(hd))^T + key bias (rows: keys).
  for (int64_t e = 0; e < pl.Hc; ++e)
    gemm<T>(g.block, n, g.hd, w.kp.data() + e * g.hd, pl.W, 1, w.qt.data() + e * g.hd * n, n, w.s.data() + e * n,
            cw, w.bias.data());
  softmax_columns(w.s.data(), g.block, cw, w.mx.data(), w.inv.data());
  if (p > 0) {
    // Column (e, i) is query i0 + i of head h0 + e: score index ((b, h, c) task * block + query) * block + key.
    for (int64_t e = 0; e < pl.Hc; ++e) {
      const int64_t task = (b * g.H + h0 + e) * g.G + c;
      for (int64_t i = 0; i < n; ++i) w.colbase[e * n + i] = static_cast<uint64_t>((task * g.block + i0 + i) * g.block);
    }
    if (drop_now) dropout_columns(w.s.data(), g.block, cw, w.colbase.data(), p, seed, offset);
  }
}

// An hd-wide product of head e: o_h[i, d] = sum_j st[j, e * n + i] rows[j, e * hd + d],
// st a transposed tile ([keys, Hc * n]) and rows packed [block, W]; into
// the [W, n] or [n, W] layout of Scratch::o.
template <class T>
void hd_product(T* o, const T* st, int64_t cw, const T* rows, const Geometry& g, const Plan& pl, int64_t e,
                int64_t n) {
  if (pl.out_t)
    gemm<T>(g.hd, n, g.block, rows + e * g.hd, 1, pl.W, st + e * n, cw, o + e * g.hd * n, n);
  else
    gemm<T>(n, g.hd, g.block, st + e * n, 1, cw, rows + e * g.hd, pl.W, o + e * g.hd, pl.W);
}

// o_h[i, :] *= inv[e * n + i] for every head: the softmax's 1 / sum, applied
// to the n x hd output rather than the block x n probabilities.
template <class T>
void normalise_result(T* o, const T* inv, const Geometry& g, const Plan& pl, int64_t n) {
  if (pl.out_t) {
    for (int64_t r = 0; r < pl.W; ++r) {
      T* __restrict row = o + r * n;
      const T* __restrict f = inv + (r / g.hd) * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) row[i] *= f[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t e = 0; e < pl.Hc; ++e) {
        T* __restrict row = o + i * pl.W + e * g.hd;
        const T f = inv[e * n + i];
#pragma omp simd
        for (int64_t d = 0; d < g.hd; ++d) row[d] *= f;
      }
  }
}

template <class T>
void forward_cpu(const Tensor& out, const Operand& Q, const Operand& K, const Operand& V, const T* keep,
                 const Geometry& g, double p, uint64_t seed, uint64_t offset) {
  T* o = out.data<T>();
  const Plan pl = Plan::make<T>(g);
  const int64_t ro = g.stride * g.H * g.hd;
  tile::for_each_task(g.B * g.G * pl.NC, [&] { return Scratch<T>(g, pl, false); }, [&](Scratch<T>& w, int64_t t) {
    const int64_t h0 = (t % pl.NC) * pl.Hc, c = (t / pl.NC) % g.G, b = t / (pl.NC * g.G);
    group_key_bias(w.bias.data(), keep, g, b, c);
    pack_rows(w.kp.data(), K.group<T>(g, b, h0, c), K.row(g), g.block, K.sh, g, pl);
    pack_rows(w.vp.data(), V.group<T>(g, b, h0, c), V.row(g), g.block, V.sh, g, pl);
    T* oc = o + ((b * g.S + g.first(c)) * g.H + h0) * g.hd;
    for (int64_t i0 = 0; i0 < g.block; i0 += pl.QT) {
      const int64_t n = std::min(pl.QT, g.block - i0), cw = pl.Hc * n;
      tile_probabilities(w, Q, g, pl, b, c, h0, i0, n, p, seed, offset, true);
      // O_h = P_drop,h V_h = (dropout(E_h) V_h) / sum.
      for (int64_t e = 0; e < pl.Hc; ++e) hd_product(w.o.data(), w.s.data(), cw, w.vp.data(), g, pl, e, n);
      normalise_result(w.o.data(), w.inv.data(), g, pl, n);
      store_result(oc + i0 * ro, ro, w.o.data(), n, pl);
    }
  });
}

template <class T>
void backward_cpu(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Operand& Q,
                  const Operand& K, const Operand& V, const T* keep, const Geometry& g, double p, uint64_t seed,
                  uint64_t offset) {
  const Plan pl = Plan::make<T>(g);
  const int64_t ro = g.stride * g.H * g.hd;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(g.hd)));
  tile::for_each_task(g.B * g.G * pl.NC, [&] { return Scratch<T>(g, pl, true); }, [&](Scratch<T>& w, int64_t t) {
    const int64_t h0 = (t % pl.NC) * pl.Hc, c = (t / pl.NC) % g.G, b = t / (pl.NC * g.G);
    const int64_t at = ((b * g.S + g.first(c)) * g.H + h0) * g.hd;  // group start in the contiguous tensors
    group_key_bias(w.bias.data(), keep, g, b, c);
    pack_rows(w.kp.data(), K.group<T>(g, b, h0, c), K.row(g), g.block, K.sh, g, pl);
    pack_rows(w.vp.data(), V.group<T>(g, b, h0, c), V.row(g), g.block, V.sh, g, pl);
    T* P = w.s.data();
    T* dS = w.ds.data();
    for (int64_t i0 = 0; i0 < g.block; i0 += pl.QT) {
      const int64_t n = std::min(pl.QT, g.block - i0), cw = pl.Hc * n;
      tile_probabilities(w, Q, g, pl, b, c, h0, i0, n, p, seed, offset, false);
      pack_rows(w.dop.data(), dout.data<T>() + at + i0 * ro, ro, n, g.hd, g, pl);
      tile::transpose(w.dop.data(), pl.W, w.dot.data(), n, n, pl.W);
      // dP_drop^T = V dO^T per head, then dP = dropout'(dP_drop).
      for (int64_t e = 0; e < pl.Hc; ++e)
        gemm<T>(g.block, n, g.hd, w.vp.data() + e * g.hd, pl.W, 1, w.dot.data() + e * g.hd * n, n, dS + e * n, cw);
      if (p > 0) dropout_columns(dS, g.block, cw, w.colbase.data(), p, seed, offset);
      // With P = E * inv (E in P's buffer): D_i = sum_j P_ij dP_ij = inv_i sum_j E_ij dP_ij and
      // dS = P (dP - D) / sqrt(hd) = E (inv / sqrt(hd)) (dP - D); the same pass normalises E into P.
      T* __restrict D = w.dcol.data();
      T* __restrict f = w.mx.data();
      const T* __restrict inv = w.inv.data();
      for (int64_t j = 0; j < g.block; ++j) {
        const T* __restrict er = P + j * cw;
        const T* __restrict dr = dS + j * cw;
        if (j == 0) {
#pragma omp simd
          for (int64_t x = 0; x < cw; ++x) D[x] = er[x] * dr[x];
          continue;
        }
#pragma omp simd
        for (int64_t x = 0; x < cw; ++x) D[x] += er[x] * dr[x];
      }
#pragma omp simd
      for (int64_t x = 0; x < cw; ++x) {
        D[x] *= inv[x];
        f[x] = inv[x] * scale;
      }
      for (int64_t j = 0; j < g.block; ++j) {
        T* __restrict er = P + j * cw;
        T* __restrict dr = dS + j * cw;
#pragma omp simd
        for (int64_t x = 0; x < cw; ++x) {
          dr[x] = er[x] * f[x] * (dr[x] - D[x]);
          er[x] *= inv[x];
        }
      }
      // dQ_h = dS_h K_h (this tile's queries).
      for (int64_t e = 0; e < pl.Hc; ++e) hd_product(w.o.data(), dS, cw, w.kp.data(), g, pl, e, n);
      store_result(dq.data<T>() + at + i0 * ro, ro, w.o.data(), n, pl);
      // dK_h += dS_h^T Q_h, dV_h += P_drop,h^T dO_h (keys down, summed over the tiles in order).
      for (int64_t e = 0; e < pl.Hc; ++e)
        gemm<T>(g.block, g.hd, n, dS + e * n, cw, 1, w.qp.data() + e * g.hd, pl.W, w.dk.data() + e * g.hd, pl.W,
                nullptr, i0 > 0);
      if (p > 0) dropout_columns(P, g.block, cw, w.colbase.data(), p, seed, offset);
      for (int64_t e = 0; e < pl.Hc; ++e)
        gemm<T>(g.block, g.hd, n, P + e * n, cw, 1, w.dop.data() + e * g.hd, pl.W, w.dv.data() + e * g.hd, pl.W,
                nullptr, i0 > 0);
    }
    unpack_rows(dk.data<T>() + at, ro, w.dk.data(), g.block, pl.W);
    unpack_rows(dv.data<T>() + at, ro, w.dv.data(), g.block, pl.W);
  });
}

// q/k/v with a unit head-dim stride (a contiguous copy otherwise).
Tensor unit_inner(const Tensor& t) { return t.strides()[3] == 1 || t.sizes()[3] == 1 ? t : t.contiguous_raw(); }

}  // namespace

Tensor block_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int64_t block, int64_t stride,
                       const Tensor& key_mask, double dropout_p, Generator* gen) {
  const char* op = "block_attention";
  check_floating(op, q_in);
  check_dim(op, q_in, 4, "q [B, S, H, hd]");
  for (const Tensor* t : {&k_in, &v_in}) {
    check_same_device(op, q_in, *t);
    check_same_dtype(op, q_in, *t);
    DIMIX_CHECK(t->sizes() == q_in.sizes(), op, ": q, k, v must have the same shape [B, S, H, hd], got q ",
                q_in.shape_str(), ", k ", k_in.shape_str(), ", v ", v_in.shape_str());
  }
  const int64_t B = q_in.sizes()[0], S = q_in.sizes()[1], H = q_in.sizes()[2], hd = q_in.sizes()[3];
  DIMIX_CHECK(block >= 1 && stride >= 1, op, ": block and stride must be >= 1, got block ", block, ", stride ", stride);
  DIMIX_CHECK(S % block == 0, op, ": sequence length S = ", S, " of q ", q_in.shape_str(),
              " is not divisible by block ", block);
  const int64_t G = S / block;
  DIMIX_CHECK(G % stride == 0, op, ": the number of groups S / block = ", S, " / ", block, " = ", G,
              " must be divisible by stride ", stride);
  DIMIX_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  Tensor keep;
  if (key_mask.defined()) {
    check_same_device(op, q_in, key_mask);
    DIMIX_CHECK(key_mask.dim() == 2 && key_mask.sizes()[0] == B && key_mask.sizes()[1] == S, op,
                ": expected key_mask [B, S] = [", B, ", ", S, "] for q ", q_in.shape_str(), ", got ",
                key_mask.shape_str());
    keep = cast_raw(key_mask, q_in.dtype());  // nonzero stays nonzero
  }
  const Geometry g{B, S, H, hd, block, stride, G};
  uint64_t seed = 0, offset = 0;
  if (dropout_p > 0) {
    Generator& gr = gen ? *gen : default_generator();
    seed = gr.seed();
    offset = gr.reserve(static_cast<uint64_t>(B * H * S * block));
  }
  const Tensor q = unit_inner(q_in), k = unit_inner(k_in), v = unit_inner(v_in);
  Tensor out = empty({B, S, H, hd}, q.dtype(), q.device());
  if (out.numel() == 0) return out;
  // CUDA, dense and long (block == S > 128): the flash kernels, which keep
  // the per-row logsumexp (and the output) for the backward instead of
  // recomputing them (cuda/flash_attention.cu).
  const bool flash = q.device().is_cuda() && block == S && S > 128;
  Tensor lse;
  if (flash) {
    lse = empty({B * H * S}, q.dtype(), q.device());
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                     int64_t, double, uint64_t, uint64_t)>("flash_attention_forward")(out, lse, q, k, v, keep, block,
                                                                                      stride, dropout_p, seed, offset);
  } else if (q.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double,
                     uint64_t, uint64_t)>("block_attention_forward")(out, q, k, v, keep, block, stride, dropout_p, seed,
                                                                      offset);
  } else {
    dispatch_float(q.dtype(), op, [&]<class T>() {
      forward_cpu<T>(out, operand(q), operand(k), operand(v), keep.defined() ? keep.data<T>() : nullptr, g, dropout_p,
                     seed, offset);
    });
  }
  if (needs_grad({q_in, k_in, v_in})) {
    const Tensor sq = q.detach(), sk = k.detach(), sv = v.detach();
    const Tensor saved_out = flash ? out.detach() : Tensor();  // detached: no cycle through out's own node
    record(out, op, {q_in, k_in, v_in}, [=](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor dout = grad.contiguous_raw();
      Tensor dq = empty(sq.sizes(), sq.dtype(), sq.device());
      Tensor dk = empty(sq.sizes(), sq.dtype(), sq.device());
      Tensor dv = empty(sq.sizes(), sq.dtype(), sq.device());
      if (flash) {
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double, uint64_t,
                         uint64_t)>("flash_attention_backward")(dq, dk, dv, dout, sq, sk, sv, saved_out, lse, keep,
                                                                block, stride, dropout_p, seed, offset);
      } else if (sq.device().is_cuda()) {
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, int64_t, int64_t, double, uint64_t, uint64_t)>(
            "block_attention_backward")(dq, dk, dv, dout, sq, sk, sv, keep, block, stride, dropout_p, seed, offset);
      } else {
        dispatch_float(sq.dtype(), "block_attention", [&]<class T>() {
          backward_cpu<T>(dq, dk, dv, dout, operand(sq), operand(sk), operand(sv),
                          keep.defined() ? keep.data<T>() : nullptr, g, dropout_p, seed, offset);
        });
      }
      return {dq, dk, dv};
    });
  }
  return out;
}

// ---- registry cases -------------------------------------------------------------------
namespace {
// q, k, v as slices of one fused [B, S, 3, H, hd] tensor (a QKV projection's output).
std::vector<Tensor> fused_qkv(Generator& g, DType t, const Shape& shape) {
  const Tensor qkv = randn({shape[0], shape[1], 3, shape[2], shape[3]}, t, &g);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < 3; ++i) {
    const Shape st = qkv.strides();
    Tensor view = qkv.as_strided(shape, {st[0], st[1], st[3], st[4]}, qkv.offset() + i * st[2]);
    view.set_requires_grad(true);
    out.push_back(view);
  }
  return out;
}
}  // namespace

DIMIX_REGISTER_OP_CASES({
    // Butterfly groups: S = 12, block 3, stride 2 (groups {0,2,4}, {1,3,5}, ...).
    {"block_attention/block3_stride2", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 12, 2, 3}, t), randn_input(g, {2, 12, 2, 3}, t),
                          randn_input(g, {2, 12, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 3, 2); }},
    // Dense: block = S, odd sizes.
    {"block_attention/dense", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {1, 7, 3, 5}, t), randn_input(g, {1, 7, 3, 5}, t),
                          randn_input(g, {1, 7, 3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 7, 1); }},
    // A key mask with zeros (one row of batch 1 fully masked in a group).
    {"block_attention/key_mask", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 1, 4}, t), randn_input(g, {2, 8, 1, 4}, t),
                          randn_input(g, {2, 8, 1, 4}, t)}; },
     [](const std::vector<Tensor>& x) {
       const Tensor mask = from_vector<int64_t>({1, 0, 1, 1, 0, 1, 1, 1,  0, 0, 1, 0, 1, 0, 0, 1}, {2, 8});
       return block_attention(x[0], x[1], x[2], 4, 2, mask);
     }},
    // Attention dropout from a fixed generator (the same mask in every call).
    {"block_attention/dropout", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 8, 2, 3}, t), randn_input(g, {2, 8, 2, 3}, t),
                          randn_input(g, {2, 8, 2, 3}, t)}; },
     [](const std::vector<Tensor>& x) {
       Generator gen(21);
       return block_attention(x[0], x[1], x[2], 4, 1, Tensor(), 0.3, &gen);
     }},
    // Non-contiguous q, k, v: slices of one fused QKV tensor, stride 3 groups.
    {"block_attention/fused_qkv_noncontig", [](Generator& g, DType t) { return fused_qkv(g, t, {2, 18, 2, 4}); },
     [](const std::vector<Tensor>& x) { return block_attention(x[0], x[1], x[2], 3, 3); }},
});

}  // namespace dimix
