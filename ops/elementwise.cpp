// Elementwise ops (see elementwise.h). CPU loops are written so the common
// layouts (all contiguous; one operand a broadcast scalar) become plain
// vectorisable loops; everything else walks strides.
#include "ops/elementwise.h"

#include <cmath>

#include "ops/common.h"
#include "ops/elu_kernel.h"
#include "ops/gelu_kernel.h"
#include "ops/reduce.h"
#include "ops/vec_math.h"

namespace dimix {

Shape broadcast_strides(const Tensor& t, const Shape& target) {
  const size_t n = target.size(), m = static_cast<size_t>(t.dim());
  Shape st(n, 0);
  for (size_t i = 0; i < m; ++i) {
    const size_t j = n - m + i;
    st[j] = t.sizes()[i] == 1 && target[j] != 1 ? 0 : t.strides()[i];
  }
  return st;
}

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// ---- CPU kernels ----------------------------------------------------------------
template <class T, class F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  const Shape sa = broadcast_strides(a, out.sizes()), sb = broadcast_strides(b, out.sizes());
  T* po = out.data<T>();
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  strided_apply<3>(out.sizes(), {&out.strides(), &sa, &sb},
                   [&](const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& st, int64_t n) {
                     T* o = po + off[0];
                     const T* x = pa + off[1];
                     const T* y = pb + off[2];
                     if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                       for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                     } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
                       const T yv = *y;
                       for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                     } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
                       const T xv = *x;
                       for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
                     } else {
                       for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
                     }
                   });
}

template <class T>
void binary_cpu(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  switch (op) {
    case BinaryOp::add: return binary_loop<T>(out, a, b, [](T x, T y) { return x + y; });
    case BinaryOp::sub: return binary_loop<T>(out, a, b, [](T x, T y) { return x - y; });
    case BinaryOp::mul: return binary_loop<T>(out, a, b, [](T x, T y) { return x * y; });
    case BinaryOp::div: return binary_loop<T>(out, a, b, [](T x, T y) { return x / y; });
  }
}

template <class T, class F>
void unary_loop(const Tensor& out, const Tensor& x, F f) {
  T* po = out.data<T>();
  const T* px = x.data<T>();
  strided_apply<2>(out.sizes(), {&out.strides(), &x.strides()},
                   [&](const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st, int64_t n) {
                     // A local copy of f: read through the reference, a
                     // captured scalar might alias o[], and
                     // GCC then leaves the loop scalar (4x slower).
                     const F fn = f;
                     T* o = po + off[0];
                     const T* v = px + off[1];
                     if (st[0] == 1 && st[1] == 1) {
                       for (int64_t i = 0; i < n; ++i) o[i] = fn(v[i]);
                     } else {
                       for (int64_t i = 0; i < n; ++i) o[i * st[0]] = fn(v[i * st[1]]);
                     }
                   });
}

