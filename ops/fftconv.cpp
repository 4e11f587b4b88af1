// fftconv (see fftconv.h): the M2 / Hyena long convolution by FFT.
//
// Letters: B batch, d channels, L sequence length, Lk the kernel length
// (<= 2L), N the FFT length, bins = N / 2 + 1. The op's definition is the
// circular convolution of size 2L; since t - s lies in (-L, L), kernel entry
// j is the lag j when j < L and the lag j - 2L (from the future) when j >= L.
// Any N >= 2L gives the same outputs when the second kind sits at N - 2L + j,
// so the fused op takes the smallest N = 2^a 3^b >= 2L (radix-4/2/3
// butterflies only: 2L = 98 for a 7x7 patch grid would need radix 7 twice).
// Per row (b, c) it pads u to N, takes its real FFT, multiplies by the
// kernel's spectrum (computed once per call, with the 1/N folded in), inverts
// and keeps the first L points; D adds the skip term. Rows go through the
// FFTs 16 channels at a time (RealFft's batch form). Backward, with dy
// padded to N:
//   du = first L of irfft(DY * conj(K)) / N      (correlation with k) + D dy
//   dk = irfft(sum_b DY * conj(U)) / N at the kernel's positions (correlation with u)
//   dD = sum over b, t of dy * u
// The backward runs in parallel over channels, so the sums over b stay
// inside one thread (deterministic for any thread count).
//
// No CUDA kernel of its own: on a GPU the op runs as fftconv_ref, the
// composite of rfft / complex_mul / irfft (their kernels are listed in fft.cpp).
#include "ops/fftconv.h"

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/fft.h"
#include "ops/shape.h"

namespace dimix {
namespace {

void check_args(const char* op, const Tensor& u, const Tensor& k, const Tensor& D) {
  check_floating(op, u);
  DIMIX_CHECK(u.dim() == 3, op, ": expected u [B, d, L], got ", u.shape_str());
  DIMIX_CHECK(k.defined() && k.dim() == 2, op, ": expected kernel k [d, Lk], got ",
              k.defined() ? k.shape_str() : std::string("undefined"));
  check_same_device(op, u, k);
  check_same_dtype(op, u, k);
  const int64_t d = u.sizes()[1], L = u.sizes()[2];
  DIMIX_CHECK(L >= 1, op, ": expected a sequence length L >= 1, got u ", u.shape_str());
  DIMIX_CHECK(k.sizes()[0] == d, op, ": kernel k ", k.shape_str(), " has ", k.sizes()[0], " channels, u ", u.shape_str(),
              " has d = ", d);
  DIMIX_CHECK(k.sizes()[1] >= 1 && k.sizes()[1] <= 2 * L, op, ": kernel length must be in [1, 2L] = [1, ", 2 * L,
              "] for u ", u.shape_str(), ", got k ", k.shape_str());
  if (D.defined()) {
    check_same_device(op, u, D);
    check_same_dtype(op, u, D);
    DIMIX_CHECK(D.dim() == 1 && D.sizes()[0] == d, op, ": expected skip D [", d, "], got ", D.shape_str());
  }
}

// The smallest N = 2^a 3^b >= 2L (a >= 1).
int64_t fft_length(int64_t L) {
  int64_t best = 0;
  for (int64_t p3 = 1; p3 <= 2 * L * 3; p3 *= 3) {
    int64_t n = 2 * p3;
    while (n < 2 * L) n *= 2;
    if (best == 0 || n < best) best = n;
  }
  return best;
}

// Where kernel entry j sits in the length-N buffer (see the top of the file).
inline int64_t kernel_pos(int64_t j, int64_t L, int64_t N) { return j < L ? j : N - 2 * L + j; }

// Channels go through the FFTs V = kGroup at a time (ops/fft.h's batch layout:
// point-major, channel innermost), so every butterfly and every spectral
// product is a vector loop over channels.
constexpr int64_t kGroup = 16;

// Working buffers of one thread for one channel group.
template <class T>
struct GroupBuffers {
  std::vector<T> buf, sre, sim, scratch;
  GroupBuffers(const RealFft<T>& plan, int64_t V)
      : buf(plan.size() * V), sre(plan.bins() * V), sim(plan.bins() * V), scratch(plan.scratch_size(V)) {}
};

// Channels c0 .. c0+V of row b of a strided [B, d, L] tensor into buf [N][V]
// (zeros from L on).
template <class T>
void gather(const T* x, int64_t sb, int64_t sc, int64_t st, int64_t b, int64_t c0, int64_t V, int64_t L, int64_t N,
            T* buf) {
  const T* base = x + b * sb + c0 * sc;
  if (sc == 1) {
    for (int64_t t = 0; t < L; ++t) std::copy(base + t * st, base + t * st + V, buf + t * V);
  } else {
    for (int64_t t = 0; t < L; ++t)
      for (int64_t v = 0; v < V; ++v) buf[t * V + v] = base[t * st + v * sc];
  }
  std::fill(buf + L * V, buf + N * V, T(0));
}

// (a_re, a_im) [bins][V] *= (b_re, b_im) [bins][ld] at column offset c0 (conj(b) if Conj).
template <class T, bool Conj>
void spectral_mul(T* __restrict are, T* __restrict aim, const T* bre, const T* bim, int64_t ld, int64_t c0,
                  int64_t bins, int64_t V) {
  for (int64_t k = 0; k < bins; ++k) {
    T* ar = are + k * V;
    T* ai = aim + k * V;
    const T* br = bre + k * ld + c0;
    const T* bi = bim + k * ld + c0;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) {
      const T xr = ar[v], xi = ai[v], yr = br[v], yi = Conj ? -bi[v] : bi[v];
      ar[v] = xr * yr - xi * yi;
      ai[v] = xr * yi + xi * yr;
    }
  }
}

// Kernel spectra times 1/N for every channel: K_re, K_im [bins][d].
template <class T>
void kernel_spectra(const RealFft<T>& plan, const T* k, int64_t d, int64_t Lk, int64_t L, std::vector<T>& Kre,
                    std::vector<T>& Kim) {
  const int64_t N = plan.size(), bins = plan.bins();
  Kre.assign(bins * d, T(0));
  Kim.assign(bins * d, T(0));
  const int64_t groups = (d + kGroup - 1) / kGroup;
  parallel_for(0, groups, std::max<int64_t>(1, 4096 / (N * kGroup)), [&](int64_t g0, int64_t g1) {
    GroupBuffers<T> w(plan, kGroup);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t c0 = g * kGroup, V = std::min(kGroup, d - c0);
      std::fill(w.buf.begin(), w.buf.begin() + N * V, T(0));
      for (int64_t v = 0; v < V; ++v)
        for (int64_t j = 0; j < Lk; ++j) w.buf[kernel_pos(j, L, N) * V + v] = k[(c0 + v) * Lk + j];
      plan.forward_batch(w.buf.data(), w.sre.data(), w.sim.data(), V, w.scratch.data());
      const T inv = T(1) / static_cast<T>(N);
      for (int64_t b = 0; b < bins; ++b)
        for (int64_t v = 0; v < V; ++v) {
          Kre[b * d + c0 + v] = w.sre[b * V + v] * inv;
          Kim[b * d + c0 + v] = w.sim[b * V + v] * inv;
        }
    }
  });
}

