// Optimizers: SGD (momentum, dampening, Nesterov), Adam (L2 decay), AdamW
// (decoupled decay), parameter groups, gradient clipping.
//
// Each update follows PyTorch's single-tensor (for-loop) implementation in
// torch/optim/{sgd,adam,adamw}.py step for step, so a run can be compared
// with a PyTorch one; AdamW is Loshchilov & Hutter, "Decoupled Weight Decay
// Regularization" (2019). Updates run on the raw data under NoGradGuard, one
// fused loop per parameter (f32 or f64; parameter, gradient and state buffers
// share the parameter's shape and dtype). State buffers are created lazily on
// a parameter's first step, on the parameter's device; a parameter without a
// gradient is skipped (its step count does not advance), as in PyTorch.
//
// Learning-rate schedules (models/schedule.h) set each group's lr from the
// schedule value times the group's lr_scale, so groups keep their ratio to the
// optimizer's base lr.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dimix {

// What a caller hands an optimizer: a set of parameters and the settings in
// which it differs from the optimizer's options.
struct ParamGroupSpec {
  std::vector<Tensor> params;
  std::vector<std::string> names;       // empty, or one per param (for messages)
  std::optional<double> lr;             // unset: the optimizer's lr
  std::optional<double> weight_decay;   // unset: the optimizer's weight_decay
};

// A group as the optimizer runs it: every hyper-parameter resolved. Fields of
// other optimizers are carried but unused (SGD ignores the betas). Change
// them freely between steps (schedules do).
struct ParamGroup {
  std::vector<Tensor> params;
  std::vector<std::string> names;  // one per param ("" where unknown)
  double lr = 0;
  double weight_decay = 0;
  double lr_scale = 1;  // this group's lr / the optimizer's base lr
  // SGD
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// An optimizer's resumable state as plain data, for checkpoints:
//   tensors: "state.<group>.<index>.<buffer>" (momentum_buffer, exp_avg, exp_avg_sq)
//   scalars: "step_count", "num_groups", "group.<g>.num_params", "group.<g>.<hyper>",
//            "state.<group>.<index>.step"
struct OptimizerState {
  std::string type;  // "SGD", "Adam", "AdamW"
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  void step();
  // Drops every parameter's gradient (PyTorch's set_to_none=True).
  void zero_grad();

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  double base_lr() const { return base_lr_; }
  int64_t step_count() const { return step_count_; }
  virtual std::string type_name() const = 0;

  // The momentum a one-cycle schedule cycles: SGD's momentum, Adam's beta1.
  virtual void set_momentum(size_t group, double value) = 0;
  virtual double momentum(size_t group) const = 0;

  OptimizerState state_dict() const;
  // Restores hyper-parameters, step counts and buffers; Error (leaving this
  // optimizer untouched) when the state belongs to another optimizer type or
  // another parameter layout (group count, parameter count, shapes).
  void load_state_dict(const OptimizerState& state);

 protected:
  struct ParamState {
    int64_t step = 0;
    std::map<std::string, Tensor> buffers;  // created on first use
  };

  Optimizer(std::vector<ParamGroupSpec> specs, double lr, double weight_decay, const ParamGroup& defaults,
            const char* op);
  // Updates one parameter in place. `grad` is contiguous, of p's shape and dtype.
  virtual void update(const ParamGroup& group, const Tensor& p, const Tensor& grad, ParamState& state) = 0;
  // Updates a whole group at once (Adam/AdamW on CUDA: one multi-tensor
  // launch); false leaves the group to update() per parameter.
  virtual bool update_group(size_t group_index) { return false; }
  // Buffer names this optimizer keeps per parameter (for load_state_dict checks).
  virtual std::vector<std::string> buffer_names() const = 0;
  static void check_group(const ParamGroup& g, size_t index, const std::string& op);

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
  double base_lr_ = 0;
  int64_t step_count_ = 0;
};

// ---- SGD ---------------------------------------------------------------------
// d = g + wd*p; with momentum: buf = d on the first step, else
// buf = momentum*buf + (1-dampening)*d; d = nesterov ? d + momentum*buf : buf;
// p -= lr*d.
struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;  // needs momentum > 0 and dampening 0
  double weight_decay = 0;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroupSpec> groups, const SGDOptions& options);
  SGD(const std::vector<Tensor>& params, const SGDOptions& options);
  std::string type_name() const override { return "SGD"; }
  void set_momentum(size_t group, double value) override;
  double momentum(size_t group) const override;

 protected:
  void update(const ParamGroup& group, const Tensor& p, const Tensor& grad, ParamState& state) override;
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }
};

// ---- Adam / AdamW -------------------------------------------------------------
// Adam:  d = g + wd*p (L2 decay through the gradient).
// AdamW: p *= 1 - lr*wd first, d = g (decoupled decay).
// Then m = lerp(m, d, 1-beta1); v = beta2*v + (1-beta2)*d*d;
// p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};
// PyTorch's AdamW defaults weight_decay to 0.01; so does this.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& options);
  Adam(const std::vector<Tensor>& params, const AdamOptions& options);
  std::string type_name() const override { return decoupled_ ? "AdamW" : "Adam"; }
  void set_momentum(size_t group, double value) override;
  double momentum(size_t group) const override;

 protected:
  Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& options, bool decoupled, const char* op);
  void update(const ParamGroup& group, const Tensor& p, const Tensor& grad, ParamState& state) override;
  bool update_group(size_t group_index) override;
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }

 private:
  bool decoupled_ = false;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<ParamGroupSpec> groups, const AdamWOptions& options);
  AdamW(const std::vector<Tensor>& params, const AdamWOptions& options);
};

// Scalars of one fused update, as the CUDA kernels receive them (registered in
// cuda/ as "sgd_step", "adam_step" and "adamw_step", and "multi_tensor_adam",
// which takes one AdamStepArgs per parameter; see optim.cpp).
struct SgdStepArgs {
  double lr, weight_decay, momentum, dampening;
  bool nesterov;
  bool first_step;  // the momentum buffer is initialised to d, not blended
};
struct AdamStepArgs {
  double lr, weight_decay, beta1, beta2, eps;
  double step_size;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  bool decoupled;                // AdamW: p *= 1 - lr*wd before the update
};

// Two groups for the usual transformer recipe: every parameter of 2 or more
// dims gets `weight_decay`, every 0-d/1-d one (biases, norm gains) none.
// Both groups are always returned (possibly empty) so the state layout is
// the same for every model.
std::vector<ParamGroupSpec> param_groups_no_decay_1d(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                                     double weight_decay);

// Rescales the gradients of `params` in place so their global L2 norm is at
// most max_norm, as torch.nn.utils.clip_grad_norm_: scale = max_norm /
// (total + 1e-6), applied when below 1. Parameters without a gradient are
// skipped. Returns the norm before clipping (a non-finite norm is returned
// and the gradients are left alone, so the caller can skip the step).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

}  // namespace dimix