template <class T>
void unary_cpu(UnaryOp op, const Tensor& out, const Tensor& x, double alpha_d) {
  const T alpha = static_cast<T>(alpha_d);
  switch (op) {
    case UnaryOp::neg: return unary_loop<T>(out, x, [](T v) { return -v; });
    case UnaryOp::exp: return unary_loop<T>(out, x, [](T v) { return exp_vec(v); });
    case UnaryOp::log: return unary_loop<T>(out, x, [](T v) { return std::log(v); });
    case UnaryOp::sqrt: return unary_loop<T>(out, x, [](T v) { return std::sqrt(v); });
    case UnaryOp::abs: return unary_loop<T>(out, x, [](T v) { return std::abs(v); });
    case UnaryOp::square: return unary_loop<T>(out, x, [](T v) { return v * v; });
    case UnaryOp::sin: return unary_loop<T>(out, x, [](T v) { return std::sin(v); });
    case UnaryOp::cos: return unary_loop<T>(out, x, [](T v) { return std::cos(v); });
    case UnaryOp::tanh: return unary_loop<T>(out, x, [](T v) { return tanh_vec(v); });
    case UnaryOp::sigmoid: return unary_loop<T>(out, x, [](T v) { return T(1) / (T(1) + exp_vec(-v)); });
    case UnaryOp::relu: return unary_loop<T>(out, x, [](T v) { return v > T(0) ? v : T(0); });
    case UnaryOp::elu: {
      // Contiguous runs go to the array kernel (ops/elu_kernel.h: expm1
      // near 0, AVX-512 intrinsics for f32).
      T* po = out.data<T>();
      const T* px = x.data<T>();
      return strided_apply<2>(
          out.sizes(), {&out.strides(), &x.strides()},
          [&](const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st, int64_t n) {
            if (st[0] == 1 && st[1] == 1) return elu_array<T>(px + off[1], po + off[0], nullptr, n, alpha);
            for (int64_t i = 0; i < n; ++i)
              elu_array<T>(px + off[1] + i * st[1], po + off[0] + i * st[0], nullptr, 1, alpha);
          });
    }
    case UnaryOp::gelu_erf: {
      // Contiguous runs go to the array kernel (AVX-512 intrinsics for f32).
      T* po = out.data<T>();
      const T* px = x.data<T>();
      return strided_apply<2>(out.sizes(), {&out.strides(), &x.strides()},
                              [&](const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st, int64_t n) {
                                if (st[0] == 1 && st[1] == 1) return gelu_erf_array<T>(px + off[1], po + off[0], nullptr, n);
                                for (int64_t i = 0; i < n; ++i) {
                                  T unused;
                                  po[off[0] + i * st[0]] = gelu_erf_vec(px[off[1] + i * st[1]], unused);
                                }
                              });
    }
    case UnaryOp::gelu_tanh:
      return unary_loop<T>(out, x, [](T v) {
        return T(0.5) * v * (T(1) + tanh_vec(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v)));
      });
    case UnaryOp::pow: return unary_loop<T>(out, x, [alpha](T v) { return std::pow(v, alpha); });
    case UnaryOp::add_scalar: return unary_loop<T>(out, x, [alpha](T v) { return v + alpha; });
    case UnaryOp::mul_scalar: return unary_loop<T>(out, x, [alpha](T v) { return v * alpha; });
    case UnaryOp::rsub_scalar: return unary_loop<T>(out, x, [alpha](T v) { return alpha - v; });
  }
}