template <class T>
void forward_cpu(const Tensor& y, const Tensor& u, const Tensor& k, const Tensor& D) {
  const int64_t B = u.sizes()[0], d = u.sizes()[1], L = u.sizes()[2], Lk = k.sizes()[1], N = fft_length(L);
  const auto plan = real_fft_plan<T>(N);
  const int64_t bins = plan->bins(), groups = (d + kGroup - 1) / kGroup;
  std::vector<T> Kre, Kim;
  kernel_spectra(*plan, k.data<T>(), d, Lk, L, Kre, Kim);
  const T* pu = u.data<T>();
  const int64_t sb = u.strides()[0], sc = u.strides()[1], st = u.strides()[2];
  const T* pD = D.defined() ? D.data<T>() : nullptr;
  T* py = y.data<T>();
  parallel_for(0, B * groups, std::max<int64_t>(1, 2048 / (N * kGroup)), [&](int64_t r0, int64_t r1) {
    GroupBuffers<T> w(*plan, kGroup);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / groups, c0 = (r % groups) * kGroup, V = std::min(kGroup, d - c0);
      gather(pu, sb, sc, st, b, c0, V, L, N, w.buf.data());
      plan->forward_batch(w.buf.data(), w.sre.data(), w.sim.data(), V, w.scratch.data());
      spectral_mul<T, false>(w.sre.data(), w.sim.data(), Kre.data(), Kim.data(), d, c0, bins, V);
      plan->inverse_batch(w.sre.data(), w.sim.data(), w.buf.data(), V, w.scratch.data());
      for (int64_t v = 0; v < V; ++v) {
        const int64_t c = c0 + v;
        const T skip = pD ? pD[c] : T(0);
        const T* urow = pu + b * sb + c * sc;
        T* out = py + (b * d + c) * L;
        for (int64_t t = 0; t < L; ++t) out[t] = w.buf[t * V + v] + skip * urow[t * st];
      }
    }
  });
}

