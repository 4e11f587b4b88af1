// Moving tensors between devices, recorded by autograd.
//
// to(x, device): a copy of x on `device` (x itself when it is already
// there, as torch's Tensor.to). The backward moves the gradient back to x's
// device, so a graph may cross devices (e.g. loss computed on the CPU from
// GPU logits). Host memory used for the transfer is pinned staging
// (cuda/runtime.cu). Any shape, dtype and strides; the copy is contiguous.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor to(const Tensor& x, Device device);

}  // namespace dimix
