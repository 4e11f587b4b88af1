// Optimizers (see optim.h). Scalars (bias corrections, step sizes) are formed
// in double as PyTorch forms them in Python, then each fused loop runs in the
// parameter's own type.

// Keep a*b + c as two roundings, as Python computes PyTorch's scalars: a fused
// multiply-add changes last bits (0.1 * 10 - 1 is 5.6e-17 fused, 0 unfused).
// Before the includes: GCC takes a function's optimize settings from its
// first declaration, which is in our header.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "models/optim.h"

#include <cmath>
#include <cstdio>

#include "autograd/node.h"
#include "core/kernel_table.h"
#include "core/parallel.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace dimix {

namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per parallel chunk

std::string key(const std::string& a, size_t g) { return a + "." + std::to_string(g); }
std::string key(const std::string& a, size_t g, size_t i) { return key(a, g) + "." + std::to_string(i); }

std::string param_label(const ParamGroup& g, size_t gi, size_t i) {
  if (i < g.names.size() && !g.names[i].empty()) return "'" + g.names[i] + "'";
  return "group " + std::to_string(gi) + " param " + std::to_string(i);
}

}  // namespace

// ---- Optimizer ---------------------------------------------------------------

Optimizer::Optimizer(std::vector<ParamGroupSpec> specs, double lr, double weight_decay, const ParamGroup& defaults,
                     const char* op)
    : base_lr_(lr) {
  DIMIX_CHECK(!specs.empty(), op, ": expected at least one parameter group");
  for (auto& spec : specs) {
    DIMIX_CHECK(spec.names.empty() || spec.names.size() == spec.params.size(), op, ": a group has ",
                spec.params.size(), " params but ", spec.names.size(), " names");
    ParamGroup g = defaults;
    g.params = std::move(spec.params);
    g.names = std::move(spec.names);
    g.names.resize(g.params.size());
    g.lr = spec.lr.value_or(lr);
    g.weight_decay = spec.weight_decay.value_or(weight_decay);
    g.lr_scale = (spec.lr && lr != 0) ? *spec.lr / lr : 1.0;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      DIMIX_CHECK(p.defined(), op, ": ", param_label(g, groups_.size(), i), " is undefined");
      DIMIX_CHECK(is_floating(p.dtype()), op, ": ", param_label(g, groups_.size(), i),
                  " must be f32 or f64, got ", dtype_name(p.dtype()));
      DIMIX_CHECK(p.is_contiguous(), op, ": ", param_label(g, groups_.size(), i), " of shape ", p.shape_str(),
                  " is not contiguous; parameters are updated in place as flat buffers");
      for (const auto& other : groups_)
        for (const auto& q : other.params)
          DIMIX_CHECK(!q.same(p), op, ": ", param_label(g, groups_.size(), i), " appears twice (in two groups)");
      for (size_t j = 0; j < i; ++j)
        DIMIX_CHECK(!g.params[j].same(p), op, ": ", param_label(g, groups_.size(), i), " appears twice in its group");
    }
    check_group(g, groups_.size(), op);
    state_.emplace_back(g.params.size());
    groups_.push_back(std::move(g));
  }
}

void Optimizer::check_group(const ParamGroup& g, size_t index, const std::string& op) {
  const std::string where = op + ": group " + std::to_string(index);
  DIMIX_CHECK(g.lr >= 0, where, ": expected lr >= 0, got ", g.lr);
  DIMIX_CHECK(g.weight_decay >= 0, where, ": expected weight_decay >= 0, got ", g.weight_decay);
  DIMIX_CHECK(g.momentum >= 0, where, ": expected momentum >= 0, got ", g.momentum);
  DIMIX_CHECK(!g.nesterov || (g.momentum > 0 && g.dampening == 0), where,
              ": Nesterov momentum needs momentum > 0 and dampening 0, got momentum ", g.momentum,
              " and dampening ", g.dampening);
  DIMIX_CHECK(g.beta1 >= 0 && g.beta1 < 1, where, ": expected 0 <= beta1 < 1, got ", g.beta1);
  DIMIX_CHECK(g.beta2 >= 0 && g.beta2 < 1, where, ": expected 0 <= beta2 < 1, got ", g.beta2);
  DIMIX_CHECK(g.eps >= 0, where, ": expected eps >= 0, got ", g.eps);
}

