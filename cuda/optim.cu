// CUDA kernels of models/optim's fused parameter updates: "sgd_step",
// "adam_step" and "adamw_step" (one kernel: AdamStepArgs.decoupled selects
// AdamW), and "multi_tensor_adam", one launch for a whole parameter group
// (part 2; per-tensor args, so Adam and AdamW alike, bit-identical to
// adam_step per tensor). A thread per element; the arithmetic is
// models/optim.cpp's CPU loop line for line (same casts to T, same lerp
// form), so a GPU run follows the CPU run up to the rounding of sqrt and
// division.
// p, grad and the state buffers are contiguous, one shape.
//
// The argument structs live in models/optim.h, which this file includes for
// them alone (the one cuda -> models include: the kernel's signature must
// name those exact types).
#include <algorithm>
#include <cstring>
#include <vector>

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

// The per-element scalars of one Adam/AdamW update, cast to T on the host
// (both the per-tensor and the multi-tensor kernels use these, so their
// arithmetic is the same to the bit).
template <class T>
struct AdamScalars {
  T shrink, wd, weight, weight_rest, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step;
  bool decoupled, l2, lerp_low;
};

template <class T>
AdamScalars<T> adam_scalars(const AdamStepArgs& a) {
  const double w = 1.0 - a.beta1;
  return AdamScalars<T>{static_cast<T>(1.0 - a.lr * a.weight_decay),
                        static_cast<T>(a.weight_decay),
                        static_cast<T>(w),
                        static_cast<T>(1.0 - w),
                        static_cast<T>(a.beta2),
                        static_cast<T>(1.0 - a.beta2),
                        static_cast<T>(a.bias_correction2_sqrt),
                        static_cast<T>(a.eps),
                        static_cast<T>(-a.step_size),
                        a.decoupled && a.weight_decay != 0,
                        !a.decoupled && a.weight_decay != 0,
                        w < 0.5};
}

// Element i of one parameter: models/optim.cpp's CPU loop line for line.
template <class T>
__device__ __forceinline__ void adam_update(T* P, const T* G, T* M, T* V, int64_t i, const AdamScalars<T>& s) {
  T pi = P[i];
  if (s.decoupled) pi = pi * s.shrink;
  T d = G[i];
  if (s.l2) d = d + s.wd * pi;
  const T mi = s.lerp_low ? M[i] + s.weight * (d - M[i]) : d - (d - M[i]) * s.weight_rest;
  const T vi = V[i] * s.beta2 + s.one_minus_beta2 * d * d;
  M[i] = mi;
  V[i] = vi;
  const T denom = dm::sqrt(vi) / s.bc2_sqrt + s.eps;
  P[i] = pi + s.neg_step * (mi / denom);
}

template <class T>
__global__ void adam_kernel(T* P, const T* G, T* M, T* V, int64_t n, AdamScalars<T> s) {
  DIMIX_GRID_STRIDE(i, n) adam_update(P, G, M, V, i, s);
}

// ---- multi-tensor Adam/AdamW ---------------------------------------------------------
// One launch for a whole parameter group: the tensors are cut into chunks,
// a table of (tensor, element range) chunks and one of per-tensor pointers
// and scalars is copied to the device (one small transfer, queued on the
// stream before the kernel), and each block walks chunks. Per-tensor
// scalars let parameters at different step counts share the launch.
template <class T>
struct AdamTensor {
  T *p, *m, *v;
  const T* g;
  AdamScalars<T> s;
};
struct AdamChunk {
  int64_t tensor, begin, end;
};

