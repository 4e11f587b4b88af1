// CUDA kernels of models/optim's fused parameter updates: "sgd_step",
// "adam_step" and "adamw_step" (one kernel: AdamStepArgs.decoupled selects
// AdamW). A thread per element; the arithmetic is models/optim.cpp's CPU
// loop line for line (same casts to T, same lerp form), so a GPU run follows
// the CPU run up to the rounding of sqrt and division.
// p, grad and the state buffers are contiguous, one shape.
//
// The argument structs live in models/optim.h, which this file includes for
// them alone (the one cuda -> models include: the kernel's signature must
// name those exact types).
#include "cuda/common.cuh"
#include "models/optim.h"

namespace dimix::cuda {
namespace {

template <class T>
__global__ void sgd_kernel(T* P, const T* G, T* M, int64_t n, T lr, T wd, T mom, T keep, bool decay, bool nesterov,
                           bool first) {
  DIMIX_GRID_STRIDE(i, n) {
    T d = G[i];
    if (decay) d = d + wd * P[i];
    if (M) {
      M[i] = first ? d : M[i] * mom + keep * d;
      d = nesterov ? d + mom * M[i] : M[i];
    }
    P[i] = P[i] + (-lr) * d;
  }
}

template <class T>
__global__ void adam_kernel(T* P, const T* G, T* M, T* V, int64_t n, bool decoupled, bool l2, T shrink, T wd,
                            bool lerp_low, T weight, T weight_rest, T beta2, T one_minus_beta2, T bc2_sqrt, T eps,
                            T neg_step) {
  DIMIX_GRID_STRIDE(i, n) {
    T pi = P[i];
    if (decoupled) pi = pi * shrink;
    T d = G[i];
    if (l2) d = d + wd * pi;
    const T mi = lerp_low ? M[i] + weight * (d - M[i]) : d - (d - M[i]) * weight_rest;
    const T vi = V[i] * beta2 + one_minus_beta2 * d * d;
    M[i] = mi;
    V[i] = vi;
    const T denom = dm::sqrt(vi) / bc2_sqrt + eps;
    P[i] = pi + neg_step * (mi / denom);
  }
}

void check_same(const char* op, const Tensor& p, const Tensor& t, const char* what) {
  DIMIX_CHECK(t.sizes() == p.sizes() && t.dtype() == p.dtype() && t.device() == p.device() && t.is_contiguous(), op,
              ": ", what, " ", t.shape_str(), " ", dtype_name(t.dtype()), " on ", t.device().str(),
              " does not match the contiguous parameter ", p.shape_str(), " ", dtype_name(p.dtype()), " on ",
              p.device().str());
}

void sgd_step_cuda(const Tensor& p, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  check_same("SGD.step", p, p, "parameter");
  check_same("SGD.step", p, grad, "gradient");
  if (buf.defined()) check_same("SGD.step", p, buf, "momentum buffer");
  DeviceContext& ctx = context_of(p);
  const int64_t n = p.numel();
  if (n == 0) return;
  dispatch_float(p.dtype(), "SGD.step", [&]<class T>() {
    sgd_kernel<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(p), ptr<T>(grad), buf.defined() ? ptr<T>(buf) : nullptr, n, static_cast<T>(a.lr),
        static_cast<T>(a.weight_decay), static_cast<T>(a.momentum), static_cast<T>(1.0 - a.dampening),
        a.weight_decay != 0, a.nesterov, a.first_step);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void adam_step_cuda(const Tensor& p, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamStepArgs& a) {
  const char* op = a.decoupled ? "AdamW.step" : "Adam.step";
  check_same(op, p, p, "parameter");
  check_same(op, p, grad, "gradient");
  check_same(op, p, m, "exp_avg");
  check_same(op, p, v, "exp_avg_sq");
  DeviceContext& ctx = context_of(p);
  const int64_t n = p.numel();
  if (n == 0) return;
  dispatch_float(p.dtype(), op, [&]<class T>() {
    const double w = 1.0 - a.beta1;
    adam_kernel<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(p), ptr<T>(grad), ptr<T>(m), ptr<T>(v), n, a.decoupled && a.weight_decay != 0,
        !a.decoupled && a.weight_decay != 0, static_cast<T>(1.0 - a.lr * a.weight_decay),
        static_cast<T>(a.weight_decay), w < 0.5, static_cast<T>(w), static_cast<T>(1.0 - w), static_cast<T>(a.beta2),
        static_cast<T>(1.0 - a.beta2), static_cast<T>(a.bias_correction2_sqrt), static_cast<T>(a.eps),
        static_cast<T>(-a.step_size));
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("sgd_step", sgd_step_cuda);
DIMIX_REGISTER_KERNEL("adam_step", adam_step_cuda);
DIMIX_REGISTER_KERNEL("adamw_step", adam_step_cuda);

}  // namespace dimix::cuda
