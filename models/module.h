// Module: the base of every layer, mixer and network.
//
// A module owns named parameters (trainable leaves), buffers (non-trainable
// state) and submodules, registered in construction order so names are stable:
// "blocks.3.token_mlp.fc1.weight". Parameters are ordinary tensors with
// requires_grad; the optimizer sees them through parameters().
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dimix {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter / buffer of this module and its submodules, depth first,
  // with dotted names.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  // train/eval switch (dropout and friends read is_training()).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter and buffer to a device (keeping requires_grad).
  void to(Device device);

  void zero_grad();

  // Short type name for printing ("Linear").
  virtual std::string type_name() const { return "Module"; }
  // Indented tree of submodules with their parameter counts.
  std::string summary() const;

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const;
  void summary_into(std::string& out, const std::string& name, int depth) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace dimix