// d f / d x as a function of (x, y = f(x)).
template <class T>
void unary_backward_cpu(UnaryOp op, const Tensor& gin, const Tensor& g, const Tensor& x, const Tensor& y,
                        double alpha_d) {
  const T alpha = static_cast<T>(alpha_d);
  T* pgi = gin.data<T>();
  const T* pg = g.data<T>();
  const T* px = x.defined() ? x.data<T>() : nullptr;
  const T* py = y.defined() ? y.data<T>() : nullptr;
  const Shape zero(gin.dim(), 0);
  const Shape& sx = x.defined() ? x.strides() : zero;
  const Shape& sy = y.defined() ? y.strides() : zero;
  auto run = [&](auto deriv) {
    if (gin.is_contiguous() && g.is_contiguous() && (!px || x.is_contiguous()) && (!py || y.is_contiguous()) &&
        (!px || x.sizes() == gin.sizes()) && (!py || y.sizes() == gin.sizes())) {
      const int64_t n = gin.numel();
      parallel_for(0, n, 32768, [&](int64_t b, int64_t e) {
        const auto d = deriv;  // a local copy vectorises (see unary_loop)
        if (px && py) for (int64_t i = b; i < e; ++i) pgi[i] = pg[i] * d(px[i], py[i]);
        else if (px) for (int64_t i = b; i < e; ++i) pgi[i] = pg[i] * d(px[i], T(0));
        else if (py) for (int64_t i = b; i < e; ++i) pgi[i] = pg[i] * d(T(0), py[i]);
        else for (int64_t i = b; i < e; ++i) pgi[i] = pg[i] * d(T(0), T(0));
      });
      return;
    }
    strided_apply<4>(gin.sizes(), {&gin.strides(), &g.strides(), &sx, &sy},
                     [&](const std::array<int64_t, 4>& off, const std::array<int64_t, 4>& st, int64_t n) {
                       for (int64_t i = 0; i < n; ++i) {
                         const T xv = px ? px[off[2] + i * st[2]] : T(0);
                         const T yv = py ? py[off[3] + i * st[3]] : T(0);
                         pgi[off[0] + i * st[0]] = pg[off[1] + i * st[1]] * deriv(xv, yv);
                       }
                     });
  };
  switch (op) {
    case UnaryOp::neg: return run([](T, T) { return T(-1); });
    case UnaryOp::exp: return run([](T, T y) { return y; });
    case UnaryOp::log: return run([](T x, T) { return T(1) / x; });
    case UnaryOp::sqrt: return run([](T, T y) { return T(0.5) / y; });
    case UnaryOp::abs: return run([](T x, T) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); });
    case UnaryOp::square: return run([](T x, T) { return T(2) * x; });
    case UnaryOp::sin: return run([](T x, T) { return std::cos(x); });
    case UnaryOp::cos: return run([](T x, T) { return -std::sin(x); });
    case UnaryOp::tanh: return run([](T, T y) { return T(1) - y * y; });
    case UnaryOp::sigmoid: return run([](T, T y) { return y * (T(1) - y); });
    case UnaryOp::relu: return run([](T x, T) { return x > T(0) ? T(1) : T(0); });
    case UnaryOp::elu:
      return run([alpha](T x, T) {
        const T e = exp_vec(x < T(0) ? x : T(0));  // branch-free, as in the forward
        return x > T(0) ? T(1) : alpha * e;
      });
    case UnaryOp::gelu_erf:
      return run([](T x, T) {
        return T(0.5) * (T(1) + erf_vec(x * T(kSqrt1_2))) + x * T(kInvSqrt2Pi) * exp_vec(T(-0.5) * x * x);
      });
    case UnaryOp::gelu_tanh:
      return run([](T x, T) {
        const T inner = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
        const T t = tanh_vec(inner);
        return T(0.5) * (T(1) + t) +
               T(0.5) * x * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
      });
    case UnaryOp::pow: return run([alpha](T x, T) { return alpha * std::pow(x, alpha - T(1)); });
    case UnaryOp::add_scalar: return run([](T, T) { return T(1); });
    case UnaryOp::mul_scalar: return run([alpha](T, T) { return alpha; });
    case UnaryOp::rsub_scalar: return run([](T, T) { return T(-1); });
  }
}

const char* unary_name(UnaryOp op);

// Ops whose derivative costs as much as the op itself (GELU: an erf and an
// exp of x): on the CPU the forward writes f'(x) beside f(x) while the
// shared parts are in registers, and saves f'(x) in place of x, so the
// backward is one multiply and the saved memory is unchanged.
bool derivative_in_forward(UnaryOp op) { return op == UnaryOp::gelu_erf || op == UnaryOp::gelu_tanh; }

template <class T, class F>
void unary_with_derivative_loop(const Tensor& out, const Tensor& deriv, const Tensor& x, F f) {
  T* po = out.data<T>();
  T* pd = deriv.data<T>();
  const T* px = x.data<T>();
  strided_apply<3>(out.sizes(), {&out.strides(), &deriv.strides(), &x.strides()},
                   [&](const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& st, int64_t n) {
                     T* o = po + off[0];
                     T* d = pd + off[1];
                     const T* v = px + off[2];
                     if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                       for (int64_t i = 0; i < n; ++i) o[i] = f(v[i], d[i]);
                     } else {
                       for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(v[i * st[2]], d[i * st[1]]);
                     }
                   });
}

