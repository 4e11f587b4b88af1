// Optimizers, gradient clipping and learning-rate schedules against values
// computed here from the update formulas written out in double (textbook
// form, independent of the fused loops' arithmetic order), plus literal
// numbers worked by hand (the same PyTorch gives for these inputs).
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

#include "core/rng.h"
#include "models/optim.h"
#include "models/schedule.h"

using namespace dimix;
using Catch::Matchers::Contains;

namespace {

// Three steps of gradients for a 2-element parameter starting at p0.
const std::vector<double> kP0 = {1.0, -2.0};
const std::vector<std::vector<double>> kGrads = {{0.5, -1.0}, {0.1, 0.3}, {-0.2, 0.4}};

Tensor param(const std::vector<double>& v, DType dt) {
  Tensor p = cast_raw(from_vector<double>(v, {static_cast<int64_t>(v.size())}), dt);
  p.set_requires_grad(true);
  return p;
}
void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(cast_raw(from_vector<double>(g, {static_cast<int64_t>(g.size())}), p.dtype()));
}

struct RefSGD {
  double lr, momentum, dampening, wd;
  bool nesterov;
  std::vector<double> p, buf;
  void step(const std::vector<double>& g) {
    const bool first = buf.empty();
    if (first) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = g[i] + wd * p[i];
      if (momentum != 0) {
        buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
};

struct RefAdam {
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
  std::vector<double> p, m, v;
  int t = 0;
  void step(const std::vector<double>& g) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      if (decoupled) p[i] -= lr * wd * p[i];
      const double d = decoupled ? g[i] : g[i] + wd * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * d;
      v[i] = beta2 * v[i] + (1 - beta2) * d * d;
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat = v[i] / (1 - std::pow(beta2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

// Runs `opt` over kGrads on `p`, comparing each step with `ref_step`.
template <class Ref>
void run_and_compare(Optimizer& opt, const Tensor& p, Ref& ref, double tol) {
  for (size_t s = 0; s < kGrads.size(); ++s) {
    set_grad(p, kGrads[s]);
    opt.step();
    ref.step(kGrads[s]);
    const auto got = p.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("step " << s + 1 << " element " << i);
      CHECK(got[i] == Approx(ref.p[i]).epsilon(0).margin(tol));
    }
  }
  CHECK(opt.step_count() == 3);
}

}  // namespace

TEST_CASE("optim: SGD plain, momentum, dampening, Nesterov, weight decay", "[optim]") {
  struct Case {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (const Case c : {Case{0, 0, 0, false}, Case{0, 0, 0.01, false}, Case{0.9, 0, 0, false},
                       Case{0.9, 0.1, 0.05, false}, Case{0.9, 0, 0, true}, Case{0.8, 0, 0.02, true}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      INFO("momentum " << c.momentum << " dampening " << c.dampening << " wd " << c.wd << " nesterov " << c.nesterov
                       << " " << dtype_name(dt));
      Tensor p = param(kP0, dt);
      SGD opt({p}, SGDOptions{.lr = 0.1, .momentum = c.momentum, .dampening = c.dampening,
                              .nesterov = c.nesterov, .weight_decay = c.wd});
      RefSGD ref{0.1, c.momentum, c.dampening, c.wd, c.nesterov, kP0, {}};
      run_and_compare(opt, p, ref, dt == DType::f64 ? 1e-15 : 1e-6);
    }
  }
}

TEST_CASE("optim: SGD momentum and Nesterov literal values", "[optim]") {
  // p = 1, g = 1 every step, lr 0.1, momentum 0.9, worked by hand:
  //   plain:    buf 1, 1.9, 2.71         -> p 0.9, 0.71, 0.439
  //   Nesterov: d 1.9, 2.71, 3.439       -> p 0.81, 0.539, 0.1951
  for (bool nesterov : {false, true}) {
    Tensor p = param({1.0}, DType::f64);
    SGD opt({p}, SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = nesterov});
    std::vector<double> got;
    for (int s = 0; s < 3; ++s) {
      set_grad(p, {1.0});
      opt.step();
      got.push_back(p.item());
    }
    const std::vector<double> want = nesterov ? std::vector<double>{0.81, 0.539, 0.1951}
                                              : std::vector<double>{0.9, 0.71, 0.439};
    for (int s = 0; s < 3; ++s) CHECK(got[s] == Approx(want[s]).epsilon(1e-14));
  }
}

TEST_CASE("optim: Adam and AdamW against the textbook update", "[optim]") {
  for (bool decoupled : {false, true}) {
    for (double wd : {0.0, 0.1}) {
      for (DType dt : {DType::f32, DType::f64}) {
        INFO((decoupled ? "AdamW" : "Adam") << " wd " << wd << " " << dtype_name(dt));
        Tensor p = param(kP0, dt);
        RefAdam ref{0.05, 0.9, 0.999, 1e-8, wd, decoupled, kP0, {}, {}};
        const double tol = dt == DType::f64 ? 1e-14 : 2e-6;
        if (decoupled) {
          AdamW opt({p}, AdamWOptions{.lr = 0.05, .weight_decay = wd});
          CHECK(opt.type_name() == "AdamW");
          run_and_compare(opt, p, ref, tol);
        } else {
          Adam opt({p}, AdamOptions{.lr = 0.05, .weight_decay = wd});
          CHECK(opt.type_name() == "Adam");
          run_and_compare(opt, p, ref, tol);
        }
      }
    }
  }
}

TEST_CASE("optim: Adam literal first step and L2 vs decoupled decay differ", "[optim]") {
  // First step: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps).
  Tensor p = param({1.0, -3.0}, DType::f64);
  Adam adam({p}, AdamOptions{.lr = 0.1});
  set_grad(p, {0.5, -2.0});
  adam.step();
  CHECK(p.to_vector<double>()[0] == Approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-15));
  CHECK(p.to_vector<double>()[1] == Approx(-3.0 + 0.1 * 2.0 / (2.0 + 1e-8)).epsilon(1e-15));
  CHECK(p.to_vector<double>()[0] == Approx(0.9).margin(1e-8));

  // With a zero gradient, AdamW only shrinks p by (1 - lr*wd); Adam's L2 term
  // becomes the gradient itself and moves p by ~lr.
  Tensor a = param({2.0}, DType::f64), b = param({2.0}, DType::f64);
  AdamW adamw({a}, AdamWOptions{.lr = 0.1, .weight_decay = 0.5});
  Adam adam_l2({b}, AdamOptions{.lr = 0.1, .weight_decay = 0.5});
  set_grad(a, {0.0});
  set_grad(b, {0.0});
  adamw.step();
  adam_l2.step();
  CHECK(a.item() == Approx(2.0 * (1 - 0.1 * 0.5)).epsilon(1e-15));
  CHECK(b.item() == Approx(2.0 - 0.1 * 1.0 / (1.0 + 1e-8)).epsilon(1e-15));
}

TEST_CASE("optim: no-decay grouping leaves 1-d parameters out of AdamW's decay", "[optim]") {
  Tensor w = from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
  w.set_requires_grad(true);
  Tensor bias = param({0.5, -0.5}, DType::f32);
  Tensor gain = param({1.0, 1.0}, DType::f32);
  auto groups = param_groups_no_decay_1d({{"fc.weight", w}, {"fc.bias", bias}, {"ln.weight", gain}}, 0.1);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].names == std::vector<std::string>{"fc.weight"});
  CHECK(groups[1].names == std::vector<std::string>{"fc.bias", "ln.weight"});
  CHECK(*groups[0].weight_decay == 0.1);
  CHECK(*groups[1].weight_decay == 0.0);