// gy [B, d, L] contiguous; du [B, d, L], dk [d, Lk], dD [d] contiguous or undefined.
template <class T>
void backward_cpu(const Tensor& gy, const Tensor& u, const Tensor& k, const Tensor& D, const Tensor& du,
                  const Tensor& dk, const Tensor& dD) {
  const int64_t B = u.sizes()[0], d = u.sizes()[1], L = u.sizes()[2], Lk = k.sizes()[1], N = fft_length(L);
  const auto plan = real_fft_plan<T>(N);
  const int64_t bins = plan->bins(), groups = (d + kGroup - 1) / kGroup;
  const T* pu = u.data<T>();
  const int64_t sb = u.strides()[0], sc = u.strides()[1], st = u.strides()[2];
  const T* pD = D.defined() ? D.data<T>() : nullptr;
  const T* pg = gy.data<T>();
  T* pdu = du.defined() ? du.data<T>() : nullptr;
  T* pdk = dk.defined() ? dk.data<T>() : nullptr;
  T* pdD = dD.defined() ? dD.data<T>() : nullptr;
  std::vector<T> Kre, Kim;
  if (pdu) kernel_spectra(*plan, k.data<T>(), d, Lk, L, Kre, Kim);
  parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    GroupBuffers<T> w(*plan, kGroup);
    std::vector<T> dyre(bins * kGroup), dyim(bins * kGroup), accre(bins * kGroup), accim(bins * kGroup);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t c0 = g * kGroup, V = std::min(kGroup, d - c0);
      std::fill(accre.begin(), accre.end(), T(0));
      std::fill(accim.begin(), accim.end(), T(0));
      for (int64_t v = 0; v < V && pdD; ++v) pdD[c0 + v] = T(0);
      for (int64_t b = 0; b < B; ++b) {
        if (pdD)
          for (int64_t v = 0; v < V; ++v) {
            const T* grow = pg + (b * d + c0 + v) * L;
            const T* urow = pu + b * sb + (c0 + v) * sc;
            T s = 0;
            for (int64_t t = 0; t < L; ++t) s += grow[t] * urow[t * st];
            pdD[c0 + v] += s;
          }
        if (!pdu && !pdk) continue;
        gather(pg, d * L, L, int64_t(1), b, c0, V, L, N, w.buf.data());
        plan->forward_batch(w.buf.data(), dyre.data(), dyim.data(), V, w.scratch.data());
        if (pdu) {
          std::copy(dyre.begin(), dyre.begin() + bins * V, w.sre.begin());
          std::copy(dyim.begin(), dyim.begin() + bins * V, w.sim.begin());
          spectral_mul<T, true>(w.sre.data(), w.sim.data(), Kre.data(), Kim.data(), d, c0, bins, V);
          plan->inverse_batch(w.sre.data(), w.sim.data(), w.buf.data(), V, w.scratch.data());
          for (int64_t v = 0; v < V; ++v) {
            const int64_t c = c0 + v;
            const T skip = pD ? pD[c] : T(0);
            const T* grow = pg + (b * d + c) * L;
            T* out = pdu + (b * d + c) * L;
            for (int64_t t = 0; t < L; ++t) out[t] = w.buf[t * V + v] + skip * grow[t];
          }
        }
        if (pdk) {
          // acc += DY * conj(U), U the spectrum of this row group of u.
          gather(pu, sb, sc, st, b, c0, V, L, N, w.buf.data());
          plan->forward_batch(w.buf.data(), w.sre.data(), w.sim.data(), V, w.scratch.data());
          for (int64_t i = 0; i < bins * V; ++i) {
            const T xr = dyre[i], xi = dyim[i], yr = w.sre[i], yi = -w.sim[i];
            accre[i] += xr * yr - xi * yi;
            accim[i] += xr * yi + xi * yr;
          }
        }
      }
      if (pdk) {
        plan->inverse_batch(accre.data(), accim.data(), w.buf.data(), V, w.scratch.data());
        const T inv = T(1) / static_cast<T>(N);
        for (int64_t v = 0; v < V; ++v)
          for (int64_t j = 0; j < Lk; ++j) pdk[(c0 + v) * Lk + j] = w.buf[kernel_pos(j, L, N) * V + v] * inv;
      }
    }
  });
}

}  // namespace

Tensor fftconv_ref(const Tensor& u, const Tensor& k, const Tensor& D) {
  check_args("fftconv_ref", u, k, D);
  const int64_t d = u.sizes()[1], L = u.sizes()[2], N = 2 * L;
  const Tensor k_f = mul(rfft(k, N), 1.0 / static_cast<double>(N));
  const Tensor u_f = rfft(u, N);
  Tensor y = narrow(irfft(complex_mul(u_f, k_f), N, "forward"), -1, 0, L);
  if (D.defined()) y = y + u * reshape(D, {d, 1});
  return y;
}

