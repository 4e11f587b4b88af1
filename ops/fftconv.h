// The FFT long convolution of the M2 / Hyena sequence mixer (PAPERS.md 2.3,
// `hyena_utils.fftconv_ref`):
//   k_f = rfft(k, 2L) / 2L;  u_f = rfft(u, 2L)
//   y = irfft(u_f * k_f, 2L, norm="forward")[..., :L] + u * D[:, None]
// i.e. the exact circular convolution of size 2L of u (zero-padded) with k,
// cut to its first L outputs:
//   y[b, c, t] = sum_{s < L} u[b, c, s] k[c, (t - s) mod 2L] + D[c] u[b, c, t].
// Shapes: u [B, d, L] (any strides), k [d, Lk] with 1 <= Lk <= 2L, D [d] or
// undefined (no skip term); y [B, d, L]. With Lk <= L the convolution is
// causal; the bidirectional kernel of length 2L also reaches back from the
// future: output t gets k[2L - (s - t)] from u[s], s > t.
//
// fftconv is one fused CPU op (rfft, complex product, irfft per row, its own
// backward: correlations of the gradient with k and with u, by FFT);
// fftconv_ref is the same map composed from the differentiable FFT ops, the
// oracle of the fused op in the tests and its path on CUDA.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor fftconv(const Tensor& u, const Tensor& k, const Tensor& D = Tensor());
Tensor fftconv_ref(const Tensor& u, const Tensor& k, const Tensor& D = Tensor());

// PAPERS.md 2.3 bidirectional: k = pad(k_fwd, (0, L)) + pad(k_rev.flip(-1), (L, 0)),
// k_fwd and k_rev both [d, L]; output t gets k_fwd[t - s] from s <= t and
// k_rev[s - t - 1] from s > t.
Tensor fftconv_bidirectional(const Tensor& u, const Tensor& k_fwd, const Tensor& k_rev, const Tensor& D = Tensor());

}  // namespace dimix
