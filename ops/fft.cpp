// The FFT ops (see fft.h): CPU plans, the batched row kernels, autograd.
//
// Letters: n the transform length, R the number of rows (product of the
// leading dims), h = n / 2, bins = n / 2 + 1, p a radix, W_m = e^{-2 pi i / m}.
//
// Complex plan (Stockham, decimation in time): after the stages with radices
// p_0 .. p_{s-1} (product l), buffer A holds, for every residue class j of
// the m = n / l sub-sequences x[j::m], their length-l DFTs at A[k m + j].
// A radix-p stage merges p classes j' + r m' (m' = m / p) into one of length
// l p:  B[(k + q l) m' + j'] = sum_r W_{lp}^{rk} W_p^{rq} A[(k p + r) m' + j'],
// reading one buffer and writing the other (self-sorting: no bit reversal).
// The innermost loop runs over j' with unit stride, which vectorises. The
// batch forms keep V rows innermost ([n][V]): the same stages then simply run
// with m' V in place of m', so even the last stages (m' = 1) stay vector loops.
//
// CUDA kernels dispatched to (every tensor contiguous; `scale` multiplies the
// unnormalised transform):
//   "rfft"    void(const Tensor& y, const Tensor& x, int64_t n, double scale)
//             x [R, n] real -> y [R, n/2+1, 2]
//   "irfft"   void(const Tensor& y, const Tensor& X, int64_t n, double scale)
//             X [R, n/2+1, 2] (imaginary parts of bins 0 and n/2 already
//             zeroed by the caller) -> y [R, n] real
//   "fft_c2c" void(const Tensor& y, const Tensor& x, int64_t n, bool inverse, double scale)
//             x [R, n, 2] -> y [R, n, 2]; inverse uses e^{+2 pi i jk/n}
#include "ops/fft.h"

#include <map>
#include <mutex>
#include <numbers>

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/shape.h"

