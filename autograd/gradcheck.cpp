// gradcheck (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/node.h"
#include "core/rng.h"

namespace dimix {
namespace {

double weighted_sum(const Tensor& out, const Tensor& w) {
  const Tensor o = cast_raw(out.device().is_cpu() ? out : to_device_raw(out, Device::cpu()), DType::f64);
  const double* po = o.data<double>();
  const double* pw = w.data<double>();
  double s = 0;
  for (int64_t i = 0; i < o.numel(); ++i) s += po[i] * pw[i];
  return s;
}

// Element k (row-major) of t, as an address through t's strides.
double* element_ptr(const Tensor& t, int64_t k) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (k % t.sizes()[d]) * t.strides()[d];
    k /= t.sizes()[d];
  }
  return static_cast<double*>(t.storage()->data()) + t.offset() + off;
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opts) {
  GradcheckResult res;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    DIMIX_CHECK(x.dtype() == DType::f64 && x.device().is_cpu(), "gradcheck: input ", i,
                " must be a CPU f64 tensor, got ", dtype_name(x.dtype()), " on ", x.device().str());
    for (int64_t s : x.strides()) DIMIX_CHECK(s != 0, "gradcheck: input ", i, " is expanded (stride 0)");
  }

  // Analytical.
  Tensor out = fn(inputs);
  Generator gen(opts.seed);
  const Tensor w = randn(out.sizes(), DType::f64, &gen);
  std::vector<Tensor> diff;
  std::vector<size_t> diff_idx;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      diff.push_back(inputs[i]);
      diff_idx.push_back(i);
    }
  if (diff.empty()) {
    res.ok = false;
    res.message = "gradcheck: no input requires grad";
    return res;
  }
  DIMIX_CHECK(out.requires_grad(), "gradcheck: output does not require grad (the op recorded nothing)");
  const Tensor w_dev = out.device().is_cpu() ? cast_raw(w, out.dtype()) : to_device_raw(cast_raw(w, out.dtype()), out.device());
  std::vector<Tensor> analytical = grad(out, diff, w_dev);

  // Numerical, element by element.
  NoGradGuard no_grad;
  for (size_t j = 0; j < diff.size(); ++j) {
    const Tensor& x = diff[j];
    const Tensor a = analytical[j].defined() ? cast_raw(analytical[j], DType::f64) : zeros(x.sizes(), DType::f64);
    DIMIX_CHECK(a.sizes() == x.sizes(), "gradcheck: gradient of input ", diff_idx[j], " has shape ", a.shape_str(),
                ", expected ", x.shape_str());
    for (int64_t k = 0; k < x.numel(); ++k) {
      double* p = element_ptr(x, k);
      const double orig = *p;
      *p = orig + opts.eps;
      const double fp = weighted_sum(fn(inputs), w);
      *p = orig - opts.eps;
      const double fm = weighted_sum(fn(inputs), w);
      *p = orig;
      const double num = (fp - fm) / (2 * opts.eps);
      const double ana = a.data<double>()[k];
      const double err = std::abs(ana - num);
      res.max_abs_error = std::max(res.max_abs_error, err);
      if (!(err <= opts.atol + opts.rtol * std::abs(num)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << diff_idx[j] << " " << shape_str(x.sizes()) << " element " << k << ": analytical " << ana
           << " vs numerical " << num << " (|diff| " << err << ")";
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace dimix