template <class T>
__global__ void multi_tensor_adam_kernel(const AdamTensor<T>* tensors, const AdamChunk* chunks, int64_t nchunks) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const AdamChunk ch = chunks[c];
    const AdamTensor<T> t = tensors[ch.tensor];
    for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += blockDim.x) adam_update(t.p, t.g, t.m, t.v, i, t.s);
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
    adam_kernel<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(p), ptr<T>(grad), ptr<T>(m), ptr<T>(v), n,
                                                                  adam_scalars<T>(a));
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// params[i], grads[i], exp_avg[i], exp_avg_sq[i] as adam_step's p, grad, m, v,
// updated with args[i]; every tensor on one device in one floating dtype.
void multi_tensor_adam_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                            const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq,
                            const std::vector<AdamStepArgs>& args) {
  const char* op = "multi_tensor_adam";
  const size_t n = params.size();
  DIMIX_CHECK(grads.size() == n && exp_avg.size() == n && exp_avg_sq.size() == n && args.size() == n, op,
              ": expected one gradient, exp_avg, exp_avg_sq and args per parameter, got ", n, " parameters, ",
              grads.size(), " gradients, ", exp_avg.size(), " exp_avg, ", exp_avg_sq.size(), " exp_avg_sq, ",
              args.size(), " args");
  if (n == 0) return;
  for (size_t i = 0; i < n; ++i) {
    DIMIX_CHECK(params[i].dtype() == params[0].dtype() && params[i].device() == params[0].device(), op,
                ": parameter ", i, " is ", dtype_name(params[i].dtype()), " on ", params[i].device().str(),
                ", parameter 0 ", dtype_name(params[0].dtype()), " on ", params[0].device().str());
    check_same(op, params[i], params[i], "parameter");
    check_same(op, params[i], grads[i], "gradient");
    check_same(op, params[i], exp_avg[i], "exp_avg");
    check_same(op, params[i], exp_avg_sq[i], "exp_avg_sq");
  }
  DeviceContext& ctx = context_of(params[0]);
  int64_t total = 0;
  for (const Tensor& p : params) total += p.numel();
  if (total == 0) return;
  // Chunks: about 8 per SM over the whole group, 2K..64K elements each (the
  // split does not change any result: the update is elementwise).
  int64_t chunk = (total + 8 * ctx.num_sms - 1) / (8 * ctx.num_sms);
  chunk = std::min<int64_t>(65536, std::max<int64_t>(2048, (chunk + 1023) / 1024 * 1024));
  dispatch_float(params[0].dtype(), op, [&]<class T>() {
    std::vector<AdamTensor<T>> tensors(n);
    std::vector<AdamChunk> chunks;
    for (size_t i = 0; i < n; ++i) {
      tensors[i] = AdamTensor<T>{ptr<T>(params[i]), ptr<T>(exp_avg[i]), ptr<T>(exp_avg_sq[i]), ptr<T>(grads[i]),
                                 adam_scalars<T>(args[i])};
      for (int64_t b = 0; b < params[i].numel(); b += chunk)
        chunks.push_back(AdamChunk{static_cast<int64_t>(i), b, std::min(params[i].numel(), b + chunk)});
    }
    // One byte buffer: the tensor table, then (16-byte aligned) the chunk table.
    const size_t tensor_bytes = (n * sizeof(AdamTensor<T>) + 15) / 16 * 16;
    const size_t bytes = tensor_bytes + chunks.size() * sizeof(AdamChunk);
    Tensor host = empty({static_cast<int64_t>(bytes)}, DType::u8);
    std::memcpy(host.raw_data(), tensors.data(), n * sizeof(AdamTensor<T>));
    std::memcpy(static_cast<char*>(host.raw_data()) + tensor_bytes, chunks.data(), chunks.size() * sizeof(AdamChunk));
    const Tensor table = to_device_raw(host, params[0].device());  // queued on the stream before the kernel
    const auto* dev = static_cast<const unsigned char*>(table.raw_data());
    const int64_t nchunks = static_cast<int64_t>(chunks.size());
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(nchunks, 32 * static_cast<int64_t>(ctx.num_sms)));
    multi_tensor_adam_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(
        reinterpret_cast<const AdamTensor<T>*>(dev), reinterpret_cast<const AdamChunk*>(dev + tensor_bytes), nchunks);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("sgd_step", sgd_step_cuda);
DIMIX_REGISTER_KERNEL("adam_step", adam_step_cuda);
DIMIX_REGISTER_KERNEL("adamw_step", adam_step_cuda);
DIMIX_REGISTER_KERNEL("multi_tensor_adam", multi_tensor_adam_cuda);

}  // namespace dimix::cuda