void Optimizer::step() {
  NoGradGuard no_grad;
  const std::string op = type_name() + ".step";
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    check_group(g, gi, type_name());
    if (update_group(gi)) continue;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      DIMIX_CHECK(grad.sizes() == p.sizes() && grad.dtype() == p.dtype() && grad.device() == p.device(), op,
                  ": gradient of ", param_label(g, gi, i), " is ", dtype_name(grad.dtype()), " ", grad.shape_str(),
                  " on ", grad.device().str(), ", expected ", dtype_name(p.dtype()), " ", p.shape_str(), " on ",
                  p.device().str());
      DIMIX_CHECK(p.is_contiguous(), op, ": ", param_label(g, gi, i), " is not contiguous");
      update(g, p, grad.contiguous_raw(), state_[gi][i]);
    }
  }
  ++step_count_;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

namespace {
// A private copy on `device` (state handed out or taken in must not alias).
Tensor clone_to(const Tensor& t, Device device) {
  Tensor src = t.contiguous_raw();
  Tensor out = empty(t.sizes(), t.dtype(), device);
  if (t.numel() > 0) copy_(out, src);
  return out;
}
}  // namespace

OptimizerState Optimizer::state_dict() const {
  OptimizerState s;
  s.type = type_name();
  s.scalars["step_count"] = static_cast<double>(step_count_);
  s.scalars["num_groups"] = static_cast<double>(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const std::string k = key("group", gi);
    s.scalars[k + ".num_params"] = static_cast<double>(g.params.size());
    s.scalars[k + ".lr"] = g.lr;
    s.scalars[k + ".weight_decay"] = g.weight_decay;
    s.scalars[k + ".lr_scale"] = g.lr_scale;
    s.scalars[k + ".momentum"] = g.momentum;
    s.scalars[k + ".dampening"] = g.dampening;
    s.scalars[k + ".nesterov"] = g.nesterov ? 1.0 : 0.0;
    s.scalars[k + ".beta1"] = g.beta1;
    s.scalars[k + ".beta2"] = g.beta2;
    s.scalars[k + ".eps"] = g.eps;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const ParamState& ps = state_[gi][i];
      if (ps.step == 0 && ps.buffers.empty()) continue;
      const std::string sk = key("state", gi, i);
      s.scalars[sk + ".step"] = static_cast<double>(ps.step);
      for (const auto& [name, buf] : ps.buffers) s.tensors[sk + "." + name] = clone_to(buf, buf.device());
    }
  }
  return s;
}

