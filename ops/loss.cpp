// Losses (see loss.h): fused softmax cross-entropy over logits [N, C] (N rows,
// C classes) with integer targets [N], and mean squared error.
//
// cross_entropy follows torch.nn.functional.cross_entropy. Per row, with
// lse = log sum_c exp(x_c) (max-shifted) and s the label smoothing:
//   loss = (1 - s) * (lse - x_target) + s * (lse - mean_c x_c)
// and its gradient is (softmax(x) - ((1 - s) * onehot(target) + s / C)) times
// the row's upstream gradient (divided by the number of counted rows for
// "mean"). Only lse [N] is saved; the backward recomputes softmax from it
// instead of keeping an [N, C] probability matrix. Rows whose target equals
// ignore_index have loss 0, gradient 0, and are left out of the mean's count
// (all rows ignored: the mean is NaN, as in PyTorch).
//
// CUDA kernels dispatched to (tensors contiguous; target i64 or i32, already
// checked on the host; losses/lse [N] in the logits' dtype, 0 on ignored rows):
//   "cross_entropy_forward"  void(const Tensor& losses, const Tensor& lse, const Tensor& logits,
//                                 const Tensor& target, double label_smoothing, int64_t ignore_index)
//   "cross_entropy_backward" void(const Tensor& grad_logits, const Tensor& grad_loss, const Tensor& logits,
//                                 const Tensor& target, const Tensor& lse, double scale,
//                                 double label_smoothing, int64_t ignore_index)
// grad_loss is [N] (reduction "none") or 0-d ("mean"/"sum"); row i's factor is
// grad_loss[i or 0] * scale. mse_loss is a composition of differentiable ops.
#include "ops/loss.h"

#include <algorithm>
#include <limits>

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

enum class Reduction { none, mean, sum };

Reduction parse_reduction(const std::string& r, const char* op) {
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  if (r == "none") return Reduction::none;
  DIMIX_FAIL(op, ": reduction must be \"mean\", \"sum\" or \"none\", got \"", r, "\"");
}

// Checks every target on the host (a copy when on a GPU) and counts the rows
// that are not ignored.
int64_t check_targets(const Tensor& target, int64_t C, int64_t ignore_index) {
  const Tensor t = target.device().is_cpu() ? target.contiguous_raw() : to_device_raw(target.contiguous_raw(), Device::cpu());
  int64_t count = 0;
  auto scan = [&]<class I>() {
    const I* p = t.data<I>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t v = static_cast<int64_t>(p[i]);
      if (v == ignore_index) continue;
      DIMIX_CHECK(v >= 0 && v < C, "cross_entropy: target ", v, " (row ", i, ") is out of range for C = ", C,
                  " classes (expected 0 <= target < ", C, " or ignore_index ", ignore_index, ")");
      ++count;
    }
  };
  if (t.dtype() == DType::i64) scan.template operator()<int64_t>();
  else scan.template operator()<int32_t>();
  return count;
}

template <class T, class I>
void cross_entropy_forward_cpu(T* losses, T* lse, const T* logits, const I* target, int64_t N, int64_t C,
                               double smoothing, int64_t ignore_index) {
  const T s = static_cast<T>(smoothing), inv_c = T(1) / static_cast<T>(C);
  parallel_for(0, N, std::max<int64_t>(1, 16384 / C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = static_cast<int64_t>(target[i]);
      if (t == ignore_index) { losses[i] = 0; lse[i] = 0; continue; }
      const T* __restrict x = logits + i * C;
      T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
      for (int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
      T sum_exp = 0, sum_x = 0;
#pragma omp simd reduction(+ : sum_exp, sum_x)
      for (int64_t c = 0; c < C; ++c) {
        sum_exp += exp_vec(x[c] - m);
        sum_x += x[c];
      }
      const T l = m + std::log(sum_exp);
      lse[i] = l;
      losses[i] = (T(1) - s) * (l - x[t]) + (s != T(0) ? s * (l - sum_x * inv_c) : T(0));
    }
  });
}

template <class T, class I>
void cross_entropy_backward_cpu(T* gx, const T* grad_loss, bool per_row, double scale, const T* logits,
                                const I* target, const T* lse, int64_t N, int64_t C, double smoothing,
                                int64_t ignore_index) {
  const T s = static_cast<T>(smoothing), off = s / static_cast<T>(C), on = T(1) - s;
  parallel_for(0, N, std::max<int64_t>(1, 16384 / C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T* __restrict dx = gx + i * C;
      const int64_t t = static_cast<int64_t>(target[i]);
      if (t == ignore_index) {
        std::fill(dx, dx + C, T(0));
        continue;
      }
      const T f = static_cast<T>(grad_loss[per_row ? i : 0] * scale);
      const T* __restrict x = logits + i * C;
      const T l = lse[i];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dx[c] = (exp_vec(x[c] - l) - off) * f;
      dx[t] -= on * f;
    }
  });
}

