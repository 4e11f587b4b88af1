// Slabs: the unit of work of the fused block ops (block_mlp, block_chain),
// and the driver that runs such an op's body over all of x.
//
// x is viewed as [outer, n, inner] around the mixed dim (view_around_dim,
// block_linear.h). A slab is the n positions of one unit of work, W values
// each, position p at ptr + p * ps with its W values contiguous (the vector
// lanes):
//  - inner > 1 (mixing a middle dim): one row of `outer`, in place, W = inner;
//  - inner == 1 (mixing the last dim): W rows of x transposed into a tile
//    [n, W] (16 x 16 register blocks), so that rows become lanes.
// A fused op reads a slab, runs all its products on it in cache, and writes
// the result once; its backward recomputes what it needs per slab. Parameter
// gradients are summed per chunk of slabs whose size depends on the shape
// only, and the chunks are added in order: bitwise the same on any number
// of threads.
//
// The driver (forward / backward below) owns everything but the products:
// the tiles, the units and chunks, the optional layer norm before and
// residual after (PreNormResidual), and the ordered sum of the chunks'
// partial parameter gradients. The forward saves the norm's mean and rstd
// per row (a few KB), so that the backward's recompute of the norm is one
// pass over x instead of three. An op supplies a Body:
//
//   struct Body {
//     int64_t n_in, n_out;                 // lengths along the mixed dim
//     int64_t forward_scratch(int64_t W) const;   // elements per thread
//     int64_t backward_scratch(int64_t W) const;
//     int64_t sums() const;                // partial parameter-gradient elements
//     // src: n_in positions sps apart; dst: [n_out, W] contiguous.
//     void forward(int64_t W, const T* src, int64_t sps, T* dst, T* scratch) const;
//     // x: the forward's src; dy: [n_out, W] contiguous; dx: [n_in, W]
//     // contiguous or null; sums: this chunk's partials (add to them).
//     void backward(int64_t W, const T* x, int64_t xps, const T* dy, T* dx, T* sums, T* scratch) const;
//   };
// and calls slab::apply (slab_op.h), which runs this driver and records the
// op for autograd.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/tensor.h"
#include "ops/prenorm_residual.h"
#include "ops/tile_gemm.h"
#include "ops/vec_math.h"