void Optimizer::load_state_dict(const OptimizerState& s) {
  const std::string op = type_name() + ".load_state_dict";
  DIMIX_CHECK(s.type == type_name(), op, ": the state belongs to a ", s.type.empty() ? "(untyped)" : s.type,
              " optimizer");
  auto scalar = [&](const std::string& k) -> std::optional<double> {
    auto it = s.scalars.find(k);
    if (it == s.scalars.end()) return std::nullopt;
    return it->second;
  };
  auto count = [&](const std::string& k) -> int64_t {
    const auto v = scalar(k);
    DIMIX_CHECK(v.has_value(), op, ": the state has no '", k, "'");
    DIMIX_CHECK(*v >= 0 && *v == std::floor(*v), op, ": '", k, "' is not a count: ", *v);
    return static_cast<int64_t>(*v);
  };
  const int64_t num_groups = count("num_groups");
  DIMIX_CHECK(num_groups == static_cast<int64_t>(groups_.size()), op, ": the state has ", num_groups,
              " parameter groups, this optimizer ", groups_.size());

  std::vector<ParamGroup> groups = groups_;
  std::vector<std::vector<ParamState>> state(groups_.size());
  std::map<std::string, bool> used_tensors, used_scalars;
  for (const auto& [k, v] : s.tensors) used_tensors[k] = false;
  for (const auto& [k, v] : s.scalars) used_scalars[k] = false;
  used_scalars["num_groups"] = true;
  if (auto v = scalar("step_count")) used_scalars["step_count"] = true;

  for (size_t gi = 0; gi < groups.size(); ++gi) {
    ParamGroup& g = groups[gi];
    const std::string gk = key("group", gi);
    const int64_t np = count(gk + ".num_params");
    used_scalars[gk + ".num_params"] = true;
    DIMIX_CHECK(np == static_cast<int64_t>(g.params.size()), op, ": group ", gi, " has ", np,
                " parameters in the state, ", g.params.size(), " in this optimizer");
    auto restore = [&](const char* name, double& field) {
      if (auto v = scalar(gk + "." + name)) {
        field = *v;
        used_scalars[gk + "." + name] = true;
      }
    };
    restore("lr", g.lr);
    restore("weight_decay", g.weight_decay);
    restore("lr_scale", g.lr_scale);
    restore("momentum", g.momentum);
    restore("dampening", g.dampening);
    restore("beta1", g.beta1);
    restore("beta2", g.beta2);
    restore("eps", g.eps);
    double nesterov = g.nesterov ? 1 : 0;
    restore("nesterov", nesterov);
    g.nesterov = nesterov != 0;
    check_group(g, gi, op);

    state[gi].resize(g.params.size());
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      const std::string sk = key("state", gi, i);
      ParamState& ps = state[gi][i];
      if (scalar(sk + ".step")) {
        ps.step = count(sk + ".step");
        used_scalars[sk + ".step"] = true;
      }
      for (const std::string& name : buffer_names()) {
        auto it = s.tensors.find(sk + "." + name);
        if (it == s.tensors.end()) continue;
        const Tensor& t = it->second;
        DIMIX_CHECK(t.defined() && t.sizes() == p.sizes() && t.dtype() == p.dtype(), op, ": '", it->first,
                    "' is ", t.defined() ? dtype_name(t.dtype()) : "undefined", " ",
                    t.defined() ? t.shape_str() : "", " but ", param_label(g, gi, i), " is ",
                    dtype_name(p.dtype()), " ", p.shape_str());
        ps.buffers[name] = clone_to(t, p.device());
        used_tensors[it->first] = true;
      }
    }
  }
  for (const auto& [k, used] : used_tensors)
    DIMIX_CHECK(used, op, ": unexpected tensor '", k, "' in the state (no such group, parameter or buffer)");
  for (const auto& [k, used] : used_scalars)
    DIMIX_CHECK(used, op, ": unexpected scalar '", k, "' in the state (no such group or parameter)");

  groups_ = std::move(groups);
  state_ = std::move(state);
  step_count_ = scalar("step_count") ? count("step_count") : 0;
}

// ---- SGD ---------------------------------------------------------------------

namespace {
ParamGroup sgd_defaults(const SGDOptions& o) {
  ParamGroup g;
  g.momentum = o.momentum;
  g.dampening = o.dampening;
  g.nesterov = o.nesterov;
  return g;
}
std::vector<ParamGroupSpec> one_group(const std::vector<Tensor>& params) {
  std::vector<ParamGroupSpec> specs(1);
  specs[0].params = params;
  return specs;
}
}  // namespace

SGD::SGD(std::vector<ParamGroupSpec> groups, const SGDOptions& o)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, sgd_defaults(o), "SGD") {}
SGD::SGD(const std::vector<Tensor>& params, const SGDOptions& o) : SGD(one_group(params), o) {}

void SGD::set_momentum(size_t group, double value) {
  DIMIX_CHECK(group < groups_.size(), "SGD.set_momentum: no group ", group);
  groups_[group].momentum = value;
}
double SGD::momentum(size_t group) const {
  DIMIX_CHECK(group < groups_.size(), "SGD.momentum: no group ", group);
  return groups_[group].momentum;
}

