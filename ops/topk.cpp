// topk_indices (see topk.h). Every row is made contiguous (the reduced dim
// moved last), then a partial sort of the row's positions under a strict
// total order (value, then position) picks and orders the k winners in
// O(L log k); the order being total is what makes ties deterministic.
//
// CUDA kernel dispatched to (x contiguous [R, L], out contiguous [R, k] int64):
//   "topk_indices"  void(const Tensor& out, const Tensor& x, int64_t k, bool largest)
#include "ops/topk.h"

#include <algorithm>
#include <numeric>

#include "ops/common.h"

namespace dimix {
namespace {

template <class T>
void topk_rows_cpu(const T* x, int64_t* out, int64_t rows, int64_t L, int64_t k, bool largest) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> pos(static_cast<size_t>(L));
    for (int64_t r = b; r < e; ++r) {
      const T* row = x + r * L;
      std::iota(pos.begin(), pos.end(), int64_t{0});
      // NaN ranks above every number (torch): first when largest, last otherwise.
      auto before = [row, largest](int64_t i, int64_t j) {
        const T a = row[i], c = row[j];
        const bool na = std::isnan(a), nc = std::isnan(c);
        if (na != nc) return largest ? na : nc;
        if (na || a == c) return i < j;
        return largest ? a > c : a < c;
      };
      std::partial_sort(pos.begin(), pos.begin() + k, pos.end(), before);
      std::copy(pos.begin(), pos.begin() + k, out + r * k);
    }
  });
}

}  // namespace

Tensor topk_indices(const Tensor& x_in, int64_t k, int64_t dim_in, bool largest) {
  check_floating("topk_indices", x_in);
  DIMIX_CHECK(x_in.dim() >= 1, "topk_indices: expected a tensor with at least one dim, got a 0-d tensor");
  const int64_t dim = normalize_dim(dim_in, x_in.dim(), "topk_indices");
  const int64_t L = x_in.size(dim);
  DIMIX_CHECK(k >= 0 && k <= L, "topk_indices: k = ", k, " is outside [0, ", L, "] for dim ", dim, " of ",
              x_in.shape_str());
  // Move `dim` last (a raw view: the op records nothing) so rows are contiguous.
  const int64_t last = x_in.dim() - 1;
  Shape sizes = x_in.sizes(), strides = x_in.strides();
  std::swap(sizes[dim], sizes[last]);
  std::swap(strides[dim], strides[last]);
  const Tensor x = x_in.as_strided(sizes, strides, x_in.offset()).contiguous_raw();
  Shape out_sizes = sizes;
  out_sizes[last] = k;
  Tensor out = empty(out_sizes, DType::i64, x.device());
  const int64_t rows = L > 0 ? x.numel() / L : 0;
  if (x.device().is_cuda()) {
    if (rows > 0 && k > 0)
      cuda_kernel<void(const Tensor&, const Tensor&, int64_t, bool)>("topk_indices")(out, x, k, largest);
  } else if (rows > 0 && k > 0) {
    dispatch_float(x.dtype(), "topk_indices", [&]<class T>() {
      topk_rows_cpu<T>(x.data<T>(), out.data<int64_t>(), rows, L, k, largest);
    });
  }
  if (dim == last) return out;
  Shape back = out.strides();
  std::swap(out_sizes[dim], out_sizes[last]);
  std::swap(back[dim], back[last]);
  return out.as_strided(out_sizes, back, 0).contiguous_raw();
}

// Not differentiable: the cases exist for CUDA parity of the chosen indices.
DIMIX_REGISTER_OP_CASES({
    {"topk_indices/lastdim_odd", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 11}, t, false)}; },
     [](const std::vector<Tensor>& x) { return topk_indices(x[0], 4); }, {}, 0.0, false},
    {"topk_indices/smallest_middle_dim", [](Generator& g, DType t) { return std::vector{randn_input(g, {2, 7, 3}, t, false)}; },
     [](const std::vector<Tensor>& x) { return topk_indices(x[0], 3, 1, false); }, {}, 0.0, false},
    {"topk_indices/noncontig_all", [](Generator& g, DType t) { return std::vector{noncontig_input(g, {5, 6}, t, false)}; },
     [](const std::vector<Tensor>& x) { return topk_indices(x[0], 6, -1); }, {}, 0.0, false},
    {"topk_indices/k1_size1_row", [](Generator& g, DType t) { return std::vector{randn_input(g, {4, 1}, t, false)}; },
     [](const std::vector<Tensor>& x) { return topk_indices(x[0], 1); }, {}, 0.0, false},
});

}  // namespace dimix