// out = f(x), deriv = f'(x), for the ops of derivative_in_forward.
template <class T>
void unary_with_derivative_cpu(UnaryOp op, const Tensor& out, const Tensor& deriv, const Tensor& x) {
  switch (op) {
    case UnaryOp::gelu_erf: {
      T* po = out.data<T>();
      T* pd = deriv.data<T>();
      const T* px = x.data<T>();
      return strided_apply<3>(
          out.sizes(), {&out.strides(), &deriv.strides(), &x.strides()},
          [&](const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& st, int64_t n) {
            if (st[0] == 1 && st[1] == 1 && st[2] == 1) return gelu_erf_array<T>(px + off[2], po + off[0], pd + off[1], n);
            for (int64_t i = 0; i < n; ++i)
              po[off[0] + i * st[0]] = gelu_erf_vec(px[off[2] + i * st[2]], pd[off[1] + i * st[1]]);
          });
    }
    case UnaryOp::gelu_tanh:
      return unary_with_derivative_loop<T>(out, deriv, x, [](T v, T& d) {
        const T t = tanh_vec(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v));
        d = T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * v * v);
        return T(0.5) * v * (T(1) + t);
      });
    default: DIMIX_FAIL(unary_name(op), ": no fused derivative");
  }
}

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "elu",
                                "gelu", "gelu", "pow", "add", "mul", "rsub", "square", "sin", "cos"};
  return names[static_cast<int>(op)];
}
const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  return names[static_cast<int>(op)];
}

// Which saved values a unary backward needs.
bool backward_needs_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh || op == UnaryOp::sigmoid;
}

}  // namespace

// ---- raw kernels (device dispatch) --------------------------------------------------
Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  const Shape shape = broadcast_shapes(a.sizes(), b.sizes(), name);
  Tensor out = empty(shape, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, int)>("binary")(out, a, b, static_cast<int>(op));
    return out;
  }
  dispatch_all(a.dtype(), name, [&]<class T>() {
    if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, int64_t> || std::is_same_v<T, int32_t>)
      binary_cpu<T>(op, out, a, b);
    else
      DIMIX_FAIL(name, ": not supported for ", dtype_name(a.dtype()));
  });
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double alpha) {
  check_floating(unary_name(op), x);
  Tensor out = empty(x.sizes(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int, double)>("unary")(out, x, static_cast<int>(op), alpha);
    return out;
  }
  dispatch_float(x.dtype(), unary_name(op), [&]<class T>() { unary_cpu<T>(op, out, x, alpha); });
  return out;
}

Tensor unary_backward_raw(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, double alpha) {
  Tensor gin = empty(g.sizes(), g.dtype(), g.device());
  if (g.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int, double)>("unary_backward")(
        gin, g, x, y, static_cast<int>(op), alpha);
    return gin;
  }
  dispatch_float(g.dtype(), unary_name(op), [&]<class T>() { unary_backward_cpu<T>(op, gin, g, x, y, alpha); });
  return gin;
}

