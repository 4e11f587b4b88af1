// Learning-rate schedules (see schedule.h). The arithmetic is written in the
// order PyTorch writes it, so the doubles match PyTorch's bit for bit where
// the C library's cos matches Python's (both call the platform libm).

// Keep a*b + c as two roundings, as Python computes PyTorch's scalars: a fused
// multiply-add changes last bits (0.1 * 10 - 1 is 5.6e-17 fused, 0 unfused).
// Before the includes: GCC takes a function's optimize settings from its
// first declaration, which is in our header.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "models/schedule.h"

#include <cmath>
#include <numbers>
#include <sstream>

namespace dimix {

namespace {
void check_step(const char* op, int64_t step) {
  DIMIX_CHECK(step >= 0, op, ": expected a step >= 0, got ", step);
}
}  // namespace

void Schedule::apply(Optimizer& optimizer, int64_t step) const {
  const double value = lr(step);
  const std::optional<double> mom = momentum(step);
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].lr = value * groups[g].lr_scale;
    if (mom) optimizer.set_momentum(g, *mom);
  }
}

// ---- constant ------------------------------------------------------------------

ConstantLR::ConstantLR(double lr) : lr_(lr) {
  DIMIX_CHECK(lr >= 0, "ConstantLR: expected lr >= 0, got ", lr);
}
double ConstantLR::lr(int64_t step) const {
  check_step("ConstantLR", step);
  return lr_;
}
std::string ConstantLR::describe() const { return detail::concat("constant(lr=", lr_, ")"); }

// ---- cosine --------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(double base_lr, int64_t t_max, double eta_min)
    : base_lr_(base_lr), eta_min_(eta_min), t_max_(t_max) {
  DIMIX_CHECK(t_max > 0, "CosineAnnealingLR: expected t_max > 0, got ", t_max);
  DIMIX_CHECK(base_lr >= 0 && eta_min >= 0, "CosineAnnealingLR: expected base_lr, eta_min >= 0, got ", base_lr,
              " and ", eta_min);
}
double CosineAnnealingLR::lr(int64_t step) const {
  check_step("CosineAnnealingLR", step);
  return eta_min_ + (base_lr_ - eta_min_) *
                        (1 + std::cos(std::numbers::pi * static_cast<double>(step) / static_cast<double>(t_max_))) / 2;
}
std::string CosineAnnealingLR::describe() const {
  return detail::concat("cosine(base_lr=", base_lr_, ", t_max=", t_max_, ", eta_min=", eta_min_, ")");
}

// ---- warmup + decay --------------------------------------------------------------

WarmupDecayLR::WarmupDecayLR(double base_lr, int64_t warmup_steps, int64_t total_steps, DecayKind decay,
                             double final_lr)
    : base_lr_(base_lr), final_lr_(final_lr), warmup_(warmup_steps), total_(total_steps), decay_(decay) {
  DIMIX_CHECK(warmup_steps >= 0 && total_steps > 0 && warmup_steps <= total_steps,
              "WarmupDecayLR: expected 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup ",
              warmup_steps, " of ", total_steps);
  DIMIX_CHECK(base_lr >= 0 && final_lr >= 0, "WarmupDecayLR: expected base_lr, final_lr >= 0, got ", base_lr,
              " and ", final_lr);
}
double WarmupDecayLR::lr(int64_t step) const {
  check_step("WarmupDecayLR", step);
  if (step < warmup_) return base_lr_ * (static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_)));
  const double progress = std::min(
      1.0, static_cast<double>(step - warmup_) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_)));
  const double factor =
      decay_ == DecayKind::linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return final_lr_ + (base_lr_ - final_lr_) * factor;
}
std::string WarmupDecayLR::describe() const {
  return detail::concat("warmup-", decay_ == DecayKind::linear ? "linear" : "cosine", "(base_lr=", base_lr_,
                        ", warmup=", warmup_, ", total=", total_, ", final_lr=", final_lr_, ")");
}

// ---- one-cycle --------------------------------------------------------------------