  AdamW opt(groups, AdamWOptions{.lr = 0.01});
  CHECK(opt.param_groups()[0].weight_decay == 0.1);
  CHECK(opt.param_groups()[1].weight_decay == 0.0);
  // Zero gradients: the Adam part is exactly 0, so only decay moves anything.
  const auto w0 = w.to_vector<float>();
  for (int s = 0; s < 3; ++s) {
    for (const Tensor& t : {w, bias, gain}) t.set_grad(zeros(t.sizes()));
    opt.step();
  }
  const float shrink = static_cast<float>(1.0 - 0.01 * 0.1);
  const auto w3 = w.to_vector<float>();
  for (size_t i = 0; i < w3.size(); ++i) CHECK(w3[i] == w0[i] * shrink * shrink * shrink);
  CHECK(bias.to_vector<float>() == std::vector<float>{0.5f, -0.5f});
  CHECK(gain.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
}

TEST_CASE("optim: groups, lr_scale, skipped parameters and zero_grad", "[optim]") {
  Tensor a = param({1.0}, DType::f64), b = param({1.0}, DType::f64), c = param({1.0}, DType::f64);
  std::vector<ParamGroupSpec> specs(2);
  specs[0].params = {a, c};
  specs[1].params = {b};
  specs[1].lr = 0.2;
  SGD opt(specs, SGDOptions{.lr = 0.1});
  CHECK(opt.base_lr() == 0.1);
  CHECK(opt.param_groups()[0].lr_scale == 1.0);
  CHECK(opt.param_groups()[1].lr_scale == Approx(2.0));
  set_grad(a, {1.0});
  set_grad(b, {1.0});  // c has no gradient: skipped, as in PyTorch
  opt.step();
  CHECK(a.item() == Approx(0.9));
  CHECK(b.item() == Approx(0.8));
  CHECK(c.item() == 1.0);
  opt.zero_grad();
  CHECK(!a.grad().defined());
  CHECK(!b.grad().defined());
  opt.step();  // nothing has a gradient: nothing moves
  CHECK(a.item() == Approx(0.9));

  // Bad input is an Error naming the optimizer and what was wrong.
  CHECK_THROWS_WITH(SGD({a}, SGDOptions{.lr = 0.1, .nesterov = true}), Contains("Nesterov") && Contains("momentum"));
  CHECK_THROWS_WITH(Adam({a}, AdamOptions{.beta1 = 1.0}), Contains("beta1"));
  CHECK_THROWS_WITH(SGD({a, a}, SGDOptions{}), Contains("twice"));
  CHECK_THROWS_WITH(SGD({from_vector<int32_t>({1}, {1})}, SGDOptions{}), Contains("f32 or f64") && Contains("i32"));
  a.set_grad(zeros({3}, DType::f64));
  SGD bad({a}, SGDOptions{});
  CHECK_THROWS_WITH(bad.step(), Contains("SGD.step") && Contains("[3]") && Contains("[1]"));
}

TEST_CASE("optim: clip_grad_norm_ returns the global norm and rescales", "[optim]") {
  Tensor a = param({0.0, 0.0}, DType::f32), b = param({0.0}, DType::f64), c = param({0.0}, DType::f32);
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});  // c has no gradient
  const double norm = clip_grad_norm_({a, b, c}, 6.5);
  CHECK(norm == Approx(13.0).epsilon(1e-15));
  const double scale = 6.5 / (13.0 + 1e-6);
  CHECK(a.grad().to_vector<double>()[0] == Approx(3.0 * scale).epsilon(1e-7));
  CHECK(a.grad().to_vector<double>()[1] == Approx(4.0 * scale).epsilon(1e-7));
  CHECK(b.grad().item() == Approx(12.0 * scale).epsilon(1e-15));
  CHECK(!c.grad().defined());

  // Below the limit nothing changes, bit for bit.
  set_grad(a, {0.3, 0.4});
  const auto before = a.grad().to_vector<float>();
  b.zero_grad();
  CHECK(clip_grad_norm_({a, b}, 1.0) == Approx(0.5).epsilon(1e-7));
  CHECK(a.grad().to_vector<float>() == before);

  // A large gradient over many blocks (the blocked, parallel sum).
  Tensor big = zeros({100000});
  big.set_requires_grad(true);
  big.set_grad(full({100000}, 0.5));
  CHECK(clip_grad_norm_({big}, 1.0) == Approx(std::sqrt(100000 * 0.25)).epsilon(1e-12));
  CHECK(big.grad().to_vector<float>()[99999] == Approx(0.5 / (std::sqrt(25000.0) + 1e-6)).epsilon(1e-6));
  CHECK_THROWS_WITH(clip_grad_norm_({big}, 0.0), Contains("max_norm"));
}

