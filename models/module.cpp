// Module (see module.h).
#include "models/module.h"

#include <sstream>

#include "autograd/node.h"

namespace dimix {

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  for (auto& [n, p] : params_) DIMIX_CHECK(n != name, type_name(), ": parameter '", name, "' registered twice");
  if (!t.requires_grad()) t.set_requires_grad(true);
  t.impl().name = name;
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, t] : params ? params_ : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, out);
  return out;
}
std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, out);
  return out;
}
std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}
int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::to(Device device) {
  // Moves in place: every holder of a parameter handle (layers keep their own
  // copies, e.g. Linear::weight) sees the new device, so the TensorImpl keeps
  // its identity and only its storage changes.
  NoGradGuard ng;
  auto move = [&](const Tensor& t) {
    if (t.device() == device) return;
    const Tensor moved = to_device_raw(t.contiguous_raw(), device);
    TensorImpl& impl = t.impl();
    impl.storage = moved.storage();
    impl.strides = moved.strides();
    impl.offset = moved.offset();
    impl.grad.reset();
  };
  for (auto& [n, p] : params_) move(p);
  for (auto& [n, b] : buffers_) move(b);
  for (auto& [n, m] : children_) m->to(device);
}

void Module::zero_grad() {
  for (auto& [n, p] : named_parameters()) p.zero_grad();
}

void Module::summary_into(std::string& out, const std::string& name, int depth) const {
  int64_t own = 0;
  for (auto& [n, p] : params_) own += p.numel();
  std::ostringstream os;
  os << std::string(depth * 2, ' ') << (name.empty() ? "" : name + ": ") << type_name() << " ("
     << num_parameters() << " params)\n";
  out += os.str();
  for (const auto& [n, m] : children_) m->summary_into(out, n, depth + 1);
}

std::string Module::summary() const {
  std::string out;
  summary_into(out, "", 0);
  return out;
}

}  // namespace dimix