namespace dimix::slab {

// Elements of x per chunk of the parameter-gradient sums.
inline constexpr int64_t kChunkElems = 32768;

// Units of work per gradient chunk, for slabs of n x W elements.
inline int64_t units_per_chunk(int64_t n, int64_t W) { return std::max<int64_t>(1, kChunkElems / (n * W)); }

template <class T>
T row_sum(const T* v, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// Rows [r0, r0 + rows) of x3 (inner == 1, row stride so, element stride sn)
// into the tile xt [n, W], lanes past `rows` zero (so that they add nothing
// to any gradient sum).
template <class T>
void load_tile(const T* x, int64_t so, int64_t sn, int64_t n, int64_t r0, int64_t rows, int64_t W, T* xt) {
  if (rows < W) std::fill(xt, xt + n * W, T(0));
  if (sn == 1) {
    tile::transpose(x + r0 * so, so, xt, W, rows, n);
  } else {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < rows; ++r) xt[p * W + r] = x[(r0 + r) * so + p * sn];
  }
}

// The tile [n, W] back into rows [r0, r0 + rows) of the contiguous y [outer, n].
template <class T>
void store_tile(const T* yt, int64_t n, int64_t r0, int64_t rows, int64_t W, T* y) {
  tile::transpose(yt, W, y + r0 * n, n, n, rows);
}

// ---- the driver -------------------------------------------------------------------------

// One call's shapes: x3 [outer, n_in, inner] (inner contiguous when > 1),
// y3 [outer, n_out, inner] contiguous; W lanes per slab (tile_w when tiled).
struct Geometry {
  int64_t outer, n_in, n_out, inner, so, sn, W, units;
  bool tiled;
  Geometry(const Tensor& x3, int64_t n_out_, int64_t tile_w)
      : outer(x3.sizes()[0]), n_in(x3.sizes()[1]), n_out(n_out_), inner(x3.sizes()[2]), so(x3.strides()[0]),
        sn(x3.strides()[1]), W(inner == 1 ? tile_w : inner), units(inner == 1 ? (outer + W - 1) / W : outer),
        tiled(inner == 1) {}
  int64_t rows(int64_t u) const { return tiled ? std::min(W, outer - u * W) : 0; }
  int64_t n_max() const { return std::max(n_in, n_out); }
};

// PreNormResidual's raw form. The norm is over the last dim of x, C values:
// runs of C lanes of each position when inner > 1 (C divides W), the n
// positions of each lane when tiled (C == n).
template <class T>
struct Around {
  bool norm = false, residual = false;
  const T *w = nullptr, *b = nullptr;
  T eps = T(1e-5);
  int64_t C = 0;
  // Normalised rows per unit of work: one per lane when tiled, n runs of
  // C lanes otherwise. The norm's statistics are a mean and an rstd per row.
  int64_t rows(const Geometry& g) const { return norm ? (g.tiled ? g.W : g.n_in * (g.W / C)) : 0; }
  // The forward's statistics of all of x, saved for the backward: the means
  // of every unit's rows, then their rstds.
  int64_t saved_stats(const Geometry& g) const { return 2 * g.units * rows(g); }
};

// The raw form of p, C = x's last dim; p's tensors contiguous.
template <class T>
Around<T> around_of(const PreNormResidual& p, int64_t C) {
  Around<T> a;
  a.norm = p.norm;
  a.residual = p.residual;
  a.w = p.weight.defined() ? p.weight.data<T>() : nullptr;
  a.b = p.bias.defined() ? p.bias.data<T>() : nullptr;
  a.eps = static_cast<T>(p.eps);
  a.C = C;
  return a;
}

// p with its tensors contiguous (and detached, for saving).
inline PreNormResidual contiguous_around(const PreNormResidual& p, bool detach = false) {
  auto c = [&](const Tensor& t) { return !t.defined() ? Tensor() : detach ? t.contiguous_raw().detach() : t.contiguous_raw(); };
  return {p.norm, c(p.weight), c(p.bias), p.eps, p.residual};
}

// The mean and rstd of one row of C contiguous values, in two passes as
// layer_norm.cpp.
template <class T>
void row_stats(const T* x, int64_t C, T eps, T& mu, T& rstd) {
  T m = 0, var = 0;
#pragma omp simd reduction(+ : m)
  for (int64_t i = 0; i < C; ++i) m += x[i];
  m /= T(C);
#pragma omp simd reduction(+ : var)
  for (int64_t i = 0; i < C; ++i) var += (x[i] - m) * (x[i] - m);
  mu = m;
  rstd = T(1) / std::sqrt(var / T(C) + eps);
}

// One normalised row: z = xh * w + b (w, b may be null), xh (may be null)
// = (x - mu) * rstd.
template <class T>
void row_apply(const T* x, int64_t C, T mu, T rstd, const T* w, const T* b, T* z, T* xh) {
  for (int64_t i = 0; i < C; ++i) {
    const T t = (x[i] - mu) * rstd;
    if (xh) xh[i] = t;
    z[i] = (w ? t * w[i] : t) + (b ? b[i] : T(0));
  }
}

// A row's backward: d the gradient of z; dx (may be null) = the gradient of
// x; dw, db (may be null) += the row's weight and bias gradients.
template <class T>
void norm_row_backward(const T* d, const T* h, int64_t C, const T* w, T rstd, T* dx, T* dw, T* db) {
  T sg = 0, sgh = 0;
#pragma omp simd reduction(+ : sg, sgh)
  for (int64_t i = 0; i < C; ++i) {
    const T gh = w ? d[i] * w[i] : d[i];
    sg += gh;
    sgh += gh * h[i];
  }
  if (dw)
    for (int64_t i = 0; i < C; ++i) dw[i] += d[i] * h[i];
  if (db)
    for (int64_t i = 0; i < C; ++i) db[i] += d[i];
  if (!dx) return;
  const T ma = sg / T(C), mb = sgh / T(C);
  for (int64_t i = 0; i < C; ++i) dx[i] = rstd * ((w ? d[i] * w[i] : d[i]) - ma - h[i] * mb);
}

#if defined(__AVX512F__)
// The same in AVX-512, 16 lanes and a masked tail (rows such as the T2
// mixers' 121 channels have a long scalar tail otherwise).
inline __mmask16 lanes_left(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1); }

