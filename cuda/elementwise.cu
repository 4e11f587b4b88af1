// CUDA kernels of ops/elementwise: binary arithmetic with broadcasting,
// the unary math/activation functions and their backward, not_equal with a
// scalar, and core's fill_ on GPU tensors.
//
// Shapes: `out` is always a fresh contiguous tensor of the broadcast shape;
// operands may have any strides (0 on broadcast dims). Three paths per op:
// float4-vectorised when every operand is contiguous and 16-byte aligned,
// flat when contiguous, strided otherwise (StridedIndex). The op code is a
// uniform runtime switch inside the loop (one kernel per dtype instead of
// one per op: the switch costs nothing next to the memory traffic, and it
// keeps the compile small). Formulas mirror ops/elementwise.cpp exactly.
#include "cuda/common.cuh"
#include "ops/elementwise.h"  // the BinaryOp / UnaryOp codes only

namespace dimix::cuda {
namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// ---- per-element functions ---------------------------------------------------------
template <class T>
__device__ __forceinline__ T binary_fn(int op, T x, T y) {
  switch (op) {
    case static_cast<int>(BinaryOp::add): return x + y;
    case static_cast<int>(BinaryOp::sub): return x - y;
    case static_cast<int>(BinaryOp::mul): return x * y;
    default: return x / y;
  }
}

template <class T>
__device__ __forceinline__ T unary_fn(int op, T v, T alpha) {
  switch (static_cast<UnaryOp>(op)) {
    case UnaryOp::neg: return -v;
    case UnaryOp::exp: return dm::exp(v);
    case UnaryOp::log: return dm::log(v);
    case UnaryOp::sqrt: return dm::sqrt(v);
    case UnaryOp::abs: return dm::abs(v);
    case UnaryOp::square: return v * v;
    case UnaryOp::sin: return dm::sin(v);
    case UnaryOp::cos: return dm::cos(v);
    case UnaryOp::tanh: return dm::tanh(v);
    case UnaryOp::sigmoid: return T(1) / (T(1) + dm::exp(-v));
    case UnaryOp::relu: return v > T(0) ? v : T(0);
    case UnaryOp::elu: return v > T(0) ? v : alpha * (dm::exp(v) - T(1));
    case UnaryOp::gelu_erf: return T(0.5) * v * (T(1) + dm::erf(v * T(kSqrt1_2)));
    case UnaryOp::gelu_tanh:
      return T(0.5) * v * (T(1) + dm::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v)));
    case UnaryOp::pow: return dm::pow(v, alpha);
    case UnaryOp::add_scalar: return v + alpha;
    case UnaryOp::mul_scalar: return v * alpha;
    case UnaryOp::rsub_scalar: return alpha - v;
  }
  return v;
}

// d f / d x from (x, y = f(x)), as unary_backward_cpu.
template <class T>
__device__ __forceinline__ T unary_deriv(int op, T x, T y, T alpha) {
  switch (static_cast<UnaryOp>(op)) {
    case UnaryOp::neg: return T(-1);
    case UnaryOp::exp: return y;
    case UnaryOp::log: return T(1) / x;
    case UnaryOp::sqrt: return T(0.5) / y;
    case UnaryOp::abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::square: return T(2) * x;
    case UnaryOp::sin: return dm::cos(x);
    case UnaryOp::cos: return -dm::sin(x);
    case UnaryOp::tanh: return T(1) - y * y;
    case UnaryOp::sigmoid: return y * (T(1) - y);
    case UnaryOp::relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::elu: return x > T(0) ? T(1) : alpha * dm::exp(x);
    case UnaryOp::gelu_erf:
      return T(0.5) * (T(1) + dm::erf(x * T(kSqrt1_2))) + x * T(kInvSqrt2Pi) * dm::exp(T(-0.5) * x * x);
    case UnaryOp::gelu_tanh: {
      const T inner = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
      const T t = dm::tanh(inner);
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    }
    case UnaryOp::pow: return alpha * dm::pow(x, alpha - T(1));
    case UnaryOp::add_scalar: return T(1);
    case UnaryOp::mul_scalar: return alpha;
    case UnaryOp::rsub_scalar: return T(-1);
  }
  return T(0);
}

// ---- binary -------------------------------------------------------------------------------
template <class T>
__global__ void binary_flat(T* out, const T* a, const T* b, int64_t n, int op) {
  DIMIX_GRID_STRIDE(i, n) out[i] = binary_fn(op, a[i], b[i]);
}