namespace dimix {
namespace {

constexpr int64_t kMaxRadix = 13;  // larger prime factors go through Bluestein

// e^{-2 pi i num / den}, exact at quarter turns (so bins 0 and n/2 of a real
// transform come out exactly real), the angle reduced to (-pi, pi].
void unit_root(int64_t num, int64_t den, double& c, double& s) {
  num %= den;
  if (num < 0) num += den;
  if ((4 * num) % den == 0) {
    static constexpr double kC[4] = {1, 0, -1, 0}, kS[4] = {0, -1, 0, 1};
    const int64_t q = 4 * num / den;
    c = kC[q];
    s = kS[q];
    return;
  }
  if (2 * num > den) num -= den;
  const double a = -2.0 * std::numbers::pi * static_cast<double>(num) / static_cast<double>(den);
  c = std::cos(a);
  s = std::sin(a);
}

std::vector<int64_t> radices(int64_t n) {
  std::vector<int64_t> f;
  while (n % 4 == 0) { f.push_back(4); n /= 4; }
  if (n % 2 == 0) { f.push_back(2); n /= 2; }
  for (int64_t p = 3; p * p <= n; p += 2)
    while (n % p == 0) { f.push_back(p); n /= p; }
  if (n > 1) f.push_back(n);
  return f;
}

template <class T>
struct Stage {
  int64_t p, l, ms;               // radix, length so far, m' = n / (l p)
  std::vector<T> twr, twi;        // W_{lp}^{rk} at [k (p-1) + r - 1]
  std::vector<T> rootr, rooti;    // W_p^j, j < p (generic radix only)
};

// ---- butterflies ----------------------------------------------------------------

template <class T>
void radix2(const Stage<T>& st, int64_t V, const T* __restrict ar, const T* __restrict ai, T* __restrict br, T* __restrict bi) {
  const int64_t l = st.l, ms = st.ms * V;
  for (int64_t k = 0; k < l; ++k) {
    const T wr = st.twr[k], wi = st.twi[k];
    const T* a0r = ar + 2 * k * ms;
    const T* a0i = ai + 2 * k * ms;
    const T* a1r = a0r + ms;
    const T* a1i = a0i + ms;
    T* b0r = br + k * ms;
    T* b0i = bi + k * ms;
    T* b1r = br + (k + l) * ms;
    T* b1i = bi + (k + l) * ms;
#pragma omp simd
    for (int64_t j = 0; j < ms; ++j) {
      const T xr = a1r[j] * wr - a1i[j] * wi, xi = a1r[j] * wi + a1i[j] * wr;
      b0r[j] = a0r[j] + xr;
      b0i[j] = a0i[j] + xi;
      b1r[j] = a0r[j] - xr;
      b1i[j] = a0i[j] - xi;
    }
  }
}

template <class T>
void radix3(const Stage<T>& st, int64_t V, const T* __restrict ar, const T* __restrict ai, T* __restrict br, T* __restrict bi) {
  const int64_t l = st.l, ms = st.ms * V;
  const T c = T(-0.5), s = T(-0.86602540378443864676);  // W_3 = c + i s
  for (int64_t k = 0; k < l; ++k) {
    const T w1r = st.twr[2 * k], w1i = st.twi[2 * k], w2r = st.twr[2 * k + 1], w2i = st.twi[2 * k + 1];
    const int64_t a0 = 3 * k * ms;
    T* b0r = br + k * ms;
    T* b0i = bi + k * ms;
    T* b1r = br + (k + l) * ms;
    T* b1i = bi + (k + l) * ms;
    T* b2r = br + (k + 2 * l) * ms;
    T* b2i = bi + (k + 2 * l) * ms;
#pragma omp simd
    for (int64_t j = 0; j < ms; ++j) {
      const T x0r = ar[a0 + j], x0i = ai[a0 + j];
      const T u1r = ar[a0 + ms + j], u1i = ai[a0 + ms + j];
      const T u2r = ar[a0 + 2 * ms + j], u2i = ai[a0 + 2 * ms + j];
      const T x1r = u1r * w1r - u1i * w1i, x1i = u1r * w1i + u1i * w1r;
      const T x2r = u2r * w2r - u2i * w2i, x2i = u2r * w2i + u2i * w2r;
      const T sr = x1r + x2r, si = x1i + x2i, dr = x1r - x2r, di = x1i - x2i;
      const T tr = x0r + c * sr, ti = x0i + c * si;
      b0r[j] = x0r + sr;
      b0i[j] = x0i + si;
      b1r[j] = tr - s * di;
      b1i[j] = ti + s * dr;
      b2r[j] = tr + s * di;
      b2i[j] = ti - s * dr;
    }
  }
}

template <class T>
void radix4(const Stage<T>& st, int64_t V, const T* __restrict ar, const T* __restrict ai, T* __restrict br, T* __restrict bi) {
  const int64_t l = st.l, ms = st.ms * V;
  for (int64_t k = 0; k < l; ++k) {
    const T* tr = st.twr.data() + 3 * k;
    const T* ti = st.twi.data() + 3 * k;
    const T w1r = tr[0], w1i = ti[0], w2r = tr[1], w2i = ti[1], w3r = tr[2], w3i = ti[2];
    const int64_t a0 = 4 * k * ms;
    T* b0r = br + k * ms;
    T* b0i = bi + k * ms;
    T* b1r = br + (k + l) * ms;
    T* b1i = bi + (k + l) * ms;
    T* b2r = br + (k + 2 * l) * ms;
    T* b2i = bi + (k + 2 * l) * ms;
    T* b3r = br + (k + 3 * l) * ms;
    T* b3i = bi + (k + 3 * l) * ms;
#pragma omp simd
    for (int64_t j = 0; j < ms; ++j) {
      const T x0r = ar[a0 + j], x0i = ai[a0 + j];
      const T u1r = ar[a0 + ms + j], u1i = ai[a0 + ms + j];
      const T u2r = ar[a0 + 2 * ms + j], u2i = ai[a0 + 2 * ms + j];
      const T u3r = ar[a0 + 3 * ms + j], u3i = ai[a0 + 3 * ms + j];
      const T x1r = u1r * w1r - u1i * w1i, x1i = u1r * w1i + u1i * w1r;
      const T x2r = u2r * w2r - u2i * w2i, x2i = u2r * w2i + u2i * w2r;
      const T x3r = u3r * w3r - u3i * w3i, x3i = u3r * w3i + u3i * w3r;
      const T t0r = x0r + x2r, t0i = x0i + x2i, t1r = x0r - x2r, t1i = x0i - x2i;
      const T t2r = x1r + x3r, t2i = x1i + x3i, t3r = x1r - x3r, t3i = x1i - x3i;
      b0r[j] = t0r + t2r;
      b0i[j] = t0i + t2i;
      b2r[j] = t0r - t2r;
      b2i[j] = t0i - t2i;
      b1r[j] = t1r + t3i;  // t1 - i t3
      b1i[j] = t1i - t3r;
      b3r[j] = t1r - t3i;  // t1 + i t3
      b3i[j] = t1i + t3r;
    }
  }
}

// Any radix p: the p twiddled inputs of a chunk of j' go to a small buffer,
// then each output q sums them against W_p^{rq}. O(p) per output point.
template <class T>
void radix_generic(const Stage<T>& st, int64_t V, const T* __restrict ar, const T* __restrict ai, T* __restrict br,
                   T* __restrict bi) {
  const int64_t p = st.p, l = st.l, ms = st.ms * V;
  constexpr int64_t kChunk = 32;
  T xr[kMaxRadix * kChunk], xi[kMaxRadix * kChunk];
  for (int64_t k = 0; k < l; ++k) {
    for (int64_t j0 = 0; j0 < ms; j0 += kChunk) {
      const int64_t nj = std::min(kChunk, ms - j0);
      for (int64_t r = 0; r < p; ++r) {
        const T* ur = ar + (k * p + r) * ms + j0;
        const T* ui = ai + (k * p + r) * ms + j0;
        const T wr = r == 0 ? T(1) : st.twr[k * (p - 1) + r - 1];
        const T wi = r == 0 ? T(0) : st.twi[k * (p - 1) + r - 1];
        for (int64_t j = 0; j < nj; ++j) {
          xr[r * kChunk + j] = ur[j] * wr - ui[j] * wi;
          xi[r * kChunk + j] = ur[j] * wi + ui[j] * wr;
        }
      }
      for (int64_t q = 0; q < p; ++q) {
        T* yr = br + (k + q * l) * ms + j0;
        T* yi = bi + (k + q * l) * ms + j0;
        for (int64_t j = 0; j < nj; ++j) { yr[j] = xr[j]; yi[j] = xi[j]; }
        for (int64_t r = 1; r < p; ++r) {
          const int64_t e = (r * q) % p;
          const T wr = st.rootr[e], wi = st.rooti[e];
          for (int64_t j = 0; j < nj; ++j) {
            yr[j] += xr[r * kChunk + j] * wr - xi[r * kChunk + j] * wi;
            yi[j] += xr[r * kChunk + j] * wi + xi[r * kChunk + j] * wr;
          }
        }
      }
    }
  }
}

}  // namespace

// ---- complex plan -------------------------------------------------------------------

template <class T>
struct ComplexFft<T>::Impl {
  std::vector<Stage<T>> stages;
  // Bluestein: X_k = c_k * IDFT_m(DFT_m(a) * B)_k with a_j = x_j c_j, c_j = e^{-pi i j^2 / n}.
  bool bluestein = false;
  int64_t m = 0;
  std::unique_ptr<ComplexFft<T>> inner;
  std::vector<T> chirpr, chirpi, bspecr, bspeci;  // bspec already divided by m
};

template <class T>
ComplexFft<T>::ComplexFft(int64_t n) : n_(n), impl_(std::make_unique<Impl>()) {
  DIMIX_CHECK(n >= 1, "fft: expected a transform length >= 1, got ", n);
  const std::vector<int64_t> ps = radices(n);
  if (!ps.empty() && ps.back() > kMaxRadix) {
    Impl& b = *impl_;
    b.bluestein = true;
    b.m = 1;
    while (b.m < 2 * n - 1) b.m *= 2;
    b.inner = std::make_unique<ComplexFft<T>>(b.m);
    b.chirpr.resize(n);
    b.chirpi.resize(n);
    std::vector<T> br(b.m, T(0)), bi(b.m, T(0));
    for (int64_t j = 0; j < n; ++j) {
      double c, s;
      unit_root((j * j) % (2 * n), 2 * n, c, s);  // e^{-pi i j^2 / n}
      b.chirpr[j] = static_cast<T>(c);
      b.chirpi[j] = static_cast<T>(s);
      br[j] = static_cast<T>(c);
      bi[j] = static_cast<T>(-s);  // conj
      if (j > 0) {
        br[b.m - j] = static_cast<T>(c);
        bi[b.m - j] = static_cast<T>(-s);
      }
    }
    std::vector<T> scratch(b.inner->scratch_size(1));
    b.inner->transform(br.data(), bi.data(), false, scratch.data());
    const T inv_m = T(1) / static_cast<T>(b.m);
    for (int64_t j = 0; j < b.m; ++j) { br[j] *= inv_m; bi[j] *= inv_m; }
    b.bspecr = std::move(br);
    b.bspeci = std::move(bi);
    return;
  }
  int64_t l = 1;
  for (int64_t p : ps) {
    Stage<T> st;
    st.p = p;
    st.l = l;
    st.ms = n / (l * p);
    st.twr.resize(l * (p - 1));
    st.twi.resize(l * (p - 1));
    for (int64_t k = 0; k < l; ++k)
      for (int64_t r = 1; r < p; ++r) {
        double c, s;
        unit_root(r * k, l * p, c, s);
        st.twr[k * (p - 1) + r - 1] = static_cast<T>(c);
        st.twi[k * (p - 1) + r - 1] = static_cast<T>(s);
      }
    if (p != 2 && p != 3 && p != 4) {
      st.rootr.resize(p);
      st.rooti.resize(p);
      for (int64_t j = 0; j < p; ++j) {
        double c, s;
        unit_root(j, p, c, s);
        st.rootr[j] = static_cast<T>(c);
        st.rooti[j] = static_cast<T>(s);
      }
    }
    impl_->stages.push_back(std::move(st));
    l *= p;
  }
}

template <class T>
ComplexFft<T>::~ComplexFft() = default;

template <class T>
int64_t ComplexFft<T>::scratch_size(int64_t V) const {
  if (impl_->bluestein) return 2 * impl_->m * V + impl_->inner->scratch_size(V);
  return 2 * n_ * V;
}

template <class T>
void ComplexFft<T>::transform(T* re, T* im, bool inverse, T* scratch) const { transform_batch(re, im, 1, inverse, scratch); }

template <class T>
void ComplexFft<T>::transform_batch(T* re, T* im, int64_t V, bool inverse, T* scratch) const {
  const int64_t n = n_, nv = n_ * V;
  if (n == 1) return;
  // The inverse is conj(DFT(conj(x))).
  if (inverse)
    for (int64_t j = 0; j < nv; ++j) im[j] = -im[j];
  const Impl& P = *impl_;
  if (P.bluestein) {
    const int64_t m = P.m;
    T* ar = scratch;
    T* ai = scratch + m * V;
    T* inner_scratch = scratch + 2 * m * V;
    for (int64_t j = 0; j < n; ++j) {
      const T cr = P.chirpr[j], ci = P.chirpi[j];
      for (int64_t v = j * V; v < (j + 1) * V; ++v) {
        ar[v] = re[v] * cr - im[v] * ci;
        ai[v] = re[v] * ci + im[v] * cr;
      }
    }
    std::fill(ar + nv, ar + m * V, T(0));
    std::fill(ai + nv, ai + m * V, T(0));
    P.inner->transform_batch(ar, ai, V, false, inner_scratch);
    for (int64_t j = 0; j < m; ++j) {
      const T br = P.bspecr[j], bi = P.bspeci[j];
      for (int64_t v = j * V; v < (j + 1) * V; ++v) {
        const T xr = ar[v] * br - ai[v] * bi, xi = ar[v] * bi + ai[v] * br;
        ar[v] = xr;
        ai[v] = xi;
      }
    }
    P.inner->transform_batch(ar, ai, V, true, inner_scratch);
    for (int64_t j = 0; j < n; ++j) {
      const T cr = P.chirpr[j], ci = P.chirpi[j];
      for (int64_t v = j * V; v < (j + 1) * V; ++v) {
        re[v] = ar[v] * cr - ai[v] * ci;
        im[v] = ar[v] * ci + ai[v] * cr;
      }
    }
  } else {
    T* sr = re;
    T* si = im;
    T* dr = scratch;
    T* di = scratch + nv;
    for (const Stage<T>& st : P.stages) {
      switch (st.p) {
        case 2: radix2(st, V, sr, si, dr, di); break;
        case 3: radix3(st, V, sr, si, dr, di); break;
        case 4: radix4(st, V, sr, si, dr, di); break;
        default: radix_generic(st, V, sr, si, dr, di); break;
      }
      std::swap(sr, dr);
      std::swap(si, di);
    }
    if (sr != re) {
      std::copy(sr, sr + nv, re);
      std::copy(si, si + nv, im);
    }
  }
  if (inverse)
    for (int64_t j = 0; j < nv; ++j) im[j] = -im[j];
}

// ---- real plan ----------------------------------------------------------------------
// Even n: z_j = x_{2j} + i x_{2j+1} through a length-h complex FFT, then
// X_k = E_k + W_n^k O_k with E_k = (Z_k + conj Z_{h-k}) / 2 (the DFT of the
// even samples) and O_k = (Z_k - conj Z_{h-k}) / 2i (of the odd ones); the
// inverse undoes these steps. Odd n: a full complex transform.

template <class T>
struct RealFft<T>::Impl {
  bool packed = false;
  std::unique_ptr<ComplexFft<T>> plan;  // length h (packed) or n
  std::vector<T> wr, wi;                // W_n^k, k <= h (packed)
};

template <class T>
RealFft<T>::RealFft(int64_t n) : n_(n), impl_(std::make_unique<Impl>()) {
  DIMIX_CHECK(n >= 1, "rfft: expected a transform length >= 1, got ", n);
  if (n % 2 == 0) {
    const int64_t h = n / 2;
    impl_->packed = true;
    impl_->plan = std::make_unique<ComplexFft<T>>(h);
    impl_->wr.resize(h + 1);
    impl_->wi.resize(h + 1);
    for (int64_t k = 0; k <= h; ++k) {
      double c, s;
      unit_root(k, n, c, s);
      impl_->wr[k] = static_cast<T>(c);
      impl_->wi[k] = static_cast<T>(s);
    }
  } else {
    impl_->plan = std::make_unique<ComplexFft<T>>(n);
  }
}

template <class T>
RealFft<T>::~RealFft() = default;

template <class T>
int64_t RealFft<T>::scratch_size(int64_t V) const {
  const int64_t len = impl_->plan->size();
  return 2 * len * V + impl_->plan->scratch_size(V);
}

template <class T>
void RealFft<T>::forward_batch(const T* x, T* sre, T* sim, int64_t V, T* scratch) const {
  const Impl& P = *impl_;
  const int64_t len = P.plan->size();
  T* zr = scratch;
  T* zi = scratch + len * V;
  T* inner = scratch + 2 * len * V;
  if (!P.packed) {
    std::copy(x, x + len * V, zr);
    std::fill(zi, zi + len * V, T(0));
    P.plan->transform_batch(zr, zi, V, false, inner);
    std::copy(zr, zr + bins() * V, sre);
    std::copy(zi, zi + bins() * V, sim);
    std::fill(sim, sim + V, T(0));  // a real signal's DC bin is real; keep it exact
    return;
  }
  const int64_t h = len;
  for (int64_t j = 0; j < h; ++j) {
    std::copy(x + 2 * j * V, x + (2 * j + 1) * V, zr + j * V);
    std::copy(x + (2 * j + 1) * V, x + (2 * j + 2) * V, zi + j * V);
  }
  P.plan->transform_batch(zr, zi, V, false, inner);
  for (int64_t k = 0; k <= h; ++k) {
    const int64_t k1 = k == h ? 0 : k, k2 = k == 0 ? 0 : h - k;
    const T wr = P.wr[k], wi = P.wi[k];
    const T* a_r = zr + k1 * V;
    const T* a_i = zi + k1 * V;
    const T* c_r = zr + k2 * V;
    const T* c_i = zi + k2 * V;
    T* out_r = sre + k * V;
    T* out_i = sim + k * V;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) {
      const T ar = a_r[v], ai = a_i[v], cr = c_r[v], ci = -c_i[v];
      const T er = T(0.5) * (ar + cr), ei = T(0.5) * (ai + ci);
      const T dr = T(0.5) * (ar - cr), di = T(0.5) * (ai - ci);
      const T orr = di, oi = -dr;  // O = -i D
      out_r[v] = er + wr * orr - wi * oi;
      out_i[v] = ei + wr * oi + wi * orr;
    }
  }
  std::fill(sim, sim + V, T(0));
  std::fill(sim + h * V, sim + (h + 1) * V, T(0));
}