// The sum of 16 lanes, halves first: _mm512_reduce_add_ps's order, without
// its spurious -Wmaybe-uninitialized under GCC 12.
inline float lane_sum(__m512 v) { return tile::hsum_tree<float, 16>((tile::Vec<float>)v); }

template <>
inline void row_stats<float>(const float* x, int64_t C, float eps, float& mu, float& rstd) {
  __m512 s = _mm512_setzero_ps();
  for (int64_t i = 0; i < C; i += 16) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(lanes_left(C - i), x + i));
  mu = lane_sum(s) / float(C);
  const __m512 vmu = _mm512_set1_ps(mu);
  __m512 v = _mm512_setzero_ps();
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 m = lanes_left(C - i);
    const __m512 c = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vmu);
    v = _mm512_fmadd_ps(c, c, v);
  }
  rstd = 1.0f / std::sqrt(lane_sum(v) / float(C) + eps);
}

template <>
inline void row_apply<float>(const float* x, int64_t C, float mu, float rstd, const float* w, const float* b,
                             float* z, float* xh) {
  const __m512 vmu = _mm512_set1_ps(mu), vr = _mm512_set1_ps(rstd), one = _mm512_set1_ps(1.0f),
               zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 m = lanes_left(C - i);
    const __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmu), vr);
    if (xh) _mm512_mask_storeu_ps(xh + i, m, t);
    const __m512 vw = w ? _mm512_maskz_loadu_ps(m, w + i) : one, vb = b ? _mm512_maskz_loadu_ps(m, b + i) : zero;
    _mm512_mask_storeu_ps(z + i, m, _mm512_fmadd_ps(t, vw, vb));
  }
}

template <>
inline void norm_row_backward<float>(const float* d, const float* h, int64_t C, const float* w, float rstd, float* dx,
                                     float* dw, float* db) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 sg = _mm512_setzero_ps(), sgh = _mm512_setzero_ps();
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 m = lanes_left(C - i);
    const __m512 vd = _mm512_maskz_loadu_ps(m, d + i), vh = _mm512_maskz_loadu_ps(m, h + i);
    const __m512 gh = _mm512_mul_ps(vd, w ? _mm512_maskz_loadu_ps(m, w + i) : one);
    sg = _mm512_add_ps(sg, gh);
    sgh = _mm512_fmadd_ps(gh, vh, sgh);
    if (dw) _mm512_mask_storeu_ps(dw + i, m, _mm512_fmadd_ps(vd, vh, _mm512_maskz_loadu_ps(m, dw + i)));
    if (db) _mm512_mask_storeu_ps(db + i, m, _mm512_add_ps(vd, _mm512_maskz_loadu_ps(m, db + i)));
  }
  if (!dx) return;
  const __m512 ma = _mm512_set1_ps(lane_sum(sg) / float(C));
  const __m512 mb = _mm512_set1_ps(lane_sum(sgh) / float(C)), vr = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 m = lanes_left(C - i);
    const __m512 gh = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + i), w ? _mm512_maskz_loadu_ps(m, w + i) : one);
    const __m512 r = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, h + i), mb, _mm512_sub_ps(gh, ma));
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vr, r));
  }
}

