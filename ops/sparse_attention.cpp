// sparse_attention (see sparse_attention.h): CPU forward / backward over the
// kept keys of every query row, autograd wiring, CUDA dispatch.
//
// B batch, H heads, N tokens, hd head dim, R = dense_rows, M = N - R sparse
// rows, K keys per sparse row. A dense row is a sparse row whose key list is
// 0..N-1, so one row kernel serves both.
//
// CUDA kernels dispatched to (every tensor contiguous; q, k, v, out, grads
// [B, H, N, hd] of one floating dtype; indices [B, H, M, K] int64, valid:
// the range and distinctness checks run on the CPU only, since checking on
// the GPU would copy the indices back every call; key_keep [B, N] u8 (1 =
// real key) or undefined; probs_dense [B, H, R, N] and probs_sparse
// [B, H, M, K] written by the forward, read by the backward; grad_k and
// grad_v arrive zeroed and are accumulated into):
//   "sparse_attention_forward"  void(const Tensor& out, const Tensor& probs_dense, const Tensor& probs_sparse,
//                                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& indices,
//                                    const Tensor& key_keep, int64_t dense_rows, double scale)
//   "sparse_attention_backward" void(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v,
//                                    const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
//                                    const Tensor& indices, const Tensor& key_keep, const Tensor& probs_dense,
//                                    const Tensor& probs_sparse, int64_t dense_rows, double scale)
#include "ops/sparse_attention.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <numeric>

#include "ops/common.h"
#include "ops/elementwise.h"
#include "ops/vec_math.h"

namespace dimix {
namespace {

constexpr double kMaskedScore = 1e6;  // subtracted from masked keys' scores

using ForwardKernel = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const Tensor&, int64_t, double);
using BackwardKernel = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double);

// Everything one row needs, as raw pointers into contiguous buffers.
template <class T>
struct Layout {
  const T *q, *k, *v;
  const int64_t* indices;  // [B*H, M, K]
  const int64_t* all_keys; // 0..N-1: the key list of a dense row
  const uint8_t* keep;     // [B, N] or null
  T *probs_dense, *probs_sparse;
  int64_t H, N, hd, R, M, K;
  T scale;

  // The key list, its length and the probability slot of row i of head bh.
  const int64_t* keys(int64_t bh, int64_t i) const {
    return i < R ? all_keys : indices + (bh * M + (i - R)) * K;
  }
  int64_t count(int64_t i) const { return i < R ? N : K; }
  T* probs(int64_t bh, int64_t i) const {
    return i < R ? probs_dense + (bh * R + i) * N : probs_sparse + (bh * M + (i - R)) * K;
  }
};

template <class T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// out[j] = x . rows[keys[j]] for j < nk. Four keys at a time: four
// independent accumulator chains hide the FMA latency that a single dot of a
// short head (hd 32..64) cannot.
template <class T>
void gathered_dots(const T* __restrict x, const T* __restrict rows, const int64_t* keys, int64_t nk, int64_t hd,
                   T* __restrict out) {
  int64_t j = 0;
  for (; j + 4 <= nk; j += 4) {
    const T* r0 = rows + keys[j] * hd;
    const T* r1 = rows + keys[j + 1] * hd;
    const T* r2 = rows + keys[j + 2] * hd;
    const T* r3 = rows + keys[j + 3] * hd;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t d = 0; d < hd; ++d) {
      s0 += x[d] * r0[d];
      s1 += x[d] * r1[d];
      s2 += x[d] * r2[d];
      s3 += x[d] * r3[d];
    }
    out[j] = s0;
    out[j + 1] = s1;
    out[j + 2] = s2;
    out[j + 3] = s3;
  }
  for (; j < nk; ++j) out[j] = dot(x, rows + keys[j] * hd, hd);
}

template <class T>
inline void axpy(T alpha, const T* __restrict x, T* __restrict y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];
}

// ---- forward ------------------------------------------------------------------------
template <class T>
void forward_row(const Layout<T>& L, int64_t bh, int64_t i, T* __restrict out) {
  const int64_t hd = L.hd, nk = L.count(i);
  const int64_t* keys = L.keys(bh, i);
  T* p = L.probs(bh, i);
  const T* qi = L.q + (bh * L.N + i) * hd;
  const T* kb = L.k + bh * L.N * hd;
  const T* vb = L.v + bh * L.N * hd;
  const uint8_t* keep = L.keep ? L.keep + (bh / L.H) * L.N : nullptr;
  T* o = out + (bh * L.N + i) * hd;
  std::fill(o, o + hd, T(0));
  if (nk == 0) return;  // no key: the zero row of nan_to_num(softmax(all -inf))
  gathered_dots(qi, kb, keys, nk, hd, p);
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < nk; ++j) {
    T s = L.scale * p[j];
    if (keep && !keep[keys[j]]) s -= T(kMaskedScore);
    p[j] = s;
    m = s > m ? s : m;
  }
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < nk; ++j) {
    const T e = exp_vec(p[j] - m);
    p[j] = e;
    sum += e;
  }
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < nk; ++j) {
    p[j] *= inv;
    axpy(p[j], vb + keys[j] * hd, o, hd);
  }
}