// ---- recorded ops ---------------------------------------------------------------------
namespace {

Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0) {
  if (derivative_in_forward(op) && x.device().is_cpu() && needs_grad({x})) {
    check_floating(unary_name(op), x);
    Tensor y = empty(x.sizes(), x.dtype(), x.device());
    Tensor deriv = empty(x.sizes(), x.dtype(), x.device());
    dispatch_float(x.dtype(), unary_name(op), [&]<class T>() { unary_with_derivative_cpu<T>(op, y, deriv, x); });
    record(y, unary_name(op), {x}, [deriv](const Tensor& g) -> std::vector<Tensor> {
      return {binary_raw(BinaryOp::mul, g, deriv)};
    });
    return y;
  }
  Tensor y = unary_raw(op, x, alpha);
  if (needs_grad({x})) {
    const bool need_y = backward_needs_output(op);
    Tensor saved_x = need_y ? Tensor() : x.detach();
    Tensor saved_y = need_y ? y.detach() : Tensor();
    record(y, unary_name(op), {x}, [=](const Tensor& g) -> std::vector<Tensor> {
      return {unary_backward_raw(op, g, saved_x, saved_y, alpha)};
    });
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::add, a, b);
  if (needs_grad({a, b})) {
    record(out, "add", {a, b}, [sa = a.sizes(), sb = b.sizes()](const Tensor& g) -> std::vector<Tensor> {
      return {sum_to(g, sa), sum_to(g, sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::sub, a, b);
  if (needs_grad({a, b})) {
    const bool gb = b.requires_grad();
    record(out, "sub", {a, b}, [sa = a.sizes(), sb = b.sizes(), gb](const Tensor& g) -> std::vector<Tensor> {
      return {sum_to(g, sa), gb ? sum_to(unary_raw(UnaryOp::neg, g), sb) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, a, b);
  if (needs_grad({a, b})) {
    const Tensor da = a.detach(), db = b.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "mul", {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
      return {ga ? sum_to(binary_raw(BinaryOp::mul, g, db), da.sizes()) : Tensor(),
              gb ? sum_to(binary_raw(BinaryOp::mul, g, da), db.sizes()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::div, a, b);
  if (needs_grad({a, b})) {
    const Tensor da = a.detach(), db = b.detach(), dout = out.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "div", {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
      const Tensor g_over_b = binary_raw(BinaryOp::div, g, db);
      Tensor gbv;
      if (gb) gbv = sum_to(unary_raw(UnaryOp::neg, binary_raw(BinaryOp::mul, g_over_b, dout)), db.sizes());
      return {ga ? sum_to(g_over_b, da.sizes()) : Tensor(), gbv};
    });
  }
  return out;
}

Tensor add(const Tensor& a, double s) { return unary(UnaryOp::add_scalar, a, s); }
Tensor mul(const Tensor& a, double s) { return unary(UnaryOp::mul_scalar, a, s); }
Tensor rsub(const Tensor& a, double s) { return unary(UnaryOp::rsub_scalar, a, s); }
Tensor neg(const Tensor& x) { return unary(UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::abs, x); }
Tensor square(const Tensor& x) { return unary(UnaryOp::square, x); }
Tensor pow(const Tensor& x, double p) { return unary(UnaryOp::pow, x, p); }
Tensor sin(const Tensor& x) { return unary(UnaryOp::sin, x); }
Tensor cos(const Tensor& x) { return unary(UnaryOp::cos, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::relu, x); }
Tensor elu(const Tensor& x, double alpha) { return unary(UnaryOp::elu, x, alpha); }
Tensor gelu(const Tensor& x, const std::string& approximate) {
  DIMIX_CHECK(approximate == "none" || approximate == "tanh",
              "gelu: approximate must be 'none' or 'tanh', got '", approximate, "'");
  return unary(approximate == "none" ? UnaryOp::gelu_erf : UnaryOp::gelu_tanh, x);
}

Tensor not_equal(const Tensor& x, double value, DType dtype) {
  Tensor out = empty(x.sizes(), dtype, x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, double)>("not_equal_scalar")(out, x, value);
    return out;
  }
  dispatch_all(x.dtype(), "not_equal", [&]<class S>() {
    dispatch_all(dtype, "not_equal", [&]<class D>() {
      const S* px = x.data<S>();
      D* po = out.data<D>();
      strided_apply<2>(x.sizes(), {&out.strides(), &x.strides()},
                       [&](const std::array<int64_t, 2>& o, const std::array<int64_t, 2>& st, int64_t n) {
                         for (int64_t i = 0; i < n; ++i)
                           po[o[0] + i * st[0]] = static_cast<double>(px[o[1] + i * st[1]]) != value ? D(1) : D(0);
                       });
    });
  });
  return out;
}

// Gradient accumulation in the engine goes through this add on every device.
static const bool dimix_install_accumulate = (autograd::set_accumulate_fn([](const Tensor& a, const Tensor& b) {
  return binary_raw(BinaryOp::add, a, b);
}), true);

// ---- registry ----------------------------------------------------------------------------
namespace {
OpCase binary_case(const char* name, Shape sa, Shape sb, Tensor (*fn)(const Tensor&, const Tensor&),
                   bool positive_b = false) {
  return {name,
          [=](Generator& g, DType t) {
            return std::vector<Tensor>{randn_input(g, sa, t),
                                       positive_b ? uniform_input(g, sb, t, 0.5, 2.0) : randn_input(g, sb, t)};
          },
          [fn](const std::vector<Tensor>& x) { return fn(x[0], x[1]); }};
}
OpCase unary_case(const char* name, Shape s, std::function<Tensor(const Tensor&)> fn, double lo = 0,
                  double hi = 0, bool noncontig = false) {
  return {name,
          [=](Generator& g, DType t) {
            if (noncontig) return std::vector<Tensor>{noncontig_input(g, s, t)};
            return std::vector<Tensor>{lo < hi ? uniform_input(g, s, t, lo, hi) : randn_input(g, s, t)};
          },
          [fn](const std::vector<Tensor>& x) { return fn(x[0]); }};
}
Tensor add_tt(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor mul_tt(const Tensor& a, const Tensor& b) { return mul(a, b); }
}  // namespace

DIMIX_REGISTER_OP_CASES({
    binary_case("add/same", {3, 5}, {3, 5}, add_tt),
    binary_case("add/broadcast_row", {4, 1, 3}, {5, 3}, add_tt),
    binary_case("add/scalar_tensor", {2, 7}, {}, add_tt),
    binary_case("sub/broadcast", {3, 1}, {1, 4}, [](const Tensor& a, const Tensor& b) { return sub(a, b); }),
    binary_case("mul/broadcast", {2, 3, 5}, {3, 1}, mul_tt),
    binary_case("mul/size1", {1, 7}, {1, 1}, mul_tt),
    binary_case("div/broadcast", {3, 4}, {4}, [](const Tensor& a, const Tensor& b) { return div(a, b); }, true),
    {"mul/noncontig",
     [](Generator& g, DType t) {
       return std::vector<Tensor>{noncontig_input(g, {5, 3}, t), randn_input(g, {5, 3}, t)};
     },
     [](const std::vector<Tensor>& x) { return mul(x[0], x[1]); }},
    unary_case("add_scalar", {4, 3}, [](const Tensor& x) { return x + 2.5; }),
    unary_case("mul_scalar", {4, 3}, [](const Tensor& x) { return x * -1.5; }),
    unary_case("rsub_scalar", {5}, [](const Tensor& x) { return 1.0 - x; }),
    unary_case("neg", {3, 5}, [](const Tensor& x) { return neg(x); }, 0, 0, true),
    unary_case("exp", {3, 5}, [](const Tensor& x) { return exp(x); }),
    unary_case("log", {3, 5}, [](const Tensor& x) { return log(x); }, 0.2, 3.0),
    unary_case("sqrt", {7}, [](const Tensor& x) { return sqrt(x); }, 0.2, 3.0),
    unary_case("abs", {3, 5}, [](const Tensor& x) { return abs(x); }, 0.1, 2.0),
    unary_case("square", {3, 5}, [](const Tensor& x) { return square(x); }),
    unary_case("pow", {3, 5}, [](const Tensor& x) { return pow(x, 2.5); }, 0.3, 2.0),
    unary_case("sin", {6}, [](const Tensor& x) { return sin(x); }),
    unary_case("cos", {6}, [](const Tensor& x) { return cos(x); }),
    unary_case("tanh", {3, 5}, [](const Tensor& x) { return tanh(x); }, 0, 0, true),
    unary_case("sigmoid", {3, 5}, [](const Tensor& x) { return sigmoid(x); }),
    unary_case("relu", {3, 5}, [](const Tensor& x) { return relu(x); }),
    unary_case("elu", {3, 5}, [](const Tensor& x) { return elu(x, 0.7); }),
    unary_case("gelu/erf", {3, 5}, [](const Tensor& x) { return gelu(x); }, 0, 0, true),
    unary_case("gelu/tanh", {1, 9}, [](const Tensor& x) { return gelu(x, "tanh"); }),
});

}  // namespace dimix