// The tiled norm's loops over the n positions of a [n, W] tile, W = 16 NV
// lanes, with the per-lane sums in registers: the generic loops below keep
// them in memory, a store-to-load chain per position. (perf: norm_stats and
// norm_backward went from 8.5% to 6.3% of a t2-butterfly-mlp-h1 step at
// batch 32, the rest being the untiled token branch's rows.)
template <int NV>
inline void tiled_stats_f32(const float* x, int64_t xps, int64_t n, float eps, float* mu, float* rs) {
  __m512 s[NV], q[NV];
  for (int v = 0; v < NV; ++v) s[v] = q[v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n; ++p)
    for (int v = 0; v < NV; ++v) s[v] = _mm512_add_ps(s[v], _mm512_loadu_ps(x + p * xps + 16 * v));
  const __m512 inv = _mm512_set1_ps(1.0f / float(n));
  for (int v = 0; v < NV; ++v) s[v] = _mm512_mul_ps(s[v], inv);
  for (int64_t p = 0; p < n; ++p)
    for (int v = 0; v < NV; ++v) {
      const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + p * xps + 16 * v), s[v]);
      q[v] = _mm512_fmadd_ps(c, c, q[v]);
    }
  const __m512 one = _mm512_set1_ps(1.0f), e = _mm512_set1_ps(eps);
  for (int v = 0; v < NV; ++v) {
    _mm512_storeu_ps(mu + 16 * v, s[v]);
    // (the maskz form: GCC 12 warns that the plain one reads an undefined vector)
    const __m512 sd = _mm512_maskz_sqrt_ps(avx512::kAll, _mm512_fmadd_ps(q[v], inv, e));
    _mm512_storeu_ps(rs + 16 * v, _mm512_div_ps(one, sd));
  }
}

template <int NV>
inline void tiled_norm_backward_f32(const float* dz, const float* xh, const float* rs, int64_t n, const float* w,
                                    float* dx, float* dw, float* db) {
  constexpr int64_t W = 16 * NV;
  __m512 sg[NV], sgh[NV];
  for (int v = 0; v < NV; ++v) sg[v] = sgh[v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n; ++p) {
    const __m512 wp = _mm512_set1_ps(w ? w[p] : 1.0f);
    __m512 sdh = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
    for (int v = 0; v < NV; ++v) {
      const __m512 d = _mm512_loadu_ps(dz + p * W + 16 * v), h = _mm512_loadu_ps(xh + p * W + 16 * v);
      const __m512 g = _mm512_mul_ps(d, wp);
      sg[v] = _mm512_add_ps(sg[v], g);
      sgh[v] = _mm512_fmadd_ps(g, h, sgh[v]);
      sdh = _mm512_fmadd_ps(d, h, sdh);
      sd = _mm512_add_ps(sd, d);
    }
    if (dw) dw[p] += lane_sum(sdh);
    if (db) db[p] += lane_sum(sd);
  }
  if (!dx) return;
  const __m512 inv = _mm512_set1_ps(1.0f / float(n));
  for (int v = 0; v < NV; ++v) {
    sg[v] = _mm512_mul_ps(sg[v], inv);
    sgh[v] = _mm512_mul_ps(sgh[v], inv);
  }
  for (int64_t p = 0; p < n; ++p) {
    const __m512 wp = _mm512_set1_ps(w ? w[p] : 1.0f);
    for (int v = 0; v < NV; ++v) {
      const int64_t at = p * W + 16 * v;
      const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(dz + at), wp);
      const __m512 r = _mm512_fnmadd_ps(_mm512_loadu_ps(xh + at), sgh[v], _mm512_sub_ps(g, sg[v]));
      _mm512_storeu_ps(dx + at, _mm512_mul_ps(_mm512_loadu_ps(rs + 16 * v), r));
    }
  }
}

// Calls f(std::integral_constant<int, NV>) for a tile of W = 16 NV lanes,
// NV = 1, 2, 4 or 8 (the tile widths of the ops): true if it did.
template <class F>
inline bool with_lane_vectors(int64_t W, F&& f) {
  switch (W) {
    case 16: f(std::integral_constant<int, 1>{}); return true;
    case 32: f(std::integral_constant<int, 2>{}); return true;
    case 64: f(std::integral_constant<int, 4>{}); return true;
    case 128: f(std::integral_constant<int, 8>{}); return true;
    default: return false;
  }
}
#endif