template <class T>
void forward_cpu(const Layout<T>& L, int64_t BH, T* out) {
  const int64_t rows = BH * L.N;
  const int64_t work = std::max<int64_t>(1, L.K * L.hd);
  parallel_for(0, rows, std::max<int64_t>(1, 32768 / work), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) forward_row(L, r / L.N, r % L.N, out);
  });
}

// ---- backward -----------------------------------------------------------------------
// With p the row's probabilities and g its output gradient:
//   dp_j = g.v_j,  ds_j = p_j (dp_j - sum_l p_l dp_l),
//   dq_i = scale sum_j ds_j k_j,  dk_j += scale ds_j q_i,  dv_j += p_j g.
// One (batch, head) per task and its rows in order: the scatter-adds into
// dk, dv of that head are never shared between threads and always summed in
// the same order.
template <class T>
void backward_cpu(const Layout<T>& L, int64_t BH, const T* gout, T* dq, T* dk, T* dv) {
  const int64_t N = L.N, hd = L.hd;
  parallel_for(0, BH, 1, [&](int64_t b, int64_t e) {
    std::vector<T> ds(static_cast<size_t>(std::max<int64_t>(N, L.K)));
    for (int64_t bh = b; bh < e; ++bh) {
      const T* kb = L.k + bh * N * hd;
      const T* vb = L.v + bh * N * hd;
      T* dkb = dk + bh * N * hd;
      T* dvb = dv + bh * N * hd;
      for (int64_t i = 0; i < N; ++i) {
        const int64_t nk = L.count(i);
        const int64_t* keys = L.keys(bh, i);
        const T* p = L.probs(bh, i);
        const T* gi = gout + (bh * N + i) * hd;
        const T* qi = L.q + (bh * N + i) * hd;
        T* dqi = dq + (bh * N + i) * hd;
        std::fill(dqi, dqi + hd, T(0));
        gathered_dots(gi, vb, keys, nk, hd, ds.data());
        T t = 0;
        for (int64_t j = 0; j < nk; ++j) t += p[j] * ds[j];
        for (int64_t j = 0; j < nk; ++j) {
          const T sj = L.scale * p[j] * (ds[j] - t);
          const int64_t key = keys[j];
          axpy(sj, kb + key * hd, dqi, hd);
          axpy(sj, qi, dkb + key * hd, hd);
          axpy(p[j], gi, dvb + key * hd, hd);
        }
      }
    }
  });
}

// Range and distinctness of every index row; Error naming the first bad row.
void check_indices(const Tensor& idx, int64_t N) {
  const int64_t K = idx.size(3);
  const int64_t rows = K > 0 ? idx.numel() / K : 0;
  const int64_t* p = idx.data<int64_t>();
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> seen(static_cast<size_t>(N), -1);  // the last row that used each key
    for (int64_t r = b; r < e; ++r) {
      bool bad = false;
      for (int64_t j = 0; j < K && !bad; ++j) {
        const int64_t key = p[r * K + j];
        bad = key < 0 || key >= N || seen[key] == r;
        if (!bad) seen[key] = r;
      }
      if (bad) {
        int64_t cur = first_bad.load();
        while (r < cur && !first_bad.compare_exchange_weak(cur, r)) {}
        return;
      }
    }
  });
  const int64_t r = first_bad.load();
  if (r == std::numeric_limits<int64_t>::max()) return;
  const int64_t M = idx.size(2), H = idx.size(1);
  std::vector<bool> seen(static_cast<size_t>(N), false);
  for (int64_t j = 0; j < K; ++j) {
    const int64_t key = p[r * K + j];
    DIMIX_CHECK(key >= 0 && key < N, "sparse_attention: index ", key, " at [", r / (H * M), ", ", (r / M) % H, ", ",
                r % M, ", ", j, "] is outside [0, ", N, ")");
    DIMIX_CHECK(!seen[key], "sparse_attention: key ", key, " appears twice in index row [", r / (H * M), ", ",
                (r / M) % H, ", ", r % M, "]; the keys of a row must be distinct");
    seen[key] = true;
  }
}

