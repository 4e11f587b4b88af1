// Discrete Fourier transforms along the last axis, with autograd: fft / ifft
// (complex to complex), rfft (real to half spectrum) and irfft (half spectrum
// to real), with numpy / torch.fft semantics for `n` and `norm`:
//   - n: the transform length; the input is zero-padded or truncated to n
//     points (rfft / fft / ifft) or to n/2 + 1 bins (irfft, whose default n
//     is 2 (M - 1) for M input bins);
//   - norm "backward" (forward unscaled, inverse 1/n), "forward" (forward
//     1/n, inverse unscaled) or "ortho" (1/sqrt(n) both ways);
//   - irfft ignores the imaginary parts of bin 0 and, for even n, bin n/2
//     (a real signal's spectrum has none), as pocketfft and cuFFT do.
//
// Complex values are a trailing dim of 2 (real, imaginary): a complex tensor
// [..., N, 2] is transformed along its second-to-last storage dim, a real one
// [..., N] along its last; every leading dim is a batch dim. f32 and f64.
//
// The CPU transforms are our own: an iterative self-sorting (Stockham)
// mixed-radix FFT with radix-4 / 2 / 3 butterflies and a generic butterfly
// for primes up to 13, Bluestein's chirp-z algorithm (through a power-of-two
// FFT) for lengths with a larger prime factor, and real transforms of even
// length packed into a half-length complex FFT. On CUDA the ops dispatch to
// kernels (cuFFT), listed at the top of fft.cpp.
//
// The adjoints (backward): fft's is an unnormalised inverse DFT, scaled as
// the forward was; rfft's is an irfft of the incoming gradient with its
// interior bins halved (irfft doubles them: a half spectrum stands for a
// Hermitian full one); irfft's is an rfft with the interior bins doubled and
// the imaginary parts of bins 0 and n/2 zero.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace dimix {

Tensor fft(const Tensor& x, int64_t n = -1, const std::string& norm = "backward");
Tensor ifft(const Tensor& x, int64_t n = -1, const std::string& norm = "backward");
Tensor rfft(const Tensor& x, int64_t n = -1, const std::string& norm = "backward");
Tensor irfft(const Tensor& x, int64_t n = -1, const std::string& norm = "backward");

// Elementwise complex product of [..., 2] tensors, with broadcasting: a
// composite of differentiable ops (runs on every device).
Tensor complex_mul(const Tensor& a, const Tensor& b);

// ---- row transforms for CPU kernels that fuse FFTs with other work ----------------
// A plan is immutable after construction and shared by threads; each call
// brings its own scratch. Unnormalised both ways. The batch forms transform
// V rows at once, stored point-major with the rows innermost (element j of
// row v at j * V + v): every butterfly then runs over V * (its own inner
// length) contiguous values, which keeps short transforms vectorised.
template <class T>
class ComplexFft {
 public:
  explicit ComplexFft(int64_t n);
  ~ComplexFft();
  int64_t size() const { return n_; }
  int64_t scratch_size(int64_t V = 1) const;
  // In place on split arrays re[n], im[n]: forward (e^{-2 pi i jk/n}) or
  // inverse (e^{+2 pi i jk/n}) DFT, no scaling.
  void transform(T* re, T* im, bool inverse, T* scratch) const;
  // The same on V rows, re / im [n][V].
  void transform_batch(T* re, T* im, int64_t V, bool inverse, T* scratch) const;

 private:
  struct Impl;
  int64_t n_;
  std::unique_ptr<Impl> impl_;
};

template <class T>
class RealFft {
 public:
  explicit RealFft(int64_t n);
  ~RealFft();
  int64_t size() const { return n_; }
  int64_t bins() const { return n_ / 2 + 1; }
  int64_t scratch_size(int64_t V = 1) const;             // for the batch forms
  int64_t row_scratch_size() const { return scratch_size(1) + 2 * bins(); }  // for forward / inverse
  // spec[2 * bins] (interleaved re, im) = the first n/2 + 1 bins of DFT(x[n]).
  void forward(const T* x, T* spec, T* scratch) const;
  // x[n] = sum_k F_k e^{+2 pi i jk/n} over the Hermitian extension F of
  // spec (imaginary parts of bins 0 and n/2 ignored), no 1/n.
  void inverse(const T* spec, T* x, T* scratch) const;
  // V rows: x [n][V] <-> split spectra re, im [bins][V].
  void forward_batch(const T* x, T* spec_re, T* spec_im, int64_t V, T* scratch) const;
  void inverse_batch(const T* spec_re, const T* spec_im, T* x, int64_t V, T* scratch) const;

 private:
  struct Impl;
  int64_t n_;
  std::unique_ptr<Impl> impl_;
};

// Cached plans (built once per length and type, thread-safe).
template <class T>
std::shared_ptr<const ComplexFft<T>> complex_fft_plan(int64_t n);
template <class T>
std::shared_ptr<const RealFft<T>> real_fft_plan(int64_t n);

}  // namespace dimix