// The statistics of one slab's rows: mu and rs get a.rows(g) values each
// (per lane when tiled, else per position and run of C lanes).
template <class T>
void norm_stats(const Around<T>& a, const Geometry& g, const T* x, int64_t xps, T* mu, T* rs) {
  const int64_t n = g.n_in, W = g.W, C = a.C;
  if (!g.tiled) {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < W / C; ++r) row_stats(x + p * xps + r * C, C, a.eps, mu[p * (W / C) + r], rs[p * (W / C) + r]);
    return;
  }
  // Tiled: each lane is a row of x, its C = n values one per position.
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    if (with_lane_vectors(W, [&](auto nv) { tiled_stats_f32<nv()>(x, xps, n, a.eps, mu, rs); })) return;
#endif
  std::fill(mu, mu + W, T(0));
  std::fill(rs, rs + W, T(0));
  for (int64_t p = 0; p < n; ++p)
#pragma omp simd
    for (int64_t w = 0; w < W; ++w) mu[w] += x[p * xps + w];
  const T inv = T(1) / T(n);
  for (int64_t w = 0; w < W; ++w) mu[w] *= inv;
  for (int64_t p = 0; p < n; ++p)
#pragma omp simd
    for (int64_t w = 0; w < W; ++w) rs[w] += (x[p * xps + w] - mu[w]) * (x[p * xps + w] - mu[w]);
  for (int64_t w = 0; w < W; ++w) rs[w] = T(1) / std::sqrt(rs[w] * inv + a.eps);
}

// z = layer_norm(x) over one slab from its statistics; xh (may be null) =
// the normalised x before weight and bias.
template <class T>
void norm_apply(const Around<T>& a, const Geometry& g, const T* x, int64_t xps, const T* mu, const T* rs, T* z,
                T* xh) {
  const int64_t n = g.n_in, W = g.W, C = a.C;
  if (!g.tiled) {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < W / C; ++r) {
        const int64_t i = p * (W / C) + r, at = p * W + r * C;
        row_apply(x + p * xps + r * C, C, mu[i], rs[i], a.w, a.b, z + at, xh ? xh + at : nullptr);
      }
    return;
  }
  for (int64_t p = 0; p < n; ++p) {
    const T wp = a.w ? a.w[p] : T(1), bp = a.b ? a.b[p] : T(0);
#pragma omp simd
    for (int64_t w = 0; w < W; ++w) {
      const T t = (x[p * xps + w] - mu[w]) * rs[w];
      if (xh) xh[p * W + w] = t;
      z[p * W + w] = t * wp + bp;
    }
  }
}

// The norm's backward over one slab: dz the gradient of z, xh from
// norm_apply, rs the rows' rstds; dx (may be null) = the gradient of x; dw, db (may be null)
// += this slab's weight and bias gradients.
template <class T>
void norm_backward(const Around<T>& a, const Geometry& g, const T* dz, const T* xh, const T* rs, T* dx, T* dw, T* db,
                   T* lanes) {
  const int64_t n = g.n_in, W = g.W, C = a.C;
  if (!g.tiled) {
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < W / C; ++r) {
        const int64_t at = p * W + r * C;
        norm_row_backward(dz + at, xh + at, C, a.w, rs[p * (W / C) + r], dx ? dx + at : nullptr, dw, db);
      }
    return;
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    if (with_lane_vectors(W, [&](auto nv) { tiled_norm_backward_f32<nv()>(dz, xh, rs, n, a.w, dx, dw, db); }))
      return;
#endif
  T* sg = lanes;
  T* sgh = lanes + W;
  std::fill(sg, sg + 2 * W, T(0));
  for (int64_t p = 0; p < n; ++p) {
    const T wp = a.w ? a.w[p] : T(1);
    const T* d = dz + p * W;
    const T* h = xh + p * W;
#pragma omp simd
    for (int64_t w = 0; w < W; ++w) {
      sg[w] += d[w] * wp;
      sgh[w] += d[w] * wp * h[w];
    }
    if (dw) {
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t w = 0; w < W; ++w) s += d[w] * h[w];
      dw[p] += s;
    }
    if (db) db[p] += row_sum(d, W);
  }
  if (!dx) return;
  const T inv = T(1) / T(n);
  for (int64_t p = 0; p < n; ++p) {
    const T wp = a.w ? a.w[p] : T(1);
#pragma omp simd
    for (int64_t w = 0; w < W; ++w)
      dx[p * W + w] = rs[w] * (dz[p * W + w] * wp - sg[w] * inv - xh[p * W + w] * sgh[w] * inv);
  }
}

