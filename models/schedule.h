// Learning-rate schedules: lr(step) as a pure function of the step number
// (0-based: the lr used by the step-th optimizer.step()), so a resumed run
// needs no scheduler state, only its step count.
//
//   schedule.apply(optimizer, step);   // before optimizer.step()
//   optimizer.step();
//
// apply() sets each group's lr to lr(step) * group.lr_scale (groups keep their
// ratio to the base lr) and, for schedules that cycle momentum (one-cycle),
// each group's momentum: Adam's beta1 or SGD's momentum.
//
// References (closed forms as PyTorch writes them, torch/optim/lr_scheduler.py):
// CosineAnnealingLR._get_closed_form_lr; OneCycleLR (Smith & Topin,
// "Super-Convergence", 2018, in fastai's two-phase variant by default);
// warmup + linear / cosine decay as Hugging Face transformers'
// get_{linear,cosine}_schedule_with_warmup, with an optional floor.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/optim.h"

namespace dimix {

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual double lr(int64_t step) const = 0;
  // The momentum for `step`, for schedules that cycle it; nullopt otherwise.
  virtual std::optional<double> momentum(int64_t step) const { return std::nullopt; }
  // One line for logs, e.g. "cosine(base_lr=0.001, t_max=1000, eta_min=0)".
  virtual std::string describe() const = 0;
  void apply(Optimizer& optimizer, int64_t step) const;
};

class ConstantLR : public Schedule {
 public:
  explicit ConstantLR(double lr);
  double lr(int64_t step) const override;
  std::string describe() const override;

 private:
  double lr_;
};

// eta_min + (base_lr - eta_min) * (1 + cos(pi * step / t_max)) / 2. Past t_max
// the cosine keeps going (back up), exactly as PyTorch's closed form.
class CosineAnnealingLR : public Schedule {
 public:
  CosineAnnealingLR(double base_lr, int64_t t_max, double eta_min = 0.0);
  double lr(int64_t step) const override;
  std::string describe() const override;

 private:
  double base_lr_, eta_min_;
  int64_t t_max_;
};

enum class DecayKind { linear, cosine };

// step < warmup: base_lr * step / warmup (0 at step 0, base_lr at `warmup`);
// then from base_lr at `warmup` to final_lr at total_steps, linearly or along
// a half cosine; final_lr from total_steps on.
class WarmupDecayLR : public Schedule {
 public:
  WarmupDecayLR(double base_lr, int64_t warmup_steps, int64_t total_steps, DecayKind decay, double final_lr = 0.0);
  double lr(int64_t step) const override;
  std::string describe() const override;

 private:
  double base_lr_, final_lr_;
  int64_t warmup_, total_;
  DecayKind decay_;
};

enum class AnnealKind { cos, linear };

struct OneCycleOptions {
  double max_lr = 0.0;
  int64_t total_steps = 0;
  double pct_start = 0.3;
  AnnealKind anneal = AnnealKind::cos;
  double div_factor = 25.0;        // initial_lr = max_lr / div_factor
  double final_div_factor = 1e4;   // min_lr = initial_lr / final_div_factor
  bool three_phase = false;
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
};

// torch.optim.lr_scheduler.OneCycleLR, step for step. Two phases: step 0 ..
// pct_start*total_steps - 1 anneals initial_lr -> max_lr (momentum max ->
// base), then to total_steps - 1 anneals max_lr -> min_lr (momentum base ->
// max). three_phase adds PyTorch's symmetric descent back to initial_lr at
// 2*pct_start*total_steps - 2 before the final anneal to min_lr. Steps past
// total_steps are an Error, as in PyTorch.
class OneCycleLR : public Schedule {
 public:
  explicit OneCycleLR(const OneCycleOptions& options);
  double lr(int64_t step) const override;
  std::optional<double> momentum(int64_t step) const override;
  std::string describe() const override;
  double initial_lr() const { return o_.max_lr / o_.div_factor; }
  double min_lr() const { return initial_lr() / o_.final_div_factor; }

 private:
  struct Phase {
    double end_step, start_lr, end_lr, start_momentum, end_momentum;
  };
  // The phase holding `step` and how far into it (pct, 0..1).
  std::pair<const Phase*, double> locate(int64_t step) const;
  double anneal(double start, double end, double pct) const;

  OneCycleOptions o_;
  std::vector<Phase> phases_;
};

// A schedule by name, for binaries' --schedule flag: "constant", "cosine"
// (t_max = total_steps, eta_min = min_lr), "warmup-linear", "warmup-cosine"
// (final_lr = min_lr), "onecycle" (max_lr = base_lr, PyTorch defaults;
// pct_start = warmup_steps / total_steps when warmup_steps > 0),
// "onecycle-linear" (the same with linear annealing, as the LRA runs).
std::unique_ptr<Schedule> make_schedule(const std::string& name, double base_lr, int64_t total_steps,
                                        int64_t warmup_steps = 0, double min_lr = 0.0);

}  // namespace dimix
