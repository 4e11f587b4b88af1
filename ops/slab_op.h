// slab::apply: a slab op's call on the CPU, after its own checks. It is
// the part every fused block op (block_mlp, block_chain) shares: the view
// of x around the mixed dim, the driver's forward (slab.h) with the norm's
// statistics saved when a gradient will be needed, and the autograd record
// whose backward runs the driver's backward and hands out the parameter
// gradients.
//
// An op brings its parameters and a body factory:
//  - params: its parameter tensors in the order of its body's gradient
//    sums, undefined where absent (a level without bias);
//  - sum_shapes: the shape of each one's slot in the sums, undefined or not
//    (the body keeps a slot for every one);
//  - make_body: a copyable generic callable
//      <class T>(const std::vector<Tensor>& params, const std::vector<bool>& want) -> Body
//    that builds the op's slab::Body (slab.h) from the parameters made
//    contiguous, want[i] saying whether params[i]'s gradient is wanted (all
//    false in the forward). It is kept in the backward's closure, so what it
//    captures must be values.
// The autograd inputs are x, the params, then the norm's weight and bias.
#pragma once
#include <utility>
#include <vector>

#include "ops/block_linear.h"
#include "ops/common.h"
#include "ops/slab.h"

namespace dimix::slab {

// The checks a slab op starts with: x floating point with at least one dim,
// dim in range. Returns dim in [0, x.dim()).
inline int64_t mixed_dim(const char* op, const Tensor& x, int64_t dim) {
  check_floating(op, x);
  DIMIX_CHECK(x.dim() >= 1, op, ": expected x with at least one dim, got ", x.shape_str());
  return normalize_dim(dim, x.dim(), op);
}

template <class MakeBody>
Tensor apply(const char* op, const Tensor& x, int64_t dim, int64_t n_out, int64_t tile_w,
             const std::vector<Tensor>& params, const std::vector<Shape>& sum_shapes, const PreNormResidual& around,
             MakeBody make_body) {
  DIMIX_CHECK(params.size() == sum_shapes.size(), op, ": ", params.size(), " parameters but ", sum_shapes.size(),
              " gradient shapes");
  const Tensor x3 = view_around_dim(x, dim);
  const Shape shape3 = x3.sizes(), y_shape3 = {shape3[0], n_out, shape3[2]};
  const Geometry geo(x3, n_out, tile_w);
  std::vector<Tensor> raw;  // the parameters, contiguous
  for (const Tensor& p : params) raw.push_back(p.defined() ? p.contiguous_raw() : Tensor());
  const PreNormResidual ar = contiguous_around(around);
  std::vector<Tensor> inputs = {x};
  inputs.insert(inputs.end(), params.begin(), params.end());
  inputs.insert(inputs.end(), {around.weight, around.bias});
  const bool grad = needs_grad(inputs);

  const Tensor y3 = empty(y_shape3, x.dtype());
  Tensor stats;  // the norm's statistics, saved for the backward
  dispatch_float(x.dtype(), op, [&]<class T>() {
    const auto body = make_body.template operator()<T>(raw, std::vector<bool>(raw.size(), false));
    const Around<T> a = around_of<T>(ar, x.sizes().back());
    if (grad && a.norm) stats = empty({a.saved_stats(geo)}, x.dtype());
    forward(body, geo, x3.data<T>(), y3.data<T>(), a, stats.defined() ? stats.data<T>() : nullptr);
  });
  Shape y_shape = x.sizes();
  y_shape[dim] = n_out;
  Tensor y = y3.as_strided(y_shape, contiguous_strides(y_shape), 0);
  if (!grad) return y;

  std::vector<bool> wanted;
  for (const Tensor& t : inputs) wanted.push_back(t.defined() && t.requires_grad());
  std::vector<Tensor> saved;  // the parameters, detached
  for (const Tensor& p : raw) saved.push_back(p.defined() ? p.detach() : Tensor());
  std::vector<Shape> shapes = sum_shapes;  // the sums: the body's, then the norm's dw | db
  if (ar.norm) shapes.insert(shapes.end(), {{x.sizes().back()}, {x.sizes().back()}});
  record(y, op, inputs,
         [=, sx = x3.detach(), saved_ar = contiguous_around(around, true), in_shape = x.sizes()](
             const Tensor& g) -> std::vector<Tensor> {
           const Tensor gc = g.contiguous_raw();
           const Tensor dy3 = gc.as_strided(y_shape3, contiguous_strides(y_shape3), gc.offset());
           const DType t = sx.dtype();
           const size_t np = saved.size(), nw = wanted.size();
           std::vector<Tensor> grads(nw);
           if (wanted[0]) grads[0] = empty(shape3, t);
           dispatch_float(t, op, [&]<class T>() {
             const auto body =
                 make_body.template operator()<T>(saved, std::vector<bool>(wanted.begin() + 1, wanted.begin() + 1 + np));
             const std::vector<T> sums = backward(body, geo, sx.data<T>(), dy3.data<T>(),
                                                  grads[0].defined() ? grads[0].data<T>() : nullptr,
                                                  around_of<T>(saved_ar, in_shape.back()),
                                                  stats.defined() ? stats.data<T>() : nullptr, wanted[nw - 2],
                                                  wanted[nw - 1]);
             take_sums(sums, shapes, 1, wanted, grads, t);
           });
           if (grads[0].defined()) grads[0] = grads[0].as_strided(in_shape, contiguous_strides(in_shape), 0);
           return grads;
         });
  return y;
}

}  // namespace dimix::slab