template <class T>
void RealFft<T>::inverse_batch(const T* sre, const T* sim, T* x, int64_t V, T* scratch) const {
  const Impl& P = *impl_;
  const int64_t len = P.plan->size();
  T* zr = scratch;
  T* zi = scratch + len * V;
  T* inner = scratch + 2 * len * V;
  if (!P.packed) {
    const int64_t n = len;
    std::copy(sre, sre + V, zr);
    std::fill(zi, zi + V, T(0));
    for (int64_t k = 1; 2 * k < n + 1; ++k)
      for (int64_t v = 0; v < V; ++v) {
        zr[k * V + v] = sre[k * V + v];
        zi[k * V + v] = sim[k * V + v];
        zr[(n - k) * V + v] = sre[k * V + v];
        zi[(n - k) * V + v] = -sim[k * V + v];
      }
    P.plan->transform_batch(zr, zi, V, true, inner);
    std::copy(zr, zr + n * V, x);
    return;
  }
  const int64_t h = len;
  for (int64_t k = 0; k < h; ++k) {
    const T wr = P.wr[k], wi = P.wi[k];
    const T imag_scale = k == 0 ? T(0) : T(1);  // bins 0 and h: imaginary parts ignored
    const T* a_r = sre + k * V;
    const T* a_i = sim + k * V;
    const T* c_r = sre + (h - k) * V;
    const T* c_i = sim + (h - k) * V;
    T* out_r = zr + k * V;
    T* out_i = zi + k * V;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) {
      const T ar = a_r[v], ai = imag_scale * a_i[v], cr = c_r[v], ci = -imag_scale * c_i[v];
      const T er = ar + cr, ei = ai + ci, dr = ar - cr, di = ai - ci;
      // O = D * conj(W_n^k); Z = E + i O
      const T orr = dr * wr + di * wi, oi = di * wr - dr * wi;
      out_r[v] = er - oi;
      out_i[v] = ei + orr;
    }
  }
  P.plan->transform_batch(zr, zi, V, true, inner);
  for (int64_t j = 0; j < h; ++j) {
    std::copy(zr + j * V, zr + (j + 1) * V, x + 2 * j * V);
    std::copy(zi + j * V, zi + (j + 1) * V, x + (2 * j + 1) * V);
  }
}

