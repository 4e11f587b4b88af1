// The autograd graph: one Node per recorded op output.
//
// Define-by-run: when an op runs with grad mode on and any input requires
// grad, it calls `record(out, name, inputs, backward)`. The Node keeps an edge
// per input (the input's own Node, or the leaf tensor to accumulate into) and
// the backward closure, written right beside the forward in the op's file.
// The closure captures what backward needs (saved tensors, statistics) and is
// dropped after it runs unless the graph is retained, which frees them.
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dimix::autograd {

// dL/d(output) -> dL/d(input_i) for each input, in order. An undefined Tensor
// means "no gradient" for that input (the engine skips it).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Edge {
  std::shared_ptr<Node> fn;          // non-leaf input: its producer
  std::shared_ptr<TensorImpl> leaf;  // leaf input requiring grad
  bool active() const { return fn != nullptr || leaf != nullptr; }
};

struct Node {
  std::string name;
  std::vector<Edge> inputs;
  BackwardFn backward;
  Shape out_sizes;  // to check incoming gradient shapes
  DType out_dtype = DType::f32;
  bool released = false;
};

// Thread-local switch; NoGradGuard turns recording off in a scope.
struct GradMode {
  static bool enabled();
  static void set_enabled(bool e);
};

class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and some input requires grad: the op must record.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Gradient accumulation (a + b, same shape). autograd/ provides a CPU version;
// ops/ installs its device-dispatching add at start-up.
using AccumulateFn = Tensor (*)(const Tensor&, const Tensor&);
void set_accumulate_fn(AccumulateFn fn);

// Attaches a Node to `out` (which must be a fresh op output).
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);

}  // namespace dimix::autograd

namespace dimix {
using autograd::NoGradGuard;

// Backpropagates from `root`. A scalar root may omit `grad` (it is taken as 1);
// any other root needs an explicit gradient of its shape. Leaves accumulate
// into .grad. The graph's saved tensors are freed unless `retain_graph`.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// d(outputs)/d(inputs) without touching .grad: returns one gradient per input
// (undefined where an input does not influence the output).
std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs,
                         const Tensor& grad_output = Tensor(), bool retain_graph = false);
}  // namespace dimix
