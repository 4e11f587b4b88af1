// Elementwise ops: binary arithmetic with NumPy broadcasting, scalar forms,
// and the unary math and activation functions, each with its backward.
//
// Binary ops require both operands to share dtype and device; the output has
// the broadcast shape and the gradients are summed back to each operand's
// shape. Activations follow PyTorch's definitions (gelu "none" is the exact
// erf form, "tanh" the approximation; elu with alpha).
#pragma once
#include <string>

#include "core/tensor.h"

namespace dimix {

// Binary op codes shared with the CUDA kernels.
enum class BinaryOp : int { add, sub, mul, div };
// Unary op codes shared with the CUDA kernels; `alpha` is the op's parameter
// (pow exponent, elu alpha, scalar for add/mul).
enum class UnaryOp : int {
  neg, exp, log, sqrt, abs, tanh, sigmoid, relu, elu, gelu_erf, gelu_tanh, pow, add_scalar, mul_scalar, rsub_scalar,
  square, sin, cos
};

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s - a

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);  // gradient sign(x), 0 at 0
Tensor square(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor elu(const Tensor& x, double alpha = 1.0);
// approximate: "none" (erf, PyTorch's default) or "tanh".
Tensor gelu(const Tensor& x, const std::string& approximate = "none");

// 1 where x != value else 0, as `dtype` (not differentiable; e.g. the LRA
// padding mask tokens != 0).
Tensor not_equal(const Tensor& x, double value, DType dtype = DType::f32);

// The raw kernels, not recorded: used by other ops' backward passes.
Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary_raw(UnaryOp op, const Tensor& x, double alpha = 0);
// grad_in = grad_out * f'(x) for unary op f (x the op's input, y its output).
Tensor unary_backward_raw(UnaryOp op, const Tensor& grad_out, const Tensor& x, const Tensor& y, double alpha);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }

}  // namespace dimix
