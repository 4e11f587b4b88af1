// Non-overlapping patches (see patches.h): x [N, C, H, W] <-> cols
// [N, C*p*p, L] with L = Hp * Wp, Hp = H/p, Wp = W/p, as torch.nn.Unfold /
// Fold with kernel_size = stride = p:
//   cols[n, c*p*p + ki*p + kj, ph*Wp + pw] = x[n, c, ph*p + ki, pw*p + kj]
// A pure permutation of elements, so unfold and fold are each other's
// inverse and adjoint: each op's backward is the other op on the gradient.
// Both CPU loops write one contiguous cols row (Hp*Wp elements) per
// (n, c, ki, kj), reading or writing x through its strides (no copy for
// non-contiguous inputs).
//
// CUDA kernels dispatched to (tensors contiguous):
//   "unfold_patches" void(const Tensor& cols, const Tensor& x, int64_t p)
//   "fold_patches"   void(const Tensor& x, const Tensor& cols, int64_t p)
#include "ops/patches.h"

#include <algorithm>

#include "ops/common.h"

namespace dimix {
namespace {

struct PatchGeometry {
  int64_t N, C, H, W, p, Hp, Wp;
};

// Unfold (ToCols) or fold (!ToCols) between x (any strides) and cols (any strides).
template <class T, bool ToCols>
void patches_cpu(const Tensor& x, const Tensor& cols, const PatchGeometry& g) {
  T* px = static_cast<T*>(x.storage()->data()) + x.offset();
  T* pc = static_cast<T*>(cols.storage()->data()) + cols.offset();
  const int64_t sxn = x.strides()[0], sxc = x.strides()[1], sxh = x.strides()[2], sxw = x.strides()[3];
  const int64_t scn = cols.strides()[0], scf = cols.strides()[1], scl = cols.strides()[2];
  const int64_t pp = g.p * g.p, rows = g.N * g.C * pp, L = g.Hp * g.Wp;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / (g.C * pp), f = r % (g.C * pp);
      const int64_t c = f / pp, ki = (f % pp) / g.p, kj = f % g.p;
      T* xb = px + n * sxn + c * sxc + ki * sxh + kj * sxw;
      T* cb = pc + n * scn + f * scf;
      for (int64_t ph = 0; ph < g.Hp; ++ph) {
        T* xr = xb + ph * g.p * sxh;
        T* cr = cb + ph * g.Wp * scl;
        const int64_t step = g.p * sxw;
        if constexpr (ToCols) for (int64_t pw = 0; pw < g.Wp; ++pw) cr[pw * scl] = xr[pw * step];
        else for (int64_t pw = 0; pw < g.Wp; ++pw) xr[pw * step] = cr[pw * scl];
      }
    }
  });
}

Tensor unfold_raw(const Tensor& x, const PatchGeometry& g) {
  Tensor cols = empty({g.N, g.C * g.p * g.p, g.Hp * g.Wp}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t)>("unfold_patches")(cols, x.contiguous_raw(), g.p);
    return cols;
  }
  dispatch_float(x.dtype(), "unfold_patches", [&]<class T>() { patches_cpu<T, true>(x, cols, g); });
  return cols;
}

Tensor fold_raw(const Tensor& cols, const PatchGeometry& g) {
  Tensor x = empty({g.N, g.C, g.H, g.W}, cols.dtype(), cols.device());
  if (cols.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, int64_t)>("fold_patches")(x, cols.contiguous_raw(), g.p);
    return x;
  }
  dispatch_float(cols.dtype(), "fold_patches", [&]<class T>() { patches_cpu<T, false>(x, cols, g); });
  return x;
}

PatchGeometry geometry(const char* op, int64_t N, int64_t C, int64_t H, int64_t W, int64_t p) {
  DIMIX_CHECK(p >= 1, op, ": patch size p must be >= 1, got ", p);
  DIMIX_CHECK(H % p == 0 && W % p == 0, op, ": H = ", H, " and W = ", W, " must be multiples of p = ", p);
  return {N, C, H, W, p, H / p, W / p};
}

}  // namespace

Tensor unfold_patches(const Tensor& x, int64_t p) {
  check_floating("unfold_patches", x);
  DIMIX_CHECK(x.dim() == 4, "unfold_patches: expected x [N, C, H, W], got shape ", x.shape_str());
  const PatchGeometry g = geometry("unfold_patches", x.sizes()[0], x.sizes()[1], x.sizes()[2], x.sizes()[3], p);
  Tensor cols = unfold_raw(x, g);
  if (needs_grad({x}))
    record(cols, "unfold_patches", {x}, [g](const Tensor& grad) -> std::vector<Tensor> { return {fold_raw(grad, g)}; });
  return cols;
}

Tensor fold_patches(const Tensor& cols, int64_t H, int64_t W, int64_t p) {
  check_floating("fold_patches", cols);
  DIMIX_CHECK(cols.dim() == 3, "fold_patches: expected cols [N, C*p*p, L], got shape ", cols.shape_str());
  DIMIX_CHECK(p >= 1, "fold_patches: patch size p must be >= 1, got ", p);
  const int64_t features = cols.sizes()[1];
  DIMIX_CHECK(features % (p * p) == 0, "fold_patches: cols ", cols.shape_str(), " dim 1 (", features,
              ") is not a multiple of p*p = ", p * p);
  const PatchGeometry g = geometry("fold_patches", cols.sizes()[0], features / (p * p), H, W, p);
  DIMIX_CHECK(cols.sizes()[2] == g.Hp * g.Wp, "fold_patches: cols ", cols.shape_str(), " has L = ", cols.sizes()[2],
              " patches, but H = ", H, ", W = ", W, ", p = ", p, " give ", g.Hp * g.Wp);
  Tensor x = fold_raw(cols, g);
  if (needs_grad({cols}))
    record(x, "fold_patches", {cols}, [g](const Tensor& grad) -> std::vector<Tensor> { return {unfold_raw(grad, g)}; });
  return x;
}

DIMIX_REGISTER_OP_CASES({
    {"unfold_patches/p2", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 3, 4, 6}, t)}; },
     [](const std::vector<Tensor>& x) { return unfold_patches(x[0], 2); }},
    {"unfold_patches/p3_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {1, 2, 6, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return unfold_patches(x[0], 3); }},
    {"unfold_patches/p1", [](Generator& g, DType t) { return std::vector{randn_input(g, {1, 1, 3, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return unfold_patches(x[0], 1); }},
    {"fold_patches/p2", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 12, 6}, t)}; },
     [](const std::vector<Tensor>& x) { return fold_patches(x[0], 4, 6, 2); }},
    {"fold_patches/p3_noncontig", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {1, 9, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return fold_patches(x[0], 3, 6, 3); }},
});

}  // namespace dimix
