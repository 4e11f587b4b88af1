// Branch-free math for CPU inner loops that GCC/Clang auto-vectorise.
//
// std::exp only vectorises under -ffast-math (glibc's libmvec), so softmax
// and cross-entropy rows of f32 would run one scalar exp per element. exp_vec
// is the Cephes expf scheme (Cody-Waite range reduction exp(x) = 2^n e^r,
// |r| <= ln2/2, degree-6 polynomial), ~1 ulp, written with selects instead of
// branches so a loop over it becomes SIMD. f64 keeps std::exp: it is the
// gradcheck reference type, where accuracy matters more than speed.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace dimix {

inline float exp_vec(float x) {
  constexpr float kHi = 88.72283905f;         // log(FLT_MAX); above: inf
  constexpr float kLo = -87.33654475f;        // log(FLT_MIN); below: 0 (denormals flushed)
  constexpr float kShifter = 12582912.0f;     // 1.5 * 2^23: adding it rounds to an integer
  float xc = x > kHi ? kHi : x;               // NaN passes through both selects
  xc = xc < kLo ? kLo : xc;
  const float t = xc * 1.44269504088896341f + kShifter;
  const float n = t - kShifter;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kShifter);
  float r = xc - n * 0.693359375f;  // ln2 split in two for an exact first product
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n as two normal halves: n reaches 128 at kHi and -126 at kLo.
  const int32_t half = ni >> 1;
  float y = p * std::bit_cast<float>((half + 127) << 23) * std::bit_cast<float>((ni - half + 127) << 23);
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? std::numeric_limits<float>::infinity() : y;
  return y;
}

inline double exp_vec(double x) { return std::exp(x); }

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, below f32's
// resolution of erf's range), branch-free around exp_vec so GELU's erf form
// vectorises; glibc's scalar erff made GELU most of a mixer's training step.
// erf_gauss_vec also hands back the exp(-x^2) it computed on the way, which
// is what the derivative of anything built on erf needs.
inline float erf_gauss_vec(float x, float& gauss) {
  const float ax = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  gauss = exp_vec(-ax * ax);
  const float y = 1.0f - p * t * gauss;
  return x < 0.0f ? -y : y;
}
inline double erf_gauss_vec(double x, double& gauss) {
  gauss = std::exp(-x * x);
  return std::erf(x);
}
inline float erf_vec(float x) {
  float gauss;
  return erf_gauss_vec(x, gauss);
}
inline double erf_vec(double x) { return std::erf(x); }

// Exact GELU f(x) = x Phi(x) and, in `deriv`, f'(x) = Phi(x) + x phi(x), with
// phi(x) = exp(-x^2 / 2) / sqrt(2 pi): one erf and one exp serve both.
template <class T>
inline T gelu_erf_vec(T x, T& deriv) {
  constexpr T kSqrt1_2 = T(0.70710678118654752440), kInvSqrt2Pi = T(0.39894228040143267794);
  T gauss;
  const T cdf = T(0.5) * (T(1) + erf_gauss_vec(x * kSqrt1_2, gauss));
  deriv = cdf + x * kInvSqrt2Pi * gauss;
  return x * cdf;
}

// tanh(x) = 1 - 2 / (exp(2x) + 1), exact at both saturations; absolute error
// ~1e-7 near 0.
inline float tanh_vec(float x) { return 1.0f - 2.0f / (exp_vec(2.0f * x) + 1.0f); }
inline double tanh_vec(double x) { return std::tanh(x); }

#if defined(__AVX512F__)
// Intrinsics for the loops GCC does not vectorise well on its own.
namespace avx512 {

// 2^x for x <= 0 (the softmax's score - column max in base-2 units, GELU's
// -z^2 log2(e)): the integer part n by rounding, 2^(x - n) on [-1/2, 1/2] by
// Cephes' exp2f polynomial (relative error 8e-8), and 2^n applied by
// vscalefps, which also underflows to exactly 0 (masked keys at -1e6 get
// exactly zero weight). Eleven instructions against exp_vec's twenty. The
// clamp keeps a -inf argument from making inf - inf, and lets a NaN through
// (vmaxps returns its second operand when either is NaN).
// (The maskz forms with every lane set are the plain instructions; GCC 12's
// plain intrinsics trip -Wmaybe-uninitialized on their undefined passthrough.)
constexpr __mmask16 kAll = 0xFFFF;
inline __m512 exp2_nonpositive(__m512 x) {
  x = _mm512_maskz_max_ps(kAll, _mm512_set1_ps(-200.0f), x);
  const __m512 n = _mm512_maskz_roundscale_ps(kAll, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.339887440266574e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.618437357674640e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.550332471162809e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.402264791363012e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.931472028550421e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(kAll, p, n);
}

}  // namespace avx512
#endif

}  // namespace dimix