// One row: the batch code with V = 1, the spectrum interleaved.
template <class T>
void RealFft<T>::forward(const T* x, T* spec, T* scratch) const {
  const int64_t nb = bins();
  T* sre = scratch + scratch_size(1);
  T* sim = sre + nb;
  forward_batch(x, sre, sim, 1, scratch);
  for (int64_t k = 0; k < nb; ++k) { spec[2 * k] = sre[k]; spec[2 * k + 1] = sim[k]; }
}

template <class T>
void RealFft<T>::inverse(const T* spec, T* x, T* scratch) const {
  const int64_t nb = bins();
  T* sre = scratch + scratch_size(1);
  T* sim = sre + nb;
  for (int64_t k = 0; k < nb; ++k) { sre[k] = spec[2 * k]; sim[k] = spec[2 * k + 1]; }
  inverse_batch(sre, sim, x, 1, scratch);
}

template class ComplexFft<float>;
template class ComplexFft<double>;
template class RealFft<float>;
template class RealFft<double>;

namespace {
template <class Plan>
std::shared_ptr<const Plan> cached_plan(int64_t n) {
  static std::mutex mu;
  static std::map<int64_t, std::shared_ptr<const Plan>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  auto plan = std::make_shared<const Plan>(n);
  cache.emplace(n, plan);
  return plan;
}
}  // namespace