void SGD::update(const ParamGroup& g, const Tensor& p, const Tensor& grad, ParamState& state) {
  ++state.step;
  Tensor buf;
  bool first = false;
  if (g.momentum != 0) {
    auto it = state.buffers.find("momentum_buffer");
    first = it == state.buffers.end();
    // The first step copies d into the buffer, so it needs no zeroing.
    buf = first ? (state.buffers["momentum_buffer"] = empty(p.sizes(), p.dtype(), p.device())) : it->second;
  }
  const SgdStepArgs a{g.lr, g.weight_decay, g.momentum, g.dampening, g.nesterov, first};
  if (p.device().is_cuda()) {
    // Fused CUDA update, written in cuda/ (same arithmetic as the loop below;
    // `buf` is undefined when momentum is 0).
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const SgdStepArgs&)>("sgd_step")(p, grad, buf, a);
    return;
  }
  dispatch_float(p.dtype(), "SGD.step", [&]<class T>() {
    T* P = p.data<T>();
    const T* G = grad.data<T>();
    T* M = buf.defined() ? buf.data<T>() : nullptr;
    const T lr = static_cast<T>(a.lr), wd = static_cast<T>(a.weight_decay), mom = static_cast<T>(a.momentum);
    const T keep = static_cast<T>(1.0 - a.dampening);
    const bool decay = a.weight_decay != 0, nesterov = a.nesterov;
    parallel_for(0, p.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T d = G[i];
        if (decay) d = d + wd * P[i];
        if (M) {
          M[i] = first ? d : M[i] * mom + keep * d;
          d = nesterov ? d + mom * M[i] : M[i];
        }
        P[i] = P[i] + (-lr) * d;
      }
    });
  });
}

// ---- Adam / AdamW -------------------------------------------------------------

namespace {
ParamGroup adam_defaults(const AdamOptions& o) {
  ParamGroup g;
  g.beta1 = o.beta1;
  g.beta2 = o.beta2;
  g.eps = o.eps;
  return g;
}
AdamOptions as_adam(const AdamWOptions& o) { return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}; }
// The scalars of step t (the parameter's own step count), as PyTorch forms them.
AdamStepArgs adam_step_args(const ParamGroup& g, int64_t t, bool decoupled) {
  const double bias_correction1 = 1.0 - std::pow(g.beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(g.beta2, static_cast<double>(t));
  return AdamStepArgs{g.lr, g.weight_decay, g.beta1, g.beta2, g.eps, g.lr / bias_correction1,
                      std::sqrt(bias_correction2), decoupled};
}
}  // namespace

Adam::Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& o, bool decoupled, const char* op)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, adam_defaults(o), op), decoupled_(decoupled) {}
Adam::Adam(std::vector<ParamGroupSpec> groups, const AdamOptions& o) : Adam(std::move(groups), o, false, "Adam") {}
Adam::Adam(const std::vector<Tensor>& params, const AdamOptions& o) : Adam(one_group(params), o, false, "Adam") {}
AdamW::AdamW(std::vector<ParamGroupSpec> groups, const AdamWOptions& o)
    : Adam(std::move(groups), as_adam(o), true, "AdamW") {}
AdamW::AdamW(const std::vector<Tensor>& params, const AdamWOptions& o) : AdamW(one_group(params), o) {}

void Adam::set_momentum(size_t group, double value) {
  DIMIX_CHECK(group < groups_.size(), type_name(), ".set_momentum: no group ", group);
  groups_[group].beta1 = value;
}
double Adam::momentum(size_t group) const {
  DIMIX_CHECK(group < groups_.size(), type_name(), ".momentum: no group ", group);
  return groups_[group].beta1;
}