OneCycleLR::OneCycleLR(const OneCycleOptions& o) : o_(o) {
  DIMIX_CHECK(o.total_steps > 0, "OneCycleLR: expected total_steps > 0, got ", o.total_steps);
  DIMIX_CHECK(o.max_lr > 0, "OneCycleLR: expected max_lr > 0, got ", o.max_lr);
  DIMIX_CHECK(o.pct_start >= 0 && o.pct_start <= 1, "OneCycleLR: expected pct_start in [0, 1], got ", o.pct_start);
  DIMIX_CHECK(o.div_factor > 0 && o.final_div_factor > 0, "OneCycleLR: expected div_factor, final_div_factor > 0, got ",
              o.div_factor, " and ", o.final_div_factor);
  const double initial = initial_lr(), peak = o.max_lr, floor = min_lr();
  const double T = static_cast<double>(o.total_steps);
  const double mmax = o.max_momentum, mbase = o.base_momentum;
  if (o.three_phase) {
    phases_ = {{o.pct_start * T - 1, initial, peak, mmax, mbase},
               {2 * o.pct_start * T - 2, peak, initial, mbase, mmax},
               {T - 1, initial, floor, mmax, mmax}};
  } else {
    phases_ = {{o.pct_start * T - 1, initial, peak, mmax, mbase}, {T - 1, peak, floor, mbase, mmax}};
  }
  // PyTorch divides by a phase's length when a step lands in it; the first
  // phase is entered at step 0, the last by every step past its start.
  DIMIX_CHECK(phases_.front().end_step != 0, "OneCycleLR: pct_start * total_steps = ", o.pct_start * T,
              " makes the warm-up phase empty (its end step is 0); use a larger pct_start or total_steps");
  const double last_start = phases_[phases_.size() - 2].end_step;
  DIMIX_CHECK(phases_.back().end_step != last_start, "OneCycleLR: the final phase is empty (it starts and ends at step ",
              last_start, "); use a smaller pct_start");
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (o_.anneal == AnnealKind::cos) {
    const double cos_out = std::cos(std::numbers::pi * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

std::pair<const OneCycleLR::Phase*, double> OneCycleLR::locate(int64_t step) const {
  check_step("OneCycleLR", step);
  DIMIX_CHECK(step <= o_.total_steps, "OneCycleLR: tried to step ", step, " times; the specified number of total steps is ",
              o_.total_steps);
  const double s = static_cast<double>(step);
  double start_step = 0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& ph = phases_[i];
    if (s <= ph.end_step || i + 1 == phases_.size()) return {&ph, (s - start_step) / (ph.end_step - start_step)};
    start_step = ph.end_step;
  }
  DIMIX_FAIL("OneCycleLR: unreachable");
}

double OneCycleLR::lr(int64_t step) const {
  const auto [ph, pct] = locate(step);
  return anneal(ph->start_lr, ph->end_lr, pct);
}

std::optional<double> OneCycleLR::momentum(int64_t step) const {
  if (!o_.cycle_momentum) return std::nullopt;
  const auto [ph, pct] = locate(step);
  return anneal(ph->start_momentum, ph->end_momentum, pct);
}

std::string OneCycleLR::describe() const {
  return detail::concat("onecycle(max_lr=", o_.max_lr, ", total_steps=", o_.total_steps, ", pct_start=", o_.pct_start,
                        ", anneal=", o_.anneal == AnnealKind::cos ? "cos" : "linear", ", div_factor=", o_.div_factor,
                        ", final_div_factor=", o_.final_div_factor, o_.three_phase ? ", three_phase" : "",
                        o_.cycle_momentum ? ", momentum " : ", no momentum cycling",
                        o_.cycle_momentum ? detail::concat(o_.max_momentum, "->", o_.base_momentum) : std::string(),
                        ")");
}

// ---- by name -------------------------------------------------------------------------

std::unique_ptr<Schedule> make_schedule(const std::string& name, double base_lr, int64_t total_steps,
                                        int64_t warmup_steps, double min_lr) {
  if (name == "constant") return std::make_unique<ConstantLR>(base_lr);
  if (name == "cosine") return std::make_unique<CosineAnnealingLR>(base_lr, total_steps, min_lr);
  if (name == "warmup-linear")
    return std::make_unique<WarmupDecayLR>(base_lr, warmup_steps, total_steps, DecayKind::linear, min_lr);
  if (name == "warmup-cosine")
    return std::make_unique<WarmupDecayLR>(base_lr, warmup_steps, total_steps, DecayKind::cosine, min_lr);
  if (name == "onecycle" || name == "onecycle-linear") {
    OneCycleOptions o;
    o.max_lr = base_lr;
    o.total_steps = total_steps;
    // Nystromformer's LRA runs: pct_start = warmup / steps, linear annealing.
    if (warmup_steps > 0) o.pct_start = static_cast<double>(warmup_steps) / static_cast<double>(total_steps);
    if (name == "onecycle-linear") o.anneal = AnnealKind::linear;
    return std::make_unique<OneCycleLR>(o);
  }
  DIMIX_FAIL("make_schedule: unknown schedule '", name,
             "' (expected constant, cosine, warmup-linear, warmup-cosine, onecycle or onecycle-linear)");
}

}  // namespace dimix
