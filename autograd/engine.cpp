// The backward engine: reverse topological walk from the root (see node.h).
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "core/strided.h"

namespace dimix::autograd {

namespace {
thread_local bool grad_enabled = true;

// Same-shape addition for gradient accumulation on the CPU. ops/ replaces it
// with its device-dispatching add (autograd sits below ops and cannot call it).
Tensor cpu_add(const Tensor& a, const Tensor& b) {
  DIMIX_CHECK(a.device().is_cpu() && b.device().is_cpu(), "gradient accumulation: non-CPU tensors need ops/");
  Tensor out = empty(a.sizes(), a.dtype());
  dispatch_float(a.dtype(), "gradient accumulation", [&]<class T>() {
    const Tensor bb = cast_raw(b, a.dtype());
    const T* pa = static_cast<const T*>(a.storage()->data()) + a.offset();
    const T* pb = static_cast<const T*>(bb.storage()->data()) + bb.offset();
    T* po = out.data<T>();
    strided_apply<3>(a.sizes(), {&out.strides(), &a.strides(), &bb.strides()},
                     [&](const std::array<int64_t, 3>& o, const std::array<int64_t, 3>& st, int64_t n) {
                       for (int64_t i = 0; i < n; ++i) po[o[0] + i * st[0]] = pa[o[1] + i * st[1]] + pb[o[2] + i * st[2]];
                     });
  });
  return out;
}
AccumulateFn accumulate_fn = &cpu_add;
}  // namespace

void set_accumulate_fn(AccumulateFn fn) { accumulate_fn = fn; }

bool GradMode::enabled() { return grad_enabled; }
void GradMode::set_enabled(bool e) { grad_enabled = e; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool needs_grad(std::initializer_list<Tensor> inputs) { return needs_grad(std::vector<Tensor>(inputs)); }

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->out_sizes = out.sizes();
  node->out_dtype = out.dtype();
  node->backward = std::move(backward);
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) e.fn = t.grad_fn();
      else e.leaf = t.impl_ptr();
    }
    node->inputs.push_back(std::move(e));
  }
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
}

namespace {

// Adds g into an accumulator slot (a fresh tensor; never in place on g, which
// may alias a saved tensor).
void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) slot = g;
  else slot = accumulate_fn(slot, g);
}

struct Walk {
  std::vector<Node*> order;  // topological: producers after consumers
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;
};

Walk topo_order(const std::shared_ptr<Node>& root) {
  Walk w;
  std::unordered_set<Node*> seen;
  // iterative DFS post-order, then reverse
  std::vector<std::pair<Node*, size_t>> stack;
  stack.push_back({root.get(), 0});
  seen.insert(root.get());
  w.keep[root.get()] = root;
  std::vector<Node*> post;
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (i < n->inputs.size()) {
      const auto& fn = n->inputs[i++].fn;
      if (fn && !seen.count(fn.get())) {
        seen.insert(fn.get());
        w.keep[fn.get()] = fn;
        stack.push_back({fn.get(), 0});
      }
    } else {
      post.push_back(n);
      stack.pop_back();
    }
  }
  w.order.assign(post.rbegin(), post.rend());
  return w;
}

// Runs the graph. If `capture` is non-null, gradients reaching those leaves
// (or non-leaf outputs, keyed by impl) go there instead of into .grad.
void run_backward(const Tensor& root, const Tensor& grad_root, bool retain_graph,
                  std::unordered_map<TensorImpl*, Tensor>* capture,
                  const std::unordered_map<Node*, TensorImpl*>* capture_nodes) {
  DIMIX_CHECK(root.requires_grad(), "backward: the tensor does not require grad and has no grad_fn");
  Tensor g0 = grad_root;
  if (!g0.defined()) {
    DIMIX_CHECK(root.numel() == 1, "backward: a gradient can be implied only for a scalar output; got shape ",
                root.shape_str(), " (pass grad explicitly)");
    g0 = ones(root.sizes(), root.dtype(), root.device());
  } else {
    DIMIX_CHECK(g0.sizes() == root.sizes(), "backward: gradient shape ", g0.shape_str(),
                " does not match output shape ", root.shape_str());
  }
  NoGradGuard no_grad;
  if (!root.grad_fn()) {  // a leaf
    if (capture) accumulate((*capture)[root.impl_ptr().get()], g0);
    else { Tensor acc = root.grad(); accumulate(acc, g0.contiguous_raw()); root.set_grad(acc); }
    return;
  }
  Walk w = topo_order(root.grad_fn());
  std::unordered_map<Node*, Tensor> pending;
  pending[root.grad_fn().get()] = g0;
  for (Node* n : w.order) {
    auto it = pending.find(n);
    if (it == pending.end()) continue;
    Tensor g = std::move(it->second);
    pending.erase(it);
    if (capture_nodes) {
      auto c = capture_nodes->find(n);
      if (c != capture_nodes->end()) accumulate((*capture)[c->second], g);
    }
    DIMIX_CHECK(!n->released, "backward: trying to backward through the graph a second time (op '", n->name,
                "'); its saved tensors were freed. Pass retain_graph=true to the first backward.");
    std::vector<Tensor> grads = n->backward(g);
    DIMIX_CHECK(grads.size() == n->inputs.size(), "backward of '", n->name, "' returned ", grads.size(),
                " gradients for ", n->inputs.size(), " inputs");
    if (!retain_graph) {
      n->backward = nullptr;
      n->released = true;
    }
    for (size_t i = 0; i < grads.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (!e.active() || !grads[i].defined()) continue;
      if (e.fn) {
        DIMIX_CHECK(grads[i].sizes() == e.fn->out_sizes, "backward of '", n->name, "': gradient for input ", i,
                    " has shape ", grads[i].shape_str(), ", expected ", shape_str(e.fn->out_sizes));
        accumulate(pending[e.fn.get()], grads[i]);
      } else {
        const Tensor leaf(e.leaf);
        DIMIX_CHECK(grads[i].sizes() == leaf.sizes(), "backward of '", n->name, "': gradient for input ", i,
                    " has shape ", grads[i].shape_str(), ", expected ", leaf.shape_str());
        if (capture) {
          auto c = capture->find(e.leaf.get());
          if (c != capture->end()) accumulate(c->second, grads[i]);
        } else {
          // Leaf gradients are stored contiguous: optimizers read them flat.
          Tensor acc = leaf.grad();
          accumulate(acc, grads[i].contiguous_raw());
          leaf.set_grad(acc);
        }
      }
    }
  }
}

}  // namespace
}  // namespace dimix::autograd

namespace dimix {

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  autograd::run_backward(root, grad, retain_graph, nullptr, nullptr);
}

std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs, const Tensor& grad_output,
                         bool retain_graph) {
  std::unordered_map<TensorImpl*, Tensor> capture;
  std::unordered_map<autograd::Node*, TensorImpl*> capture_nodes;
  for (const Tensor& t : inputs) {
    DIMIX_CHECK(t.requires_grad(), "grad: every input must require grad");
    capture[t.impl_ptr().get()] = Tensor();
    if (t.grad_fn()) capture_nodes[t.grad_fn().get()] = t.impl_ptr().get();
  }
  autograd::run_backward(output, grad_output, retain_graph, &capture, &capture_nodes);
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) out.push_back(capture[t.impl_ptr().get()]);
  return out;
}

}  // namespace dimix