void Adam::update(const ParamGroup& g, const Tensor& p, const Tensor& grad, ParamState& state) {
  Tensor& m = state.buffers["exp_avg"];
  Tensor& v = state.buffers["exp_avg_sq"];
  if (!m.defined()) m = zeros(p.sizes(), p.dtype(), p.device());
  if (!v.defined()) v = zeros(p.sizes(), p.dtype(), p.device());
  const AdamStepArgs a = adam_step_args(g, ++state.step, decoupled_);
  if (p.device().is_cuda()) {
    // Fused CUDA update, written in cuda/ (same arithmetic as the loop below).
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamStepArgs&)>(
        decoupled_ ? "adamw_step" : "adam_step")(p, grad, m, v, a);
    return;
  }
  dispatch_float(p.dtype(), decoupled_ ? "AdamW.step" : "Adam.step", [&]<class T>() {
    T* P = p.data<T>();
    const T* G = grad.data<T>();
    T* M = m.data<T>();
    T* V = v.data<T>();
    const bool decoupled = a.decoupled && a.weight_decay != 0;
    const bool l2 = !a.decoupled && a.weight_decay != 0;
    const T shrink = static_cast<T>(1.0 - a.lr * a.weight_decay);
    const T wd = static_cast<T>(a.weight_decay);
    // m.lerp_(d, 1 - beta1) as ATen computes lerp: from the nearer end.
    const double w = 1.0 - a.beta1;
    const bool lerp_low = w < 0.5;
    const T weight = static_cast<T>(w), weight_rest = T(1) - weight;
    const T beta2 = static_cast<T>(a.beta2), one_minus_beta2 = static_cast<T>(1.0 - a.beta2);
    const T bc2_sqrt = static_cast<T>(a.bias_correction2_sqrt), eps = static_cast<T>(a.eps);
    const T neg_step = static_cast<T>(-a.step_size);
    parallel_for(0, p.numel(), kGrain, [&](int64_t b, int64_t e) {
      // Locals, not the captured references: GCC cannot tell that the
      // stores to P, M, V leave the captured scalars alone, and then keeps
      // the loop scalar.
      T* const Pl = P;
      T* const Ml = M;
      T* const Vl = V;
      const T* const Gl = G;
      const bool dec = decoupled, l2_ = l2, low = lerp_low;
      const T shrink_ = shrink, wd_ = wd, w_ = weight, wr_ = weight_rest, b2 = beta2, omb2 = one_minus_beta2;
      const T bc2 = bc2_sqrt, eps_ = eps, step = neg_step;
      for (int64_t i = b; i < e; ++i) {
        T pi = Pl[i];
        if (dec) pi = pi * shrink_;
        T d = Gl[i];
        if (l2_) d = d + wd_ * pi;
        const T mi = low ? Ml[i] + w_ * (d - Ml[i]) : d - (d - Ml[i]) * wr_;
        const T vi = Vl[i] * b2 + omb2 * d * d;
        Ml[i] = mi;
        Vl[i] = vi;
        const T denom = std::sqrt(vi) / bc2 + eps_;
        Pl[i] = pi + step * (mi / denom);
      }
    });
  });
}