// ---- schedules -------------------------------------------------------------------

TEST_CASE("schedule: constant and cosine annealing", "[optim][schedule]") {
  ConstantLR constant(0.3);
  CHECK(constant.lr(0) == 0.3);
  CHECK(constant.lr(12345) == 0.3);

  CosineAnnealingLR cosine(0.1, 100, 0.001);
  CHECK(cosine.lr(0) == Approx(0.1).epsilon(1e-15));
  CHECK(cosine.lr(50) == Approx((0.1 + 0.001) / 2).epsilon(1e-15));
  CHECK(cosine.lr(100) == Approx(0.001).epsilon(1e-12));
  CHECK(cosine.lr(25) == Approx(0.001 + 0.099 * (1 + std::cos(std::numbers::pi / 4)) / 2).epsilon(1e-15));
  CHECK(cosine.lr(150) == Approx((0.1 + 0.001) / 2).epsilon(1e-12));  // PyTorch's closed form keeps cycling
  CHECK_THROWS_WITH(cosine.lr(-1), Contains("step"));
  CHECK_THROWS_WITH(CosineAnnealingLR(0.1, 0), Contains("t_max"));
}

TEST_CASE("schedule: warmup then linear or cosine decay", "[optim][schedule]") {
  WarmupDecayLR linear(0.1, 10, 110, DecayKind::linear, 0.0);
  CHECK(linear.lr(0) == 0.0);
  CHECK(linear.lr(5) == Approx(0.05));
  CHECK(linear.lr(9) == Approx(0.09));
  CHECK(linear.lr(10) == Approx(0.1));
  CHECK(linear.lr(60) == Approx(0.05));
  CHECK(linear.lr(110) == 0.0);
  CHECK(linear.lr(500) == 0.0);

  WarmupDecayLR cosine(0.1, 10, 110, DecayKind::cosine, 0.01);
  CHECK(cosine.lr(0) == 0.0);
  CHECK(cosine.lr(10) == Approx(0.1));
  CHECK(cosine.lr(60) == Approx(0.055));
  CHECK(cosine.lr(35) == Approx(0.01 + 0.09 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
  CHECK(cosine.lr(110) == Approx(0.01));
  CHECK(cosine.lr(1000) == Approx(0.01));

  WarmupDecayLR no_warmup(0.2, 0, 4, DecayKind::linear);
  CHECK(no_warmup.lr(0) == Approx(0.2));
  CHECK(no_warmup.lr(2) == Approx(0.1));
  CHECK_THROWS_WITH(WarmupDecayLR(0.1, 20, 10, DecayKind::linear), Contains("warmup"));
}

TEST_CASE("schedule: OneCycleLR as PyTorch defines it", "[optim][schedule]") {
  OneCycleOptions o;
  o.max_lr = 0.1;
  o.total_steps = 100;
  OneCycleLR sched(o);  // pct_start 0.3: the peak is at step 0.3*100 - 1 = 29, the end at 99
  const double initial = 0.1 / 25, min_lr = initial / 1e4;
  CHECK(sched.initial_lr() == Approx(initial));
  CHECK(sched.lr(0) == Approx(0.004).epsilon(1e-15));
  CHECK(sched.lr(29) == Approx(0.1).epsilon(1e-15));
  CHECK(sched.lr(99) == Approx(4e-7).epsilon(1e-12));
  CHECK(sched.lr(99) == Approx(min_lr).epsilon(1e-12));
  CHECK(*sched.momentum(0) == Approx(0.95));
  CHECK(*sched.momentum(29) == Approx(0.85));
  CHECK(*sched.momentum(99) == Approx(0.95));
  // Inside the phases: PyTorch's _annealing_cos(start, end, pct).
  auto cos_anneal = [](double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
  };
  CHECK(sched.lr(10) == Approx(cos_anneal(initial, 0.1, 10.0 / 29.0)).epsilon(1e-15));
  CHECK(sched.lr(64) == Approx(cos_anneal(0.1, min_lr, (64.0 - 29.0) / 70.0)).epsilon(1e-15));
  CHECK(*sched.momentum(64) == Approx(cos_anneal(0.85, 0.95, 35.0 / 70.0)).epsilon(1e-15));
  CHECK(sched.lr(10) > sched.lr(9));
  CHECK(sched.lr(30) < sched.lr(29));
  CHECK_NOTHROW(sched.lr(100));  // PyTorch allows last_epoch == total_steps
  CHECK_THROWS_WITH(sched.lr(101), Contains("101") && Contains("100"));

  // Linear annealing, three phases and a pct_start that is not a whole step.
  OneCycleOptions l = o;
  l.anneal = AnnealKind::linear;
  l.pct_start = 0.25;
  l.total_steps = 10;  // peak at 1.5: steps 0, 1 rise; 2.. descend
  OneCycleLR lin(l);
  CHECK(lin.lr(0) == Approx(0.004));
  CHECK(lin.lr(1) == Approx(0.004 + (0.1 - 0.004) / 1.5));
  CHECK(lin.lr(2) == Approx(0.1 + (min_lr - 0.1) * (0.5 / 7.5)));
  CHECK(lin.lr(9) == Approx(min_lr));
  OneCycleOptions t = o;
  t.three_phase = true;
  OneCycleLR three(t);  // peaks at 29, back to initial at 58, min at 99
  CHECK(three.lr(29) == Approx(0.1));
  CHECK(three.lr(58) == Approx(0.004));
  CHECK(*three.momentum(58) == Approx(0.95));
  CHECK(three.lr(99) == Approx(min_lr));
  CHECK(*three.momentum(80) == Approx(0.95));

  OneCycleOptions bad = o;
  bad.total_steps = 10;
  bad.pct_start = 0.1;  // warm-up phase ends at step 0: PyTorch divides by zero
  CHECK_THROWS_WITH(OneCycleLR(bad), Contains("pct_start"));
}

TEST_CASE("schedule: apply sets group lrs by ratio and cycles beta1 / momentum", "[optim][schedule]") {
  Tensor a = param({1.0}, DType::f32), b = param({1.0}, DType::f32);
  std::vector<ParamGroupSpec> specs(2);
  specs[0].params = {a};
  specs[1].params = {b};
  specs[1].lr = 5e-4;  // half the base lr
  AdamW adamw(specs, AdamWOptions{.lr = 1e-3});
  OneCycleOptions o;
  o.max_lr = 1e-3;
  o.total_steps = 100;
  OneCycleLR sched(o);
  sched.apply(adamw, 0);
  CHECK(adamw.param_groups()[0].lr == Approx(4e-5));
  CHECK(adamw.param_groups()[1].lr == Approx(2e-5));
  CHECK(adamw.param_groups()[0].beta1 == Approx(0.95));
  CHECK(adamw.param_groups()[1].beta1 == Approx(0.95));
  CHECK(adamw.param_groups()[0].beta2 == 0.999);
  sched.apply(adamw, 29);
  CHECK(adamw.param_groups()[0].lr == Approx(1e-3));
  CHECK(adamw.param_groups()[1].lr == Approx(5e-4));
  CHECK(adamw.momentum(0) == Approx(0.85));

  SGD sgd({a}, SGDOptions{.lr = 0.1, .momentum = 0.9});
  sched.apply(sgd, 0);
  CHECK(sgd.param_groups()[0].momentum == Approx(0.95));
  sched.apply(sgd, 29);
  CHECK(sgd.param_groups()[0].momentum == Approx(0.85));

  CosineAnnealingLR cosine(1e-3, 10);
  cosine.apply(adamw, 5);
  CHECK(adamw.param_groups()[0].lr == Approx(5e-4));
  CHECK(adamw.param_groups()[1].lr == Approx(2.5e-4));
  CHECK(adamw.param_groups()[0].beta1 == Approx(0.85));  // cosine leaves momentum alone

  CHECK(make_schedule("warmup-cosine", 0.1, 100, 10)->lr(10) == Approx(0.1));
  CHECK(make_schedule("onecycle", 0.1, 100)->lr(0) == Approx(0.004));
  CHECK_THROWS_WITH(make_schedule("step", 0.1, 100), Contains("unknown schedule 'step'"));
}

// ---- state round-trip ------------------------------------------------------------

namespace {
// Deterministic per-step gradients for the resume test.
void fill_grads(const std::vector<Tensor>& params, int step) {
  Generator gen(1000 + step);
  for (const Tensor& p : params) p.set_grad(randn(p.sizes(), p.dtype(), &gen));
}

template <class Opt, class Options>
void check_resume(const Options& options) {
  auto make_params = [] {
    Generator gen(7);
    std::vector<Tensor> ps = {randn({3, 4}, DType::f32, &gen), randn({4}, DType::f32, &gen),
                              randn({70000}, DType::f32, &gen)};
    for (auto& p : ps) p.set_requires_grad(true);
    return ps;
  };
  CosineAnnealingLR sched(0.01, 10);
  // Uninterrupted: 10 steps.
  std::vector<Tensor> ref = make_params();
  Opt ref_opt(ref, options);
  for (int s = 0; s < 10; ++s) {
    sched.apply(ref_opt, s);
    fill_grads(ref, s);
    ref_opt.step();
  }
  // Interrupted: 5 steps, state saved, a fresh optimizer on copies continues.
  std::vector<Tensor> first = make_params();
  Opt first_opt(first, options);
  for (int s = 0; s < 5; ++s) {
    sched.apply(first_opt, s);
    fill_grads(first, s);
    first_opt.step();
  }
  const OptimizerState saved = first_opt.state_dict();
  std::vector<Tensor> second;  // the parameters as they were when saved
  for (const Tensor& p : first) {
    Tensor c = empty(p.sizes(), p.dtype());
    copy_(c, p);
    c.set_requires_grad(true);
    second.push_back(c);
  }
  // Stepping on after state_dict() must not change what was saved.
  fill_grads(first, 99);
  first_opt.step();

  Opt resumed(second, options);
  resumed.load_state_dict(saved);
  CHECK(resumed.step_count() == 5);
  for (int s = 5; s < 10; ++s) {
    sched.apply(resumed, s);
    fill_grads(second, s);
    resumed.step();
  }
  for (size_t i = 0; i < ref.size(); ++i) CHECK(second[i].to_vector<float>() == ref[i].to_vector<float>());
}
}  // namespace

TEST_CASE("optim: state_dict round-trip continues bit-identically", "[optim]") {
  SECTION("AdamW") { check_resume<AdamW>(AdamWOptions{.lr = 0.01, .weight_decay = 0.05}); }
  SECTION("Adam") { check_resume<Adam>(AdamOptions{.lr = 0.01, .weight_decay = 0.01}); }
  SECTION("SGD Nesterov") { check_resume<SGD>(SGDOptions{.lr = 0.01, .momentum = 0.9, .nesterov = true}); }
}

TEST_CASE("optim: state_dict contents and load errors", "[optim]") {
  Tensor p = param({1.0, 2.0}, DType::f32);
  AdamW opt({p}, AdamWOptions{.lr = 0.01});
  set_grad(p, {0.1, 0.2});
  opt.step();
  opt.step();
  const OptimizerState s = opt.state_dict();
  CHECK(s.type == "AdamW");
  CHECK(s.scalars.at("step_count") == 2);
  CHECK(s.scalars.at("state.0.0.step") == 2);
  CHECK(s.scalars.at("group.0.lr") == 0.01);
  CHECK(s.scalars.at("group.0.weight_decay") == 0.01);
  REQUIRE(s.tensors.count("state.0.0.exp_avg"));
  REQUIRE(s.tensors.count("state.0.0.exp_avg_sq"));
  // m after two steps of the same g: (1 - 0.9^2) g
  CHECK(s.tensors.at("state.0.0.exp_avg").to_vector<double>()[1] == Approx(0.19 * 0.2).epsilon(1e-6));

  Tensor q = param({1.0, 2.0}, DType::f32);
  Adam adam({q}, AdamOptions{});
  CHECK_THROWS_WITH(adam.load_state_dict(s), Contains("AdamW optimizer"));
  SGD sgd({q}, SGDOptions{});
  CHECK_THROWS_WITH(sgd.load_state_dict(s), Contains("SGD.load_state_dict"));

  Tensor r = param({1.0, 2.0, 3.0}, DType::f32);
  AdamW wrong_shape({r}, AdamWOptions{});
  CHECK_THROWS_WITH(wrong_shape.load_state_dict(s), Contains("exp_avg") && Contains("[2]") && Contains("[3]"));
  CHECK(wrong_shape.step_count() == 0);  // untouched after a failed load

  AdamW two_params({q, r}, AdamWOptions{});
  CHECK_THROWS_WITH(two_params.load_state_dict(s), Contains("1 parameters in the state, 2 in this optimizer"));
  OptimizerState extra = s;
  extra.tensors["state.0.5.exp_avg"] = zeros({2});
  AdamW other({q}, AdamWOptions{});
  CHECK_THROWS_WITH(other.load_state_dict(extra), Contains("unexpected tensor 'state.0.5.exp_avg'"));
}