template <class T>
std::shared_ptr<const ComplexFft<T>> complex_fft_plan(int64_t n) { return cached_plan<ComplexFft<T>>(n); }
template <class T>
std::shared_ptr<const RealFft<T>> real_fft_plan(int64_t n) { return cached_plan<RealFft<T>>(n); }
template std::shared_ptr<const ComplexFft<float>> complex_fft_plan<float>(int64_t);
template std::shared_ptr<const ComplexFft<double>> complex_fft_plan<double>(int64_t);
template std::shared_ptr<const RealFft<float>> real_fft_plan<float>(int64_t);
template std::shared_ptr<const RealFft<double>> real_fft_plan<double>(int64_t);

// ---- batched raw transforms (contiguous rows, exact lengths) ----------------------------
namespace {

// Rows per parallel chunk so that a chunk holds some tens of thousands of points.
int64_t grain_rows(int64_t n) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1)); }

// x [R, n] -> y [R, n/2+1, 2], times scale.
Tensor rfft_rows(const Tensor& x, int64_t n, double scale) {
  const int64_t R = x.sizes()[0], bins = n / 2 + 1;
  Tensor y = empty({R, bins, 2}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, double)>("rfft")(y, x, n, scale);
    return y;
  }
  dispatch_float(x.dtype(), "rfft", [&]<class T>() {
    const auto plan = real_fft_plan<T>(n);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(0, R, grain_rows(n), [&](int64_t r0, int64_t r1) {
      std::vector<T> scratch(plan->row_scratch_size());
      for (int64_t r = r0; r < r1; ++r) {
        T* out = py + r * 2 * bins;
        plan->forward(px + r * n, out, scratch.data());
        if (s != T(1))
          for (int64_t i = 0; i < 2 * bins; ++i) out[i] *= s;
      }
    });
  });
  return y;
}