// CUDA: every parameter of the group that has a gradient is updated by one
// "multi_tensor_adam" launch (cuda/optim.cu), the same arithmetic as
// "adam_step" per parameter. Groups with a CPU parameter, mixed dtypes or
// devices, or nothing to update go the per-parameter way.
bool Adam::update_group(size_t gi) {
  const ParamGroup& g = groups_[gi];
  std::vector<size_t> with_grad;
  for (size_t i = 0; i < g.params.size(); ++i)
    if (g.params[i].grad().defined()) with_grad.push_back(i);
  if (with_grad.empty() || !has_kernel("multi_tensor_adam")) return false;
  const Tensor& first = g.params[with_grad[0]];
  for (size_t i : with_grad)
    if (!g.params[i].device().is_cuda() || g.params[i].device() != first.device() ||
        g.params[i].dtype() != first.dtype())
      return false;
  const std::string op = type_name() + ".step";
  std::vector<Tensor> ps, gs, ms, vs;
  for (size_t i : with_grad) {  // every check before any state changes
    const Tensor& p = g.params[i];
    const Tensor grad = p.grad();
    DIMIX_CHECK(grad.sizes() == p.sizes() && grad.dtype() == p.dtype() && grad.device() == p.device(), op,
                ": gradient of ", param_label(g, gi, i), " is ", dtype_name(grad.dtype()), " ", grad.shape_str(),
                " on ", grad.device().str(), ", expected ", dtype_name(p.dtype()), " ", p.shape_str(), " on ",
                p.device().str());
    DIMIX_CHECK(p.is_contiguous(), op, ": ", param_label(g, gi, i), " is not contiguous");
    ps.push_back(p);
    gs.push_back(grad.contiguous_raw());
  }
  std::vector<AdamStepArgs> args;
  for (size_t i : with_grad) {
    const Tensor& p = g.params[i];
    ParamState& state = state_[gi][i];
    Tensor& m = state.buffers["exp_avg"];
    Tensor& v = state.buffers["exp_avg_sq"];
    if (!m.defined()) m = zeros(p.sizes(), p.dtype(), p.device());
    if (!v.defined()) v = zeros(p.sizes(), p.dtype(), p.device());
    ms.push_back(m);
    vs.push_back(v);
    args.push_back(adam_step_args(g, ++state.step, decoupled_));
  }
  cuda_kernel<void(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                   const std::vector<Tensor>&, const std::vector<AdamStepArgs>&)>("multi_tensor_adam")(ps, gs, ms, vs,
                                                                                               args);
  return true;
}

// ---- helpers -------------------------------------------------------------------

std::vector<ParamGroupSpec> param_groups_no_decay_1d(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                                     double weight_decay) {
  std::vector<ParamGroupSpec> groups(2);
  groups[0].weight_decay = weight_decay;
  groups[1].weight_decay = 0.0;
  for (const auto& [name, p] : named_params) {
    ParamGroupSpec& g = groups[p.dim() >= 2 ? 0 : 1];
    g.params.push_back(p);
    g.names.push_back(name);
  }
  return groups;
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  DIMIX_CHECK(max_norm > 0, "clip_grad_norm_: expected max_norm > 0, got ", max_norm);
  NoGradGuard no_grad;
  // Sums of squares in double over fixed blocks, added in block order: the
  // norm does not depend on the thread count.
  constexpr int64_t kBlock = 4096;
  double total_sq = 0;
  Tensor device_sq;  // running f64 sum for CUDA gradients (one sync at the end)
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    DIMIX_CHECK(is_floating(g.dtype()), "clip_grad_norm_: expected floating gradients, got ",
                dtype_name(g.dtype()), " ", g.shape_str());
    if (g.device().is_cuda()) {
      Tensor s = cast_raw(sum(square(g)), DType::f64);
      device_sq = device_sq.defined() ? add(device_sq, s) : s;
      grads.push_back(g);
      continue;
    }
    if (!g.is_contiguous()) {  // scaled in place below, so give it a flat buffer
      g = g.contiguous_raw();
      p.set_grad(g);
    }
    grads.push_back(g);
    const int64_t n = g.numel();
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(blocks, 0.0);
    dispatch_float(g.dtype(), "clip_grad_norm_", [&]<class T>() {
      const T* G = g.data<T>();
      parallel_for(0, blocks, 4, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          double acc = 0;
          const int64_t end = std::min(n, (k + 1) * kBlock);
          for (int64_t i = k * kBlock; i < end; ++i) acc += static_cast<double>(G[i]) * static_cast<double>(G[i]);
          partial[k] = acc;
        }
      });
    });
    for (double v : partial) total_sq += v;
  }
  if (device_sq.defined()) total_sq += device_sq.item();
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (!std::isfinite(total) || !(coef < 1.0)) return total;
  for (const Tensor& g : grads) {
    if (g.device().is_cuda()) {
      copy_(g, mul(g, coef));
      continue;
    }
    dispatch_float(g.dtype(), "clip_grad_norm_", [&]<class T>() {
      T* G = g.data<T>();
      const T c = static_cast<T>(coef);
      parallel_for(0, g.numel(), kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) G[i] = G[i] * c;
      });
    });
  }
  return total;
}

}  // namespace dimix