Tensor fftconv(const Tensor& u, const Tensor& k_in, const Tensor& D_in) {
  const char* op = "fftconv";
  check_args(op, u, k_in, D_in);
  if (u.device().is_cuda()) return fftconv_ref(u, k_in, D_in);
  const Tensor k = k_in.contiguous_raw();
  const Tensor D = D_in.defined() ? D_in.contiguous_raw() : Tensor();
  Tensor y = empty(u.sizes(), u.dtype(), u.device());
  dispatch_float(u.dtype(), op, [&]<class T>() { forward_cpu<T>(y, u, k, D); });
  if (needs_grad({u, k_in, D_in})) {
    const bool gu = u.requires_grad(), gk = k_in.requires_grad(), gD = D_in.defined() && D_in.requires_grad();
    const Tensor su = u.detach(), sk = k.detach(), sD = D.defined() ? D.detach() : Tensor();
    record(y, op, {u, k_in, D_in}, [=](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gy = g.contiguous_raw();
      Tensor du = gu ? empty(su.sizes(), su.dtype()) : Tensor();
      Tensor dk = gk ? empty(sk.sizes(), sk.dtype()) : Tensor();
      Tensor dD = gD ? empty(sD.sizes(), sD.dtype()) : Tensor();
      dispatch_float(su.dtype(), "fftconv", [&]<class T>() { backward_cpu<T>(gy, su, sk, sD, du, dk, dD); });
      return {du, dk, dD};
    });
  }
  return y;
}

Tensor fftconv_bidirectional(const Tensor& u, const Tensor& k_fwd, const Tensor& k_rev, const Tensor& D) {
  const char* op = "fftconv_bidirectional";
  DIMIX_CHECK(u.dim() == 3, op, ": expected u [B, d, L], got ", u.shape_str());
  const int64_t d = u.sizes()[1], L = u.sizes()[2];
  DIMIX_CHECK(k_fwd.defined() && k_rev.defined() && k_fwd.sizes() == Shape({d, L}) && k_rev.sizes() == Shape({d, L}), op,
              ": expected k_fwd and k_rev [d, L] = [", d, ", ", L, "] for u ", u.shape_str(), ", got ",
              k_fwd.defined() ? k_fwd.shape_str() : std::string("undefined"), " and ",
              k_rev.defined() ? k_rev.shape_str() : std::string("undefined"));
  std::vector<int64_t> rev(L);
  for (int64_t i = 0; i < L; ++i) rev[i] = L - 1 - i;
  Tensor index = from_vector<int64_t>(rev, {L});
  if (!k_rev.device().is_cpu()) index = to_device_raw(index, k_rev.device());
  const Tensor k = cat({k_fwd, index_select(k_rev, 1, index)}, 1);  // [d, 2L]
  return fftconv(u, k, D);
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // Causal kernel (Lk = L), odd L = 5 (FFT length 10: radices 2 and 5), skip D.
    {"fftconv/causal_L5", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5}, t), randn_input(g, {3, 5}, t), randn_input(g, {3}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv(x[0], x[1], x[2]); }},
    // Bidirectional-length kernel (Lk = 2L = 10, FFT length 12 != 2L), u a
    // transposed view [B, L, d] -> [B, d, L].
    {"fftconv/long_kernel_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 3, 5}, t), randn_input(g, {3, 10}, t), randn_input(g, {3}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv(x[0], x[1], x[2]); }},
    // L < Lk < 2L (L = 7, Lk = 11: lags 0..6 and -7..-4; FFT length 16).
    {"fftconv/mid_kernel", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 2, 7}, t), randn_input(g, {2, 11}, t), randn_input(g, {2}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv(x[0], x[1], x[2]); }},
    // Short kernel (Lk = 3 < L = 7), no skip, d = 1.
    {"fftconv/short_kernel_noD", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 1, 7}, t), randn_input(g, {1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv(x[0], x[1]); }},
    // L = 1 (FFT length 2).
    {"fftconv/L1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 2, 1}, t), randn_input(g, {2, 2}, t), randn_input(g, {2}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv(x[0], x[1], x[2]); }},
    {"fftconv/bidirectional", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 2, 6}, t), randn_input(g, {2, 6}, t), randn_input(g, {2, 6}, t),
                          randn_input(g, {2}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv_bidirectional(x[0], x[1], x[2], x[3]); }},
    {"fftconv_ref/causal_L5", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5}, t), randn_input(g, {3, 5}, t), randn_input(g, {3}, t)}; },
     [](const std::vector<Tensor>& x) { return fftconv_ref(x[0], x[1], x[2]); }},
});

}  // namespace dimix