// x's slab of unit u: in place (positions sn apart), or loaded into the
// tile t when tiled (positions W apart).
template <class T>
std::pair<const T*, int64_t> x_slab(const Geometry& g, const T* x, int64_t u, T* t) {
  if (!g.tiled) return {x + u * g.so, g.sn};
  load_tile(x, g.so, g.sn, g.n_in, u * g.W, g.rows(u), g.W, t);
  return {t, g.W};
}

// The parameter gradients from backward's sums: grads[first + i] gets the
// next shape_numel(shapes[i]) values where wanted[first + i] (the sums hold
// every gradient in the order of the op's inputs, wanted or not).
template <class T>
void take_sums(const std::vector<T>& sums, const std::vector<Shape>& shapes, size_t first,
               const std::vector<bool>& wanted, std::vector<Tensor>& grads, DType t) {
  const T* at = sums.data();
  for (size_t i = 0; i < shapes.size(); ++i) {
    const int64_t size = shape_numel(shapes[i]);
    if (wanted[first + i]) {
      grads[first + i] = empty(shapes[i], t);
      std::copy(at, at + size, grads[first + i].data<T>());
    }
    at += size;
  }
}

// y (contiguous [outer, n_out, inner]) = the body over x, with `a` around it.
// With the norm, `saved` (a.saved_stats(g) values, or null) gets the rows'
// statistics for the backward.
template <class T, class Body>
void forward(const Body& body, const Geometry& g, const T* x, T* y, const Around<T>& a, T* saved = nullptr) {
  const int64_t W = g.W, own = tile::lines<T>(body.forward_scratch(W)), nr = a.rows(g);
  const int64_t slabs = (g.tiled ? g.n_in + g.n_out : 0) + (a.norm ? g.n_in : 0);
  tile::for_each_task(
      g.units, [&] { return tile::ScratchLease<T>(own + slabs * tile::lines<T>(g.n_max() * W) + 2 * nr); },
      [&](tile::ScratchLease<T>& s, int64_t u) {
        T* next = s.data() + own;  // the driver's slabs, each on whole cache lines
        auto take = [&](int64_t len) { T* p = next; next += tile::lines<T>(len * W); return p; };
        const auto [xs, xps] = x_slab(g, x, u, g.tiled ? take(g.n_in) : nullptr);
        const T* src = xs;
        int64_t sps = xps;
        if (a.norm) {
          T* z = take(g.n_in);
          T* mu = saved ? saved + u * nr : next;
          T* rs = saved ? saved + (g.units + u) * nr : next + nr;
          norm_stats(a, g, xs, xps, mu, rs);
          norm_apply(a, g, xs, xps, mu, rs, z, static_cast<T*>(nullptr));
          src = z;
          sps = W;
        }
        T* dst = g.tiled ? take(g.n_out) : y + u * g.n_out * g.inner;
        body.forward(W, src, sps, dst, s.data());
        if (a.residual)
          for (int64_t p = 0; p < g.n_out; ++p)
#pragma omp simd
            for (int64_t w = 0; w < W; ++w) dst[p * W + w] += xs[p * xps + w];
        if (g.tiled) store_tile(dst, g.n_out, u * W, g.rows(u), W, y);
      });
}