__global__ void binary_vec4(float* out, const float* a, const float* b, int64_t n, int op) {
  const int64_t n4 = n / 4;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* o4 = reinterpret_cast<float4*>(out);
  DIMIX_GRID_STRIDE(i, n4) {
    const float4 x = a4[i], y = b4[i];
    o4[i] = make_float4(binary_fn(op, x.x, y.x), binary_fn(op, x.y, y.y), binary_fn(op, x.z, y.z),
                        binary_fn(op, x.w, y.w));
  }
  DIMIX_GRID_STRIDE(j, n - n4 * 4) {
    const int64_t i = n4 * 4 + j;
    out[i] = binary_fn(op, a[i], b[i]);
  }
}

template <class T>
__global__ void binary_strided(T* out, const T* a, const T* b, int64_t n, int op, StridedIndex<3> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[3];
    idx.offsets(i, off);
    out[off[0]] = binary_fn(op, a[off[1]], b[off[2]]);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

void binary_cuda(const Tensor& out, const Tensor& a, const Tensor& b, int op) {
  DeviceContext& ctx = context_of(out);
  const int64_t n = out.numel();
  if (n == 0) return;
  const Shape sa = broadcast_strides_to(a, out.sizes()), sb = broadcast_strides_to(b, out.sizes());
  const bool flat = out.is_contiguous() && a.sizes() == out.sizes() && b.sizes() == out.sizes() &&
                    a.is_contiguous() && b.is_contiguous();
  dispatch_all(out.dtype(), "binary", [&]<class T>() {
    if constexpr (std::is_same_v<T, uint8_t>) {
      DIMIX_FAIL("binary: not supported for u8");
    } else {
      T* po = ptr<T>(out);
      const T* pa = ptr<T>(a);
      const T* pb = ptr<T>(b);
      if (flat) {
        if constexpr (std::is_same_v<T, float>) {
          if (aligned16(po) && aligned16(pa) && aligned16(pb)) {
            binary_vec4<<<grid_for(n / 4 + 1, ctx), kThreads, 0, ctx.stream>>>(po, pa, pb, n, op);
            DIMIX_CUDA_LAUNCH_CHECK();
            return;
          }
        }
        binary_flat<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(po, pa, pb, n, op);
      } else {
        const auto idx = make_strided_index<3>(out.sizes(), {&out.strides(), &sa, &sb}, "binary");
        binary_strided<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(po, pa, pb, n, op, idx);
      }
      DIMIX_CUDA_LAUNCH_CHECK();
    }
  });
}

// ---- unary ----------------------------------------------------------------------------------
template <class T>
__global__ void unary_flat(T* out, const T* x, int64_t n, int op, T alpha) {
  DIMIX_GRID_STRIDE(i, n) out[i] = unary_fn(op, x[i], alpha);
}

__global__ void unary_vec4(float* out, const float* x, int64_t n, int op, float alpha) {
  const int64_t n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* o4 = reinterpret_cast<float4*>(out);
  DIMIX_GRID_STRIDE(i, n4) {
    const float4 v = x4[i];
    o4[i] = make_float4(unary_fn(op, v.x, alpha), unary_fn(op, v.y, alpha), unary_fn(op, v.z, alpha),
                        unary_fn(op, v.w, alpha));
  }
  DIMIX_GRID_STRIDE(j, n - n4 * 4) {
    const int64_t i = n4 * 4 + j;
    out[i] = unary_fn(op, x[i], alpha);
  }
}

template <class T>
__global__ void unary_strided(T* out, const T* x, int64_t n, int op, T alpha, StridedIndex<2> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[2];
    idx.offsets(i, off);
    out[off[0]] = unary_fn(op, x[off[1]], alpha);
  }
}

