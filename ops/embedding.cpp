// embedding (see embedding.h): ids [...] (T tokens in all) pick rows of
// weight [V, D] (V vocabulary, D model dim), giving [..., D]; as
// torch.nn.functional.embedding without padding_idx / max_norm.
//
// The backward adds gradient rows into dweight [V, D]. Repeated ids make
// this a scatter with collisions; instead of atomics, the D columns are split
// into disjoint ranges, one per thread, and each thread walks all tokens in
// order: every dweight element is summed by one thread in token order, so
// the result is bit-identical for any thread count.
//
// CUDA kernels dispatched to (tensors contiguous; ids i64 or i32; the forward
// kernel reports out-of-range ids as a dimix::Error; grad_weight arrives
// zeroed and must be summed deterministically, e.g. over ids sorted first):
//   "embedding_forward"  void(const Tensor& out, const Tensor& ids, const Tensor& weight)
//   "embedding_backward" void(const Tensor& grad_weight, const Tensor& ids, const Tensor& grad_out)
#include "ops/embedding.h"

#include <algorithm>
#include <cstring>

#include "ops/common.h"

namespace dimix {
namespace {

template <class Fn>
void dispatch_ids(const Tensor& ids, Fn&& fn) {
  if (ids.dtype() == DType::i64) fn.template operator()<int64_t>();
  else fn.template operator()<int32_t>();
}

template <class T, class I>
void embedding_forward_cpu(T* out, const I* ids, const T* weight, int64_t n_tok, int64_t V, int64_t D) {
  // Range check first, serially, so the error names the first bad id.
  for (int64_t t = 0; t < n_tok; ++t) {
    const int64_t id = static_cast<int64_t>(ids[t]);
    DIMIX_CHECK(id >= 0 && id < V, "embedding: id ", id, " (position ", t, ") is out of range for a vocabulary of V = ",
                V, " rows");
  }
  parallel_for(0, n_tok, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      std::memcpy(out + t * D, weight + static_cast<int64_t>(ids[t]) * D, static_cast<size_t>(D) * sizeof(T));
  });
}

template <class T, class I>
void embedding_backward_cpu(T* dweight, const I* ids, const T* g, int64_t n_tok, int64_t V, int64_t D) {
  std::fill(dweight, dweight + V * D, T(0));
  // Column ranges of at least 16 (a cache line of f32) per thread.
  const int64_t col_grain = n_tok * D < 32768 ? D : 16;
  parallel_for(0, D, col_grain, [&](int64_t c0, int64_t c1) {
    const int64_t w = c1 - c0;
    for (int64_t t = 0; t < n_tok; ++t) {
      T* __restrict dst = dweight + static_cast<int64_t>(ids[t]) * D + c0;
      const T* __restrict src = g + t * D + c0;
      for (int64_t j = 0; j < w; ++j) dst[j] += src[j];
    }
  });
}

}  // namespace

Tensor embedding(const Tensor& ids_in, const Tensor& weight_in) {
  DIMIX_CHECK(ids_in.dtype() == DType::i64 || ids_in.dtype() == DType::i32,
              "embedding: expected integer ids (i64 or i32), got ", dtype_name(ids_in.dtype()), " ",
              ids_in.shape_str());
  DIMIX_CHECK(weight_in.dim() == 2, "embedding: expected weight [V, D], got shape ", weight_in.shape_str());
  check_floating("embedding", weight_in);
  check_same_device("embedding", ids_in, weight_in);
  const int64_t V = weight_in.sizes()[0], D = weight_in.sizes()[1];
  const Tensor ids = ids_in.contiguous_raw(), weight = weight_in.contiguous_raw();
  const int64_t n_tok = ids.numel();
  Shape out_shape = ids.sizes();
  out_shape.push_back(D);
  Tensor out = empty(out_shape, weight.dtype(), weight.device());
  if (weight.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&)>("embedding_forward")(out, ids, weight);
  } else {
    dispatch_float(weight.dtype(), "embedding", [&]<class T>() {
      dispatch_ids(ids, [&]<class I>() {
        embedding_forward_cpu<T, I>(out.data<T>(), ids.data<I>(), weight.data<T>(), n_tok, V, D);
      });
    });
  }
  if (needs_grad({weight_in})) {
    record(out, "embedding", {ids_in, weight_in}, [ids, V, D, n_tok](const Tensor& g_in) -> std::vector<Tensor> {
      const Tensor g = g_in.contiguous_raw();
      Tensor dweight = empty({V, D}, g.dtype(), g.device());
      if (g.device().is_cuda()) {
        fill_(dweight, 0);
        cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&)>("embedding_backward")(dweight, ids, g);
      } else {
        dispatch_float(g.dtype(), "embedding", [&]<class T>() {
          dispatch_ids(ids, [&]<class I>() {
            embedding_backward_cpu<T, I>(dweight.data<T>(), ids.data<I>(), g.data<T>(), n_tok, V, D);
          });
        });
      }
      return {Tensor(), dweight};
    });
  }
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"embedding/repeated_ids_2d", [](Generator& g, DType t) {
       return std::vector{from_vector<int64_t>({1, 3, 1, 0, 4, 1}, {2, 3}), randn_input(g, {5, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); }},
    {"embedding/i32_noncontig_weight", [](Generator& g, DType t) {
       return std::vector{index_input(g, {7}, 6, DType::i32), noncontig_input(g, {6, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); }},
    {"embedding/scalar_id_d1", [](Generator& g, DType t) {
       return std::vector{from_vector<int64_t>({2}, {}), randn_input(g, {3, 1}, t)}; },
     [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); }},
});

}  // namespace dimix
