// ELU over contiguous arrays, with its slope on request:
//   y = x > 0 ? x : alpha (e^x - 1),   slope = x > 0 ? 1 : alpha e^x
// the activation of the Butterfly-Linear mixer (block_chain.cpp), where it
// runs over every hidden slab in the forward and again, with its slope, in
// the backward's recompute.
//
// e^x - 1 loses its digits to cancellation near 0 (x = -1e-4 keeps three),
// so below |x| = 1/4 it is expm1's Taylor series to x^7 (truncation under
// 2e-9 relative there); further out e^x - 1 is exact to a few ulp.
// With AVX-512 the f32 loop is written in intrinsics, 16 lanes at a time,
// e^x by vec_math.h's avx512 2^x; elsewhere (f64, other CPUs) a scalar loop
// on std::expm1 / exp_vec that the compiler vectorises where it can.
#pragma once
#include <cmath>
#include <cstdint>

#include "ops/vec_math.h"

namespace dimix {

namespace detail {

// expm1(x) for x <= 0, and e^x beside it.
template <class T>
inline T expm1_nonpositive(T x, T& e) {
  if constexpr (sizeof(T) == 8) {
    e = std::exp(x);
    return std::expm1(x);
  } else {
    e = exp_vec(x);
    if (x > T(-0.25)) {
      T p = T(1) / T(5040);
      for (T c : {T(1) / T(720), T(1) / T(120), T(1) / T(24), T(1) / T(6), T(0.5), T(1)}) p = p * x + c;
      return p * x;
    }
    return e - T(1);
  }
}

#if defined(__AVX512F__)
template <bool WithDeriv>
inline __m512 elu_avx512(__m512 v, __m512 alpha, __m512* deriv) {
  const __m512 zero = _mm512_setzero_ps();
  // min(x, 0) with x second: vminps returns its second operand where either
  // is NaN, so NaN lanes stay NaN all the way through.
  const __m512 neg = _mm512_maskz_min_ps(avx512::kAll, zero, v);
  const __m512 e = avx512::exp2_nonpositive(_mm512_mul_ps(neg, _mm512_set1_ps(1.44269504088896341f)));
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  for (float c : {1.f / 720.f, 1.f / 120.f, 1.f / 24.f, 1.f / 6.f, 0.5f, 1.f})
    p = _mm512_fmadd_ps(p, neg, _mm512_set1_ps(c));
  p = _mm512_mul_ps(p, neg);
  const __mmask16 near = _mm512_cmp_ps_mask(neg, _mm512_set1_ps(-0.25f), _CMP_GT_OQ);
  const __m512 em1 = _mm512_mask_mov_ps(_mm512_sub_ps(e, _mm512_set1_ps(1.f)), near, p);
  const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
  if constexpr (WithDeriv) *deriv = _mm512_mask_mov_ps(_mm512_mul_ps(alpha, e), pos, _mm512_set1_ps(1.f));
  return _mm512_mask_mov_ps(_mm512_mul_ps(alpha, em1), pos, v);
}

template <bool WithDeriv>
inline void elu_f32(const float* x, float* y, float* deriv, int64_t n, float alpha) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  __m512 d;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, elu_avx512<WithDeriv>(_mm512_loadu_ps(x + i), a, &d));
    if constexpr (WithDeriv) _mm512_storeu_ps(deriv + i, d);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, elu_avx512<WithDeriv>(_mm512_maskz_loadu_ps(m, x + i), a, &d));
    if constexpr (WithDeriv) _mm512_mask_storeu_ps(deriv + i, m, d);
  }
}
#endif

}  // namespace detail

// y[i] = elu(x[i]) for i < n, and deriv[i] = elu'(x[i]) unless deriv is
// null. y may be x (in place); deriv must not overlap either.
template <class T>
inline void elu_array(const T* x, T* y, T* deriv, int64_t n, T alpha = T(1)) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    if (deriv) detail::elu_f32<true>(x, y, deriv, n, alpha);
    else detail::elu_f32<false>(x, y, nullptr, n, alpha);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    T e;
    const T em1 = detail::expm1_nonpositive(v > T(0) ? T(0) : v, e);  // NaN stays NaN
    y[i] = v > T(0) ? v : alpha * em1;
    if (deriv) deriv[i] = v > T(0) ? T(1) : alpha * e;
  }
}

}  // namespace dimix