// X [R, n/2+1, 2] -> y [R, n], times scale.
Tensor irfft_rows(const Tensor& X, int64_t n, double scale) {
  const int64_t R = X.sizes()[0], bins = n / 2 + 1;
  Tensor y = empty({R, n}, X.dtype(), X.device());
  if (X.device().is_cuda()) {
    // cuFFT's C2R does not promise to ignore these: zero them (on a copy).
    Tensor Xc = empty(X.sizes(), X.dtype(), X.device());
    copy_(Xc, X);
    fill_(Xc.as_strided({R}, {2 * bins}, Xc.offset() + 1), 0.0);
    if (n % 2 == 0) fill_(Xc.as_strided({R}, {2 * bins}, Xc.offset() + 2 * (bins - 1) + 1), 0.0);
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, double)>("irfft")(y, Xc, n, scale);
    return y;
  }
  dispatch_float(X.dtype(), "irfft", [&]<class T>() {
    const auto plan = real_fft_plan<T>(n);
    const T* px = X.data<T>();
    T* py = y.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(0, R, grain_rows(n), [&](int64_t r0, int64_t r1) {
      std::vector<T> scratch(plan->row_scratch_size());
      for (int64_t r = r0; r < r1; ++r) {
        T* out = py + r * n;
        plan->inverse(px + r * 2 * bins, out, scratch.data());
        if (s != T(1))
          for (int64_t i = 0; i < n; ++i) out[i] *= s;
      }
    });
  });
  return y;
}

// x [R, n, 2] -> y [R, n, 2], times scale.
Tensor fft_rows(const Tensor& x, int64_t n, bool inverse, double scale) {
  const int64_t R = x.sizes()[0];
  Tensor y = empty({R, n, 2}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t, bool, double)>("fft_c2c")(y, x, n, inverse, scale);
    return y;
  }
  dispatch_float(x.dtype(), inverse ? "ifft" : "fft", [&]<class T>() {
    const auto plan = complex_fft_plan<T>(n);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(0, R, grain_rows(n), [&](int64_t r0, int64_t r1) {
      std::vector<T> buf(2 * n + plan->scratch_size(1));
      T* re = buf.data();
      T* im = re + n;
      for (int64_t r = r0; r < r1; ++r) {
        const T* in = px + r * 2 * n;
        for (int64_t j = 0; j < n; ++j) { re[j] = in[2 * j]; im[j] = in[2 * j + 1]; }
        plan->transform(re, im, inverse, im + n);
        T* out = py + r * 2 * n;
        for (int64_t j = 0; j < n; ++j) { out[2 * j] = re[j] * s; out[2 * j + 1] = im[j] * s; }
      }
    });
  });
  return y;
}

// A contiguous copy of t with dim `dim` cut or zero-padded to `len` (raw).
Tensor fit_length(const Tensor& t, int64_t dim, int64_t len) {
  const int64_t have = t.sizes()[dim];
  if (have == len) return t.contiguous_raw();
  Shape sizes = t.sizes();
  if (have > len) {
    sizes[dim] = len;
    return t.as_strided(sizes, t.strides(), t.offset()).contiguous_raw();
  }
  sizes[dim] = len;
  Tensor out = zeros(sizes, t.dtype(), t.device());
  Shape part = sizes;
  part[dim] = have;
  copy_(out.as_strided(part, out.strides(), out.offset()), t);
  return out;
}

// A contiguous tensor seen with new sizes (raw, no copy).
Tensor reshape_raw(const Tensor& t, const Shape& sizes) {
  return t.as_strided(sizes, contiguous_strides(sizes), t.offset());
}