// The raw view of one call's buffers (every tensor contiguous, on the CPU).
struct Buffers {
  Tensor q, k, v, indices, all_keys, keep, probs_dense, probs_sparse;
  int64_t R = 0;
  double scale = 1;
};

template <class T>
Layout<T> layout_of(const Buffers& b) {
  Layout<T> L;
  L.q = b.q.data<T>();
  L.k = b.k.data<T>();
  L.v = b.v.data<T>();
  L.indices = b.indices.data<int64_t>();
  L.all_keys = b.all_keys.data<int64_t>();
  L.keep = b.keep.defined() ? b.keep.data<uint8_t>() : nullptr;
  L.probs_dense = b.probs_dense.data<T>();
  L.probs_sparse = b.probs_sparse.data<T>();
  L.H = b.q.size(1);
  L.N = b.q.size(2);
  L.hd = b.q.size(3);
  L.R = b.R;
  L.M = L.N - b.R;
  L.K = b.indices.size(3);
  L.scale = static_cast<T>(b.scale);
  return L;
}

}  // namespace

Tensor sparse_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& indices_in,
                        int64_t dense_rows, const Tensor& key_mask, double scale_in) {
  const char* op = "sparse_attention";
  check_floating(op, q_in);
  check_dim(op, q_in, 4, "q [B, H, N, hd]");
  DIMIX_CHECK(k_in.sizes() == q_in.sizes() && v_in.sizes() == q_in.sizes(), op,
              ": q, k, v must share the shape [B, H, N, hd], got q ", q_in.shape_str(), ", k ", k_in.shape_str(), ", v ",
              v_in.shape_str());
  check_same_dtype(op, q_in, k_in);
  check_same_dtype(op, q_in, v_in);
  check_same_device(op, q_in, k_in);
  check_same_device(op, q_in, v_in);
  check_same_device(op, q_in, indices_in);
  const int64_t B = q_in.size(0), H = q_in.size(1), N = q_in.size(2), hd = q_in.size(3);
  DIMIX_CHECK(dense_rows >= 0 && dense_rows <= N, op, ": dense_rows = ", dense_rows, " is outside [0, N = ", N, "]");
  const int64_t R = dense_rows, M = N - R;
  DIMIX_CHECK(indices_in.dtype() == DType::i64, op, ": expected int64 indices, got ", dtype_name(indices_in.dtype()));
  DIMIX_CHECK(indices_in.dim() == 4 && indices_in.size(0) == B && indices_in.size(1) == H && indices_in.size(2) == M,
              op, ": expected indices [B, H, N - dense_rows, K] = [", B, ", ", H, ", ", M, ", K] for q ",
              q_in.shape_str(), " and dense_rows ", R, ", got ", indices_in.shape_str());
  const int64_t K = indices_in.size(3);
  DIMIX_CHECK(K <= N, op, ": ", K, " keys per row but only N = ", N, " tokens");
  Tensor keep;
  if (key_mask.defined()) {
    DIMIX_CHECK(key_mask.dim() == 2 && key_mask.size(0) == B && key_mask.size(1) == N, op, ": expected key_mask [B, N] = [",
                B, ", ", N, "], got ", key_mask.shape_str());
    check_same_device(op, q_in, key_mask);
    keep = not_equal(key_mask, 0.0, DType::u8);
  }
  const double scale = scale_in != 0.0 ? scale_in : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(hd, 1)));

  const Tensor q = q_in.contiguous_raw(), k = k_in.contiguous_raw(), v = v_in.contiguous_raw();
  const Tensor indices = indices_in.contiguous_raw();
  const Device dev = q.device();
  Tensor out = empty(q.sizes(), q.dtype(), dev);
  Tensor probs_dense = empty({B, H, R, N}, q.dtype(), dev);
  Tensor probs_sparse = empty({B, H, M, K}, q.dtype(), dev);
  Buffers buf{q, k, v, indices, Tensor(), keep, probs_dense, probs_sparse, R, scale};
  if (!dev.is_cuda()) buf.all_keys = arange(N, DType::i64);  // the key list of a dense row

  if (dev.is_cuda()) {
    if (out.numel() > 0)
      cuda_kernel<ForwardKernel>("sparse_attention_forward")(out, probs_dense, probs_sparse, q, k, v, indices, keep,
                                                              R, scale);
  } else if (out.numel() > 0) {
    check_indices(indices, N);
    dispatch_float(q.dtype(), op, [&]<class T>() { forward_cpu<T>(layout_of<T>(buf), B * H, out.data<T>()); });
  } else {
    fill_(out, 0.0);
  }

  if (needs_grad({q_in, k_in, v_in})) {
    record(out, op, {q_in, k_in, v_in},
           [buf, BH = B * H](const Tensor& g_in) -> std::vector<Tensor> {
             const Tensor& q = buf.q;
             const Tensor g = g_in.contiguous_raw();
             Tensor dq = empty(q.sizes(), q.dtype(), q.device());
             Tensor dk = zeros(q.sizes(), q.dtype(), q.device());
             Tensor dv = zeros(q.sizes(), q.dtype(), q.device());
             if (q.numel() == 0) {
               fill_(dq, 0.0);
             } else if (q.device().is_cuda()) {
               cuda_kernel<BackwardKernel>("sparse_attention_backward")(dq, dk, dv, g, q, buf.k, buf.v, buf.indices,
                                                                        buf.keep, buf.probs_dense, buf.probs_sparse,
                                                                        buf.R, buf.scale);
             } else {
               dispatch_float(q.dtype(), "sparse_attention backward", [&]<class T>() {
                 backward_cpu<T>(layout_of<T>(buf), BH, g.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>());
               });
             }
             return {dq, dk, dv};
           });
  }
  return out;
}