void unary_cuda(const Tensor& out, const Tensor& x, int op, double alpha) {
  DeviceContext& ctx = context_of(out);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "unary", [&]<class T>() {
    T* po = ptr<T>(out);
    const T* px = ptr<T>(x);
    const T a = static_cast<T>(alpha);
    if (out.is_contiguous() && x.is_contiguous()) {
      if constexpr (std::is_same_v<T, float>) {
        if (aligned16(po) && aligned16(px)) {
          unary_vec4<<<grid_for(n / 4 + 1, ctx), kThreads, 0, ctx.stream>>>(po, px, n, op, a);
          DIMIX_CUDA_LAUNCH_CHECK();
          return;
        }
      }
      unary_flat<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(po, px, n, op, a);
    } else {
      const auto idx = make_strided_index<2>(out.sizes(), {&out.strides(), &x.strides()}, "unary");
      unary_strided<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(po, px, n, op, a, idx);
    }
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- unary backward ---------------------------------------------------------------------------
// x or y may be absent (null): the op's derivative does not read it.
template <class T>
__global__ void unary_backward_flat(T* gin, const T* g, const T* x, const T* y, int64_t n, int op, T alpha) {
  DIMIX_GRID_STRIDE(i, n) {
    const T xv = x ? x[i] : T(0), yv = y ? y[i] : T(0);
    gin[i] = g[i] * unary_deriv(op, xv, yv, alpha);
  }
}

template <class T>
__global__ void unary_backward_strided(T* gin, const T* g, const T* x, const T* y, int64_t n, int op, T alpha,
                                       StridedIndex<4> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[4];
    idx.offsets(i, off);
    const T xv = x ? x[off[2]] : T(0), yv = y ? y[off[3]] : T(0);
    gin[off[0]] = g[off[1]] * unary_deriv(op, xv, yv, alpha);
  }
}

void unary_backward_cuda(const Tensor& gin, const Tensor& g, const Tensor& x, const Tensor& y, int op,
                         double alpha) {
  DeviceContext& ctx = context_of(gin);
  const int64_t n = gin.numel();
  if (n == 0) return;
  const bool flat = gin.is_contiguous() && g.is_contiguous() && (!x.defined() || x.is_contiguous()) &&
                    (!y.defined() || y.is_contiguous());
  dispatch_float(gin.dtype(), "unary_backward", [&]<class T>() {
    T* pgi = ptr<T>(gin);
    const T* pg = ptr<T>(g);
    const T* px = x.defined() ? ptr<T>(x) : nullptr;
    const T* py = y.defined() ? ptr<T>(y) : nullptr;
    const T a = static_cast<T>(alpha);
    if (flat) {
      unary_backward_flat<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(pgi, pg, px, py, n, op, a);
    } else {
      const Shape zero(gin.dim(), 0);
      const Shape& sx = x.defined() ? x.strides() : zero;
      const Shape& sy = y.defined() ? y.strides() : zero;
      const auto idx =
          make_strided_index<4>(gin.sizes(), {&gin.strides(), &g.strides(), &sx, &sy}, "unary_backward");
      unary_backward_strided<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(pgi, pg, px, py, n, op, a, idx);
    }
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- fill ---------------------------------------------------------------------------------------
template <class T>
__global__ void fill_strided(T* p, int64_t n, T v, StridedIndex<1> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[1];
    idx.offsets(i, off);
    p[off[0]] = v;
  }
}

// Every element of t (any strides, any dtype) set to value.
void fill_cuda(const Tensor& t, double value) {
  DeviceContext& ctx = context_of(t);
  const int64_t n = t.numel();
  if (n == 0) return;
  if (value == 0.0 && t.is_contiguous()) {  // all-zero bits for every dtype
    DIMIX_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, n * dtype_size(t.dtype()), ctx.stream));
    return;
  }
  dispatch_all(t.dtype(), "fill", [&]<class T>() {
    const auto idx = make_strided_index<1>(t.sizes(), {&t.strides()}, "fill");
    fill_strided<T><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(t), n, static_cast<T>(value), idx);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- not_equal_scalar ---------------------------------------------------------------------
// out (contiguous, any dtype) = double(x) != value ? 1 : 0, x any dtype and strides.
template <class D, class S>
__global__ void not_equal_kernel(D* out, const S* x, int64_t n, double value, StridedIndex<2> idx) {
  DIMIX_GRID_STRIDE(i, n) {
    int64_t off[2];
    idx.offsets(i, off);
    out[off[0]] = static_cast<double>(x[off[1]]) != value ? D(1) : D(0);
  }
}

void not_equal_scalar_cuda(const Tensor& out, const Tensor& x, double value) {
  DeviceContext& ctx = context_of(out);
  const int64_t n = out.numel();
  if (n == 0) return;
  const auto idx = make_strided_index<2>(x.sizes(), {&out.strides(), &x.strides()}, "not_equal");
  dispatch_all(x.dtype(), "not_equal", [&]<class S>() {
    dispatch_all(out.dtype(), "not_equal", [&]<class D>() {
      not_equal_kernel<D, S><<<grid_for(n, ctx), kThreads, 0, ctx.stream>>>(ptr<D>(out), ptr<S>(x), n, value, idx);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace

DIMIX_REGISTER_KERNEL("not_equal_scalar", not_equal_scalar_cuda);
DIMIX_REGISTER_KERNEL("binary", binary_cuda);
DIMIX_REGISTER_KERNEL("unary", unary_cuda);
DIMIX_REGISTER_KERNEL("unary_backward", unary_backward_cuda);
DIMIX_REGISTER_KERNEL("fill", fill_cuda);

}  // namespace dimix::cuda
