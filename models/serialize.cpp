// Module state dicts and checkpoints (see serialize.h).
#include "models/serialize.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "autograd/node.h"

namespace dimix {

namespace {

const std::string kModel = "model.", kOptim = "optim.", kExtra = "extra.";
const std::string kOptimType = "optim.type";

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

// Every destination/source pair of a load, checked; nothing copied yet.
using LoadPlan = std::vector<std::pair<Tensor, Tensor>>;

LoadPlan plan_module_load(const Module& module, const NamedTensors& state, bool strict, const std::string& source) {
  const NamedTensors expected = module_state(module);
  std::map<std::string, const Tensor*> given;
  std::vector<std::string> duplicates;
  for (const auto& [name, t] : state)
    if (!given.emplace(name, &t).second) duplicates.push_back(name);

  std::vector<std::string> missing, mismatches;
  std::set<std::string> known;
  LoadPlan plan;
  for (const auto& [name, dst] : expected) {
    known.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    if (!src.defined()) {
      mismatches.push_back("'" + name + "' is undefined in " + source);
      continue;
    }
    if (src.sizes() != dst.sizes())
      mismatches.push_back("shape mismatch for '" + name + "': " + source + " has " + src.shape_str() +
                           ", module has " + dst.shape_str());
    if (src.dtype() != dst.dtype())
      mismatches.push_back("dtype mismatch for '" + name + "': " + source + " has " + dtype_name(src.dtype()) +
                           ", module has " + dtype_name(dst.dtype()));
    if (src.sizes() == dst.sizes() && src.dtype() == dst.dtype()) plan.emplace_back(dst, src);
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : given)
    if (!known.count(name)) unexpected.push_back(name);

  std::vector<std::string> problems;
  if (!duplicates.empty()) problems.push_back("duplicate keys [" + join(duplicates) + "]");
  if (strict && !missing.empty()) problems.push_back("missing keys [" + join(missing) + "]");
  if (strict && !unexpected.empty()) problems.push_back("unexpected keys [" + join(unexpected) + "]");
  problems.insert(problems.end(), mismatches.begin(), mismatches.end());
  if (!problems.empty()) {
    std::string msg = "load_module: " + source + " does not match the module (" + std::to_string(problems.size()) +
                      (problems.size() == 1 ? " problem): " : " problems): ");
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg);
  }
  return plan;
}

void apply_plan(const LoadPlan& plan) {
  NoGradGuard no_grad;
  for (const auto& [dst, src] : plan) {
    if (dst.numel() == 0) continue;
    // Across devices copy_ needs contiguous operands: move first, then copy on the device.
    const Tensor s = dst.device() == src.device() ? src : to_device_raw(src.contiguous_raw(), dst.device());
    copy_(dst, s);
  }
}

std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);  // 17 significant digits round-trip every double
  return buf;
}

double parse_exact(const std::string& s, const std::string& key, const std::string& path) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  DIMIX_CHECK(!s.empty() && end == s.c_str() + s.size() && errno != ERANGE, "load_checkpoint: ", path,
              ": metadata '", key, "' is not a number: \"", s, "\"");
  return v;
}

}  // namespace

NamedTensors module_state(const Module& module) {
  NamedTensors out = module.named_parameters();
  for (auto& nb : module.named_buffers()) out.push_back(std::move(nb));
  return out;
}

void load_module_state(Module& module, const NamedTensors& state, bool strict, const std::string& source) {
  apply_plan(plan_module_load(module, state, strict, source));
}

void save_module(const Module& module, const std::string& path, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, module_state(module), metadata);
}

std::map<std::string, std::string> load_module(Module& module, const std::string& path, bool strict) {
  SafetensorsContents c = load_safetensors(path);
  load_module_state(module, c.tensors, strict, path);
  return std::move(c.metadata);
}

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     const CheckpointExtras& extras) {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
  metadata["dimix.checkpoint"] = "1";
  for (const auto& [name, t] : module_state(model)) tensors.emplace_back(kModel + name, t);
  if (optimizer) {
    const OptimizerState s = optimizer->state_dict();
    metadata[kOptimType] = s.type;
    for (const auto& [k, v] : s.scalars) metadata[kOptim + k] = exact(v);
    for (const auto& [k, t] : s.tensors) tensors.emplace_back(kOptim + k, t);
  }
  for (const auto& [name, t] : extras.tensors) tensors.emplace_back(kExtra + name, t);
  for (const auto& [k, v] : extras.metadata) metadata[kExtra + k] = v;
  save_safetensors(path, tensors, metadata);
}

CheckpointExtras load_checkpoint(const std::string& path, Module& model, Optimizer* optimizer, bool strict) {
  const SafetensorsContents c = load_safetensors(path);
  NamedTensors model_state;
  OptimizerState optim_state;
  CheckpointExtras extras;
  std::vector<std::string> strays;
  for (const auto& [name, t] : c.tensors) {
    if (starts_with(name, kModel)) model_state.emplace_back(name.substr(kModel.size()), t);
    else if (starts_with(name, kOptim)) optim_state.tensors[name.substr(kOptim.size())] = t;
    else if (starts_with(name, kExtra)) extras.tensors.emplace_back(name.substr(kExtra.size()), t);
    else strays.push_back(name);
  }
  DIMIX_CHECK(!strict || strays.empty(), "load_checkpoint: ", path, ": tensors outside model./optim./extra.: [",
              join(strays), "]");
  for (const auto& [k, v] : c.metadata) {
    if (k == kOptimType) optim_state.type = v;
    else if (starts_with(k, kOptim)) optim_state.scalars[k.substr(kOptim.size())] = parse_exact(v, k, path);
    else if (starts_with(k, kExtra)) extras.metadata[k.substr(kExtra.size())] = v;
  }

  // Check everything before changing anything: model plan, then the
  // optimizer (whose load is all-or-nothing), then the model copy.
  const LoadPlan plan = plan_module_load(model, model_state, strict, path);
  if (optimizer) {
    DIMIX_CHECK(c.metadata.count(kOptimType), "load_checkpoint: ", path, " holds no optimizer state");
    try {
      optimizer->load_state_dict(optim_state);
    } catch (const Error& e) {
      throw Error("load_checkpoint: " + path + ": " + e.what());
    }
  }
  apply_plan(plan);
  return extras;
}

}  // namespace dimix