// ---- registry cases --------------------------------------------------------------------
namespace {

// [B, H, M, K] int64 rows of K distinct keys in [0, N), in random order
// (a partial Fisher-Yates shuffle per row).
Tensor distinct_indices(Generator& g, int64_t B, int64_t H, int64_t M, int64_t K, int64_t N) {
  Tensor t = empty({B, H, M, K}, DType::i64);
  int64_t* p = t.data<int64_t>();
  std::vector<int64_t> perm(static_cast<size_t>(N));
  for (int64_t r = 0; r < B * H * M; ++r) {
    std::iota(perm.begin(), perm.end(), int64_t{0});
    for (int64_t j = 0; j < K; ++j) {
      const int64_t pick = j + static_cast<int64_t>(g.randint(static_cast<uint64_t>(N - j)));
      std::swap(perm[j], perm[pick]);
      p[r * K + j] = perm[j];
    }
  }
  return t;
}

std::vector<Tensor> qkv_inputs(Generator& g, DType t, const Shape& s, bool noncontig_q = false) {
  return {noncontig_q ? noncontig_input(g, s, t) : randn_input(g, s, t), randn_input(g, s, t), randn_input(g, s, t)};
}

}  // namespace

DIMIX_REGISTER_OP_CASES({
    // The Sparsifiner layout in miniature: CLS row dense, the rest keep 3 of 7.
    {"sparse_attention/cls_dense_odd",
     [](Generator& g, DType t) {
       auto x = qkv_inputs(g, t, {2, 3, 7, 5});
       x.push_back(distinct_indices(g, 2, 3, 6, 3, 7));
       return x;
     },
     [](const std::vector<Tensor>& x) { return sparse_attention(x[0], x[1], x[2], x[3], 1); }},
    // One key per row, no dense row, a non-contiguous q, an explicit scale.
    {"sparse_attention/k1_noncontig",
     [](Generator& g, DType t) {
       auto x = qkv_inputs(g, t, {1, 2, 5, 4}, true);
       x.push_back(distinct_indices(g, 1, 2, 5, 1, 5));
       return x;
     },
     [](const std::vector<Tensor>& x) { return sparse_attention(x[0], x[1], x[2], x[3], 0, Tensor(), 0.7); }},
    // Padding: two dense rows, every key kept (shuffled), a key mask with zeros.
    {"sparse_attention/key_mask_all_keys",
     [](Generator& g, DType t) {
       auto x = qkv_inputs(g, t, {2, 1, 6, 3});
       x.push_back(distinct_indices(g, 2, 1, 4, 6, 6));
       x.push_back(from_vector<int64_t>({1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0}, {2, 6}));
       return x;
     },
     [](const std::vector<Tensor>& x) { return sparse_attention(x[0], x[1], x[2], x[3], 2, x[4]); }},
    // Size-1 batch, head and head dim.
    {"sparse_attention/size1_hd1",
     [](Generator& g, DType t) {
       auto x = qkv_inputs(g, t, {1, 1, 9, 1});
       x.push_back(distinct_indices(g, 1, 1, 8, 4, 9));
       return x;
     },
     [](const std::vector<Tensor>& x) { return sparse_attention(x[0], x[1], x[2], x[3], 1); }},
});

}  // namespace dimix