// The backward of forward: dx (contiguous like x3, or null) from dy
// (contiguous [outer, n_out, inner]) and x, with the norm's statistics that
// forward saved (null without the norm); returns the parameter-gradient
// sums, the body's (body.sums()) then, with the norm, its weight's and
// bias's [C] each (zero where not wanted).
template <class T, class Body>
std::vector<T> backward(const Body& body, const Geometry& g, const T* x, const T* dy, T* dx, const Around<T>& a,
                        const T* saved, bool want_norm_w, bool want_norm_b) {
  DIMIX_CHECK(!a.norm || saved, "slab::backward: the norm's statistics were not saved");
  const int64_t W = g.W, own = tile::lines<T>(body.backward_scratch(W));
  const int64_t per_chunk = units_per_chunk(g.n_in, W);
  const int64_t chunks = (g.units + per_chunk - 1) / per_chunk;
  const int64_t body_sums = body.sums(), sum_size = body_sums + (a.norm ? 2 * a.C : 0);
  std::vector<T> partial(chunks * sum_size, T(0));
  // Slabs: the x, dy and dx tiles when tiled; z, xh and dz with the norm.
  const int64_t slabs = (g.tiled ? 2 * g.n_in + g.n_out : 0) + (a.norm ? 3 * g.n_in : 0);
  tile::for_each_task(
      chunks, [&] { return tile::ScratchLease<T>(own + slabs * tile::lines<T>(g.n_max() * W) + (a.norm && g.tiled ? 2 * W : 0)); },
      [&](tile::ScratchLease<T>& s, int64_t c) {
        T* next = s.data() + own;  // the driver's slabs, each on whole cache lines
        auto take = [&](int64_t len) { T* p = next; next += tile::lines<T>(len * W); return p; };
        T* tx = g.tiled ? take(g.n_in) : nullptr;
        T* tdy = g.tiled ? take(g.n_out) : nullptr;
        T* tdx = g.tiled ? take(g.n_in) : nullptr;
        T* z = a.norm ? take(g.n_in) : nullptr;
        T* xh = a.norm ? take(g.n_in) : nullptr;
        T* dz = a.norm ? take(g.n_in) : nullptr;
        T* lanes = next;  // the tiled norm backward's two lane vectors
        T* sums = partial.data() + c * sum_size;
        T* dw = a.norm && want_norm_w ? sums + body_sums : nullptr;
        T* db = a.norm && want_norm_b ? sums + body_sums + a.C : nullptr;
        for (int64_t u = c * per_chunk; u < std::min(g.units, (c + 1) * per_chunk); ++u) {
          const int64_t rows = g.rows(u);
          const auto [xs, xps] = x_slab(g, x, u, tx);
          const T* src = xs;
          int64_t sps = xps;
          const T* rs = a.norm ? saved + (g.units + u) * a.rows(g) : nullptr;
          if (a.norm) {
            norm_apply(a, g, xs, xps, saved + u * a.rows(g), rs, z, xh);
            src = z;
            sps = W;
          }
          const T* dys = dy + u * g.n_out * g.inner;
          if (g.tiled) {
            load_tile(dy, g.n_out, int64_t(1), g.n_out, u * W, rows, W, tdy);
            dys = tdy;
          }
          T* dxs = !dx ? nullptr : g.tiled ? tdx : dx + u * g.n_in * g.inner;
          body.backward(W, src, sps, dys, a.norm ? dz : dxs, sums, s.data());
          if (a.norm) norm_backward(a, g, dz, xh, rs, dxs, dw, db, lanes);
          if (!dxs) continue;
          if (a.residual)
            for (int64_t i = 0; i < g.n_in * W; ++i) dxs[i] += dys[i];
          if (g.tiled) store_tile(dxs, g.n_in, u * W, rows, W, dx);
        }
      });
  std::vector<T> total(sum_size, T(0));
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < sum_size; ++i) total[i] += partial[c * sum_size + i];
  return total;
}

}  // namespace dimix::slab