enum class Norm { backward, forward, ortho };

Norm parse_norm(const std::string& s, const char* op) {
  if (s == "backward") return Norm::backward;
  if (s == "forward") return Norm::forward;
  if (s == "ortho") return Norm::ortho;
  DIMIX_FAIL(op, ": norm must be \"backward\", \"forward\" or \"ortho\", got \"", s, "\"");
}

// The factor on the unnormalised transform; `inverse_direction` for ifft / irfft.
double norm_scale(Norm norm, int64_t n, bool inverse_direction) {
  switch (norm) {
    case Norm::ortho: return 1.0 / std::sqrt(static_cast<double>(n));
    case Norm::backward: return inverse_direction ? 1.0 / static_cast<double>(n) : 1.0;
    case Norm::forward: return inverse_direction ? 1.0 : 1.0 / static_cast<double>(n);
  }
  return 1.0;
}

// Per-bin weights [bins, 2] on x's device and dtype: `interior` on bins
// 0 < k < n/2, `edge` on the real parts of bin 0 and (even n) bin n/2, and
// `edge_imag` on their imaginary parts.
Tensor bin_weights(int64_t n, double interior, double edge, double edge_imag, const Tensor& like) {
  const int64_t bins = n / 2 + 1;
  std::vector<double> w(2 * bins, interior);
  w[0] = edge;
  w[1] = edge_imag;
  if (n % 2 == 0) {
    w[2 * (bins - 1)] = edge;
    w[2 * (bins - 1) + 1] = edge_imag;
  }
  Tensor t = cast_raw(from_vector<double>(w, {bins, 2}), like.dtype());
  return like.device().is_cpu() ? t : to_device_raw(t, like.device());
}

int64_t rows_before(const Tensor& x, int64_t keep_dims) {
  int64_t R = 1;
  for (int64_t d = 0; d < x.dim() - keep_dims; ++d) R *= x.sizes()[d];
  return R;
}

void check_complex(const char* op, const Tensor& x) {
  DIMIX_CHECK(x.dim() >= 2 && x.sizes().back() == 2, op,
              ": expected a complex tensor [..., N, 2] (real, imaginary in the last dim), got ", x.shape_str());
}

Tensor c2c(const Tensor& x, int64_t n_arg, const std::string& norm_name, bool inverse) {
  const char* op = inverse ? "ifft" : "fft";
  check_floating(op, x);
  check_complex(op, x);
  const Norm norm = parse_norm(norm_name, op);
  const int64_t N = x.sizes()[x.dim() - 2];
  const int64_t n = n_arg < 0 ? N : n_arg;
  DIMIX_CHECK(n >= 1, op, ": expected n >= 1, got n = ", n, " for input ", x.shape_str());
  const double scale = norm_scale(norm, n, inverse);
  const int64_t R = rows_before(x, 2);
  const Tensor xr = reshape_raw(fit_length(x, x.dim() - 2, n), {R, n, 2});
  Shape out_shape = x.sizes();
  out_shape[x.dim() - 2] = n;
  Tensor y = reshape_raw(fft_rows(xr, n, inverse, scale), out_shape);
  if (needs_grad({x})) {
    record(y, op, {x}, [=, in_shape = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gr = reshape_raw(g.contiguous_raw(), {R, n, 2});
      const Tensor dx = fft_rows(gr, n, !inverse, scale);
      Shape full = in_shape;
      full[full.size() - 2] = n;
      return {fit_length(reshape_raw(dx, full), static_cast<int64_t>(full.size()) - 2, in_shape[in_shape.size() - 2])};
    });
  }
  return y;
}

}  // namespace

Tensor fft(const Tensor& x, int64_t n, const std::string& norm) { return c2c(x, n, norm, false); }
Tensor ifft(const Tensor& x, int64_t n, const std::string& norm) { return c2c(x, n, norm, true); }

Tensor rfft(const Tensor& x, int64_t n_arg, const std::string& norm_name) {
  const char* op = "rfft";
  check_floating(op, x);
  DIMIX_CHECK(x.dim() >= 1, op, ": expected a real tensor [..., N], got a 0-d tensor");
  const Norm norm = parse_norm(norm_name, op);
  const int64_t N = x.sizes().back();
  const int64_t n = n_arg < 0 ? N : n_arg;
  DIMIX_CHECK(n >= 1, op, ": expected n >= 1, got n = ", n, " for input ", x.shape_str());
  const double scale = norm_scale(norm, n, false);
  const int64_t R = rows_before(x, 1), bins = n / 2 + 1;
  const Tensor xr = reshape_raw(fit_length(x, x.dim() - 1, n), {R, n});
  Shape out_shape = x.sizes();
  out_shape.back() = bins;
  out_shape.push_back(2);
  Tensor y = reshape_raw(rfft_rows(xr, n, scale), out_shape);
  if (needs_grad({x})) {
    record(y, op, {x}, [=, in_shape = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      // dx_j = scale * Re sum_k g_k e^{+2 pi i jk/n} over the kept bins:
      // irfft of g with its interior bins halved (irfft doubles them).
      const Tensor gr = reshape_raw(g.contiguous_raw(), {R, bins, 2});
      const Tensor gw = binary_raw(BinaryOp::mul, gr, bin_weights(n, 0.5, 1.0, 1.0, gr));
      Shape full = in_shape;
      full.back() = n;
      const Tensor dx = reshape_raw(irfft_rows(gw.contiguous_raw(), n, scale), full);
      return {fit_length(dx, static_cast<int64_t>(full.size()) - 1, in_shape.back())};
    });
  }
  return y;
}