template <class Fn>
void dispatch_target(const Tensor& target, Fn&& fn) {
  if (target.dtype() == DType::i64) fn.template operator()<int64_t>();
  else fn.template operator()<int32_t>();
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target_in, double label_smoothing,
                     const std::string& reduction_name, int64_t ignore_index) {
  const Reduction reduction = parse_reduction(reduction_name, "cross_entropy");
  check_floating("cross_entropy", logits_in);
  DIMIX_CHECK(logits_in.dim() == 2, "cross_entropy: expected logits [N, C], got shape ", logits_in.shape_str(),
              " (flatten extra dims into N first)");
  DIMIX_CHECK(target_in.dtype() == DType::i64 || target_in.dtype() == DType::i32,
              "cross_entropy: expected integer targets (i64 or i32), got ", dtype_name(target_in.dtype()));
  const int64_t N = logits_in.sizes()[0], C = logits_in.sizes()[1];
  DIMIX_CHECK(target_in.dim() == 1 && target_in.sizes()[0] == N, "cross_entropy: expected target [", N,
              "] for logits ", logits_in.shape_str(), ", got shape ", target_in.shape_str());
  DIMIX_CHECK(C > 0, "cross_entropy: logits ", logits_in.shape_str(), " have no classes");
  DIMIX_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  check_same_device("cross_entropy", logits_in, target_in);
  const int64_t count = check_targets(target_in, C, ignore_index);

  const Tensor logits = logits_in.contiguous_raw(), target = target_in.contiguous_raw();
  Tensor losses = empty({N}, logits.dtype(), logits.device());
  Tensor lse = empty({N}, logits.dtype(), logits.device());
  if (logits.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, int64_t)>(
        "cross_entropy_forward")(losses, lse, logits, target, label_smoothing, ignore_index);
  } else {
    dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
      dispatch_target(target, [&]<class I>() {
        cross_entropy_forward_cpu<T, I>(losses.data<T>(), lse.data<T>(), logits.data<T>(), target.data<I>(), N, C,
                                        label_smoothing, ignore_index);
      });
    });
  }

  // "mean" divides by the counted rows; 0/0 is NaN, as PyTorch gives.
  const double scale = reduction == Reduction::mean
                           ? (count > 0 ? 1.0 / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN())
                           : 1.0;
  Tensor out;
  if (reduction == Reduction::none) {
    out = losses;
  } else if (logits.device().is_cuda()) {
    out = unary_raw(UnaryOp::mul_scalar, sum_raw(losses, {}, false), scale);
  } else {
    // Serial double sum over rows: the same value for any thread count.
    out = empty({}, logits.dtype());
    dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
      const T* p = losses.data<T>();
      double total = 0;
      for (int64_t i = 0; i < N; ++i) total += p[i];
      *out.data<T>() = static_cast<T>(total * scale);
    });
  }

  if (needs_grad({logits_in})) {
    const bool per_row = reduction == Reduction::none;
    record(out, "cross_entropy", {logits_in, target_in},
           [logits, target, lse, scale, per_row, label_smoothing, ignore_index, N, C](
               const Tensor& g_in) -> std::vector<Tensor> {
             const Tensor g = g_in.contiguous_raw();
             Tensor gx = empty(logits.sizes(), logits.dtype(), logits.device());
             if (logits.device().is_cuda()) {
               cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                                double, int64_t)>("cross_entropy_backward")(gx, g, logits, target, lse, scale,
                                                                            label_smoothing, ignore_index);
             } else {
               dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
                 dispatch_target(target, [&]<class I>() {
                   cross_entropy_backward_cpu<T, I>(gx.data<T>(), g.data<T>(), per_row, scale, logits.data<T>(),
                                                    target.data<I>(), lse.data<T>(), N, C, label_smoothing,
                                                    ignore_index);
                 });
               });
             }
             return {gx, Tensor()};
           });
  }
  return out;
}

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction_name) {
  const Reduction reduction = parse_reduction(reduction_name, "mse_loss");
  DIMIX_CHECK(input.sizes() == target.sizes(), "mse_loss: input ", input.shape_str(), " and target ",
              target.shape_str(), " must have the same shape");
  check_floating("mse_loss", input);
  const Tensor sq = square(sub(input, target));
  switch (reduction) {
    case Reduction::none: return sq;
    case Reduction::sum: return sum(sq);
    case Reduction::mean: break;
  }
  DIMIX_CHECK(input.numel() > 0, "mse_loss: mean over an empty input ", input.shape_str());
  return mean(sq);
}

namespace {
// Six targets for C = 5 with two rows equal to `ignored`.
Tensor targets_with_ignored(int64_t ignored, DType idx) {
  return cast_raw(from_vector<int64_t>({2, ignored, 0, 3, ignored, 1}, {6}), idx);
}
}  // namespace

DIMIX_REGISTER_OP_CASES({
    {"cross_entropy/mean", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 7}, t), index_input(g, {5}, 7)}; },
     [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1]); }},
    {"cross_entropy/smoothing_sum_i32", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 3}, t), index_input(g, {4}, 3, DType::i32)}; },
     [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], 0.1, "sum"); }},
    {"cross_entropy/ignore_index_smoothing", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {6, 5}, t), targets_with_ignored(-100, DType::i64)}; },
     [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], 0.2); }},
    {"cross_entropy/custom_ignore_none_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {6, 5}, t), targets_with_ignored(4, DType::i32)}; },
     [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], 0.0, "none", 4); }},
    {"cross_entropy/one_class_row", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {1, 1}, t), index_input(g, {1}, 1)}; },
     [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], 0.3); }},
    {"mse_loss/mean", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 5}, t), randn_input(g, {3, 5}, t, false)}; },
     [](const std::vector<Tensor>& x) { return mse_loss(x[0], x[1]); }},
    {"mse_loss/sum_both_grad", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {4, 3}, t), randn_input(g, {4, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return mse_loss(x[0], x[1], "sum"); }},
    {"mse_loss/none", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 1, 3}, t), randn_input(g, {2, 1, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return mse_loss(x[0], x[1], "none"); }},
});

}  // namespace dimix