Tensor irfft(const Tensor& X, int64_t n_arg, const std::string& norm_name) {
  const char* op = "irfft";
  check_floating(op, X);
  check_complex(op, X);
  const Norm norm = parse_norm(norm_name, op);
  const int64_t M = X.sizes()[X.dim() - 2];
  const int64_t n = n_arg < 0 ? 2 * (M - 1) : n_arg;
  DIMIX_CHECK(n >= 1, op, ": expected n >= 1 output points, got n = ", n, " for input ", X.shape_str(),
              n_arg < 0 ? " (the default n = 2 (M - 1))" : "");
  const double scale = norm_scale(norm, n, true);
  const int64_t R = rows_before(X, 2), bins = n / 2 + 1;
  const Tensor Xr = reshape_raw(fit_length(X, X.dim() - 2, bins), {R, bins, 2});
  Shape out_shape(X.sizes().begin(), X.sizes().end() - 2);
  out_shape.push_back(n);
  Tensor y = reshape_raw(irfft_rows(Xr, n, scale), out_shape);
  if (needs_grad({X})) {
    record(y, op, {X}, [=, in_shape = X.sizes()](const Tensor& g) -> std::vector<Tensor> {
      // dX_k = scale * c_k * rfft(g)_k, c_k = 2 on interior bins (each stands
      // for itself and its conjugate twin), 1 on bins 0 and n/2, whose
      // imaginary parts the forward ignored.
      const Tensor gr = reshape_raw(g.contiguous_raw(), {R, n});
      const Tensor G = rfft_rows(gr, n, scale);
      const Tensor dX = binary_raw(BinaryOp::mul, G, bin_weights(n, 2.0, 1.0, 0.0, G));
      Shape full = in_shape;
      full[full.size() - 2] = bins;
      return {fit_length(reshape_raw(dX.contiguous_raw(), full), static_cast<int64_t>(full.size()) - 2,
                         in_shape[in_shape.size() - 2])};
    });
  }
  return y;
}

Tensor complex_mul(const Tensor& a, const Tensor& b) {
  check_complex("complex_mul", a);
  check_complex("complex_mul", b);
  const Tensor ar = squeeze(narrow(a, -1, 0, 1), -1), ai = squeeze(narrow(a, -1, 1, 1), -1);
  const Tensor br = squeeze(narrow(b, -1, 0, 1), -1), bi = squeeze(narrow(b, -1, 1, 1), -1);
  return stack({ar * br - ai * bi, ar * bi + ai * br}, -1);
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    {"rfft/n8", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 8}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0]); }},
    // Odd n, padded input (5 -> 7), ortho.
    {"rfft/pad_odd_ortho", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0], 7, "ortho"); }},
    // Truncated input (6 -> 4), norm forward, 3-d batch.
    {"rfft/trunc_forward", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 6}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0], 4, "forward"); }},
    // Non-contiguous rows padded 12 -> 24 (radix 4 x 3 inside).
    {"rfft/noncontig_n12", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {3, 12}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0], 24); }},
    {"rfft/n1", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 1}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0]); }},
    // Bluestein (n = 17 prime > 13).
    {"rfft/bluestein17", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 17}, t)}; },
     [](const std::vector<Tensor>& x) { return rfft(x[0]); }},
    {"irfft/even_default_n", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 5, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return irfft(x[0]); }},
    {"irfft/odd_ortho", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 4, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return irfft(x[0], 7, "ortho"); }},
    // Fewer bins than n/2 + 1 (3 -> 7 for n = 12), norm forward (fftconv's).
    {"irfft/pad_bins_forward", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return irfft(x[0], 12, "forward"); }},
    // More bins than used (6 -> 3 for n = 4), non-contiguous.
    {"irfft/trunc_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {2, 6, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return irfft(x[0], 4); }},
    {"irfft/n10_radix5", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 6, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return irfft(x[0], 10); }},
    {"fft/n12", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 12, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return fft(x[0]); }},
    {"fft/pad15_ortho", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 10, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return fft(x[0], 15, "ortho"); }},
    {"fft/noncontig_n7", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {1, 7, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return fft(x[0]); }},
    {"ifft/bluestein17_forward", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 17, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return ifft(x[0], -1, "forward"); }},
    {"ifft/trunc_n6", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 8, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return ifft(x[0], 6); }},
    {"complex_mul/broadcast", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 4, 2}, t), randn_input(g, {4, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return complex_mul(x[0], x[1]); }},
});

}  // namespace dimix
