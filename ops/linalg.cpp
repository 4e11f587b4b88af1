// Matrix products (see linalg.h). Operands are handed to BLAS as they lie
// when their last two dims are row- or column-major; only other layouts are
// copied.
#include "ops/linalg.h"

#include <cblas.h>

#include "ops/common.h"
#include "ops/cpu_sgemm.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace dimix {

namespace {

// f32 goes to our AVX-512 kernel when the build has one (about twice
// OpenBLAS 0.3.21's rate on Zen 4/5, which it drives with AVX2 code; see
// bench_ops --only gemm); f64 (gradchecks) and other CPUs go to BLAS.
// BLAS runs one thread per call; gemm_impl cuts big products over our pool.
// OpenBLAS's OpenMP build re-reads the calling thread's omp_get_max_threads()
// on every call and, when it differs, takes that many threads again, so each
// thread that calls BLAS says 1 for itself (openblas_set_num_threads sets the
// caller's OpenMP thread count too) before its first call.
void single_threaded_blas() {
  thread_local const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if constexpr (cpu::kHaveSgemm) {
    cpu::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  single_threaded_blas();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
}
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
               const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  single_threaded_blas();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
}

// Products of at least this many multiply-adds are cut over the threads (BLAS
// runs one thread per call, core/parallel.h); a smaller one takes ~15 us on
// one core, not worth a fork/join.
constexpr int64_t kParallelGemmMacs = int64_t(1) << 20;

// The longer of C's two dims is cut into one slice per thread, in multiples
// of 16 so that the kernels' register tiles stay whole; each slice is an ordinary
// GEMM on offset pointers (A's rows or B's columns, wherever op() puts them).
template <class T>
void gemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t threads = get_num_threads();
  if (threads == 1 || in_parallel_region() || M * N * K < kParallelGemmMacs || std::max(M, N) < 32) {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool by_rows = M >= N;
  const int64_t len = by_rows ? M : N;
  const int64_t per = ((len + threads - 1) / threads + 15) / 16 * 16;
  const int64_t slices = (len + per - 1) / per;
  parallel_for(0, slices, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t lo = s * per, n = std::min(len, lo + per) - lo;
      if (by_rows)
        blas_gemm(ta, tb, n, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc, ldc);
      else
        blas_gemm(ta, tb, M, n, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo, ldc);
    }
  });
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace {

// A 3-d tensor [B, R, C] as BLAS sees it: per-batch pointer stride, whether
// it is stored transposed, and the leading dim. Copies when neither layout fits.
struct BlasView {
  Tensor t;  // keeps the data alive
  int64_t batch_stride;
  bool trans;
  int64_t ld;
};

BlasView blas_view(const Tensor& x) {
  const int64_t R = x.sizes()[1], C = x.sizes()[2];
  const int64_t sb = x.strides()[0], sr = x.strides()[1], sc = x.strides()[2];
  if ((sc == 1 || C == 1) && sr >= std::max<int64_t>(C, 1)) return {x, sb, false, std::max<int64_t>(sr, 1)};
  if ((sr == 1 || R == 1) && sc >= std::max<int64_t>(R, 1)) return {x, sb, true, std::max<int64_t>(sc, 1)};
  const Tensor c = x.contiguous_raw();
  return {c, c.strides()[0], false, std::max<int64_t>(C, 1)};
}

// out [B, M, N] = op(a) @ op(b), a/b 3-d with batch B (or 1 = shared).
template <class T>
void bmm_cpu(const Tensor& out, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const BlasView va = blas_view(a), vb = blas_view(b);
  const int64_t B = out.sizes()[0], M = out.sizes()[1], N = out.sizes()[2];
  const int64_t K = ta ? a.sizes()[1] : a.sizes()[2];
  const T* pa = va.t.data<T>();
  const T* pb = vb.t.data<T>();
  T* po = out.data<T>();
  const int64_t sa = a.sizes()[0] == 1 ? 0 : va.batch_stride, sb = b.sizes()[0] == 1 ? 0 : vb.batch_stride;
  auto one = [&](int64_t i) {
    gemm<T>(ta != va.trans, tb != vb.trans, M, N, K, T(1), pa + i * sa, va.ld, pb + i * sb, vb.ld, T(0),
            po + i * M * N, N);
  };
  // Small products: one per thread (gemm runs on one thread inside a
  // region); big ones: gemm spreads each product over the threads.
  if (B > 1 && M * N * K < (int64_t(1) << 21)) {
    parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) { for (int64_t i = lo; i < hi; ++i) one(i); });
  } else {
    for (int64_t i = 0; i < B; ++i) one(i);
  }
}

}  // namespace

Tensor bmm_raw(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_same_device("matmul", a, b);
  check_same_dtype("matmul", a, b);
  DIMIX_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-d operands, got ", a.shape_str(), " and ", b.shape_str());
  const int64_t M = ta ? a.sizes()[2] : a.sizes()[1], Ka = ta ? a.sizes()[1] : a.sizes()[2];
  const int64_t Kb = tb ? b.sizes()[2] : b.sizes()[1], N = tb ? b.sizes()[1] : b.sizes()[2];
  DIMIX_CHECK(Ka == Kb, "matmul: inner dims differ: ", a.shape_str(), " @ ", b.shape_str(), " (", Ka, " vs ", Kb, ")");
  DIMIX_CHECK(a.sizes()[0] == b.sizes()[0] || a.sizes()[0] == 1 || b.sizes()[0] == 1, "matmul: batch sizes differ: ",
              a.shape_str(), " @ ", b.shape_str());
  const int64_t B = std::max(a.sizes()[0], b.sizes()[0]);
  Tensor out = empty({B, M, N}, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, bool, bool)>("bmm")(out, a, b, ta, tb);
    return out;
  }
  if (Ka == 0) { fill_(out, 0); return out; }
  dispatch_float(a.dtype(), "matmul", [&]<class T>() { bmm_cpu<T>(out, a, b, ta, tb); });
  return out;
}

namespace {
// Views x [..., R, C] as [B, R, C] (no copy when the batch dims merge).
Tensor as_3d(const Tensor& x, const Shape& batch) {
  const int64_t R = x.sizes()[x.dim() - 2], C = x.sizes()[x.dim() - 1];
  if (x.dim() == 2) return x.as_strided({1, R, C}, {0, x.strides()[0], x.strides()[1]}, x.offset());
  const Tensor e = expand_raw(x, [&] { Shape s = batch; s.push_back(R); s.push_back(C); return s; }());
  // merge batch dims if their strides allow, else copy
  int64_t B = shape_numel(batch);
  bool mergeable = true;
  for (size_t d = 0; d + 1 < batch.size(); ++d)
    if (e.strides()[d] != e.strides()[d + 1] * batch[d + 1] && batch[d] != 1) mergeable = false;
  if (mergeable && !batch.empty())
    return e.as_strided({B, R, C}, {e.strides()[batch.size() - 1], e.strides()[e.dim() - 2], e.strides()[e.dim() - 1]},
                        e.offset());
  const Tensor c = e.contiguous_raw();
  return c.as_strided({B, R, C}, {R * C, C, 1}, c.offset());
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  DIMIX_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected operands with at least 2 dims, got ", a.shape_str(),
              " and ", b.shape_str());
  check_floating("matmul", a);
  const Shape ba(a.sizes().begin(), a.sizes().end() - 2), bb(b.sizes().begin(), b.sizes().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "matmul");
  const int64_t M = a.sizes()[a.dim() - 2], N = b.sizes()[b.dim() - 1];
  DIMIX_CHECK(a.sizes().back() == b.sizes()[b.dim() - 2], "matmul: inner dims differ: ", a.shape_str(), " @ ",
              b.shape_str());
  // 2-d operands stay shared (batch 1) instead of being expanded.
  const Tensor a3 = a.dim() == 2 ? as_3d(a, {}) : as_3d(a, batch);
  const Tensor b3 = b.dim() == 2 ? as_3d(b, {}) : as_3d(b, batch);
  Tensor out3 = bmm_raw(a3, b3, false, false);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = out3.as_strided(out_shape, contiguous_strides(out_shape), 0);
  if (needs_grad({a, b})) {
    const Tensor da = a.detach(), db = b.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "matmul", {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
      const Tensor g3 = as_3d(g, batch);
      Tensor grad_a, grad_b;
      if (ga) {  // dA = g @ B^T, summed over broadcast batches
        const Tensor b3 = db.dim() == 2 ? as_3d(db, {}) : as_3d(db, batch);
        Tensor r = bmm_raw(g3, b3, false, true);
        Shape full = batch;
        full.push_back(M);
        full.push_back(da.sizes().back());
        grad_a = sum_to(r.as_strided(full, contiguous_strides(full), 0), da.sizes());
      }
      if (gb) {  // dB = A^T @ g
        const Tensor a3 = da.dim() == 2 ? as_3d(da, {}) : as_3d(da, batch);
        const Tensor r = bmm_raw(a3, g3, true, false);
        Shape full = batch;
        full.push_back(db.sizes()[db.dim() - 2]);
        full.push_back(N);
        grad_b = sum_to(r.as_strided(full, contiguous_strides(full), 0), db.sizes());
      }
      return {grad_a, grad_b};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  DIMIX_CHECK(weight.dim() == 2, "linear: expected a 2-d weight [out, in], got ", weight.shape_str());
  DIMIX_CHECK(x.dim() >= 1 && x.sizes().back() == weight.sizes()[1], "linear: input ", x.shape_str(),
              " does not end in in_features = ", weight.sizes()[1], " of weight ", weight.shape_str());
  check_same_device("linear", x, weight);
  check_same_dtype("linear", x, weight);
  if (bias.defined())
    DIMIX_CHECK(bias.dim() == 1 && bias.sizes()[0] == weight.sizes()[0], "linear: bias ", bias.shape_str(),
                " does not match out_features = ", weight.sizes()[0]);
  const int64_t in = weight.sizes()[1], outf = weight.sizes()[0];
  const int64_t rows = in ? x.numel() / in : 0;
  const Tensor xc = x.contiguous_raw();
  const Tensor x3 = xc.as_strided({1, rows, in}, {0, in, 1}, xc.offset());
  const Tensor w3 = weight.as_strided({1, outf, in}, {0, weight.strides()[0], weight.strides()[1]}, weight.offset());
  Shape out_shape = x.sizes();
  out_shape.back() = outf;
  Tensor out;
  if (bias.defined() && x.device().is_cpu() && weight.strides()[1] == 1 && weight.strides()[0] >= in) {
    // The bias is the GEMM's starting C (beta = 1): one pass over the output
    // fewer than a separate broadcast add, and no second output tensor.
    check_same_dtype("linear", x, bias);
    out = empty(out_shape, x.dtype());
    const Tensor bc = bias.contiguous_raw();
    dispatch_float(x.dtype(), "linear", [&]<class T>() {
      T* po = out.data<T>();
      const T* pb = bc.data<T>();
      parallel_for(0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(outf, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) std::copy(pb, pb + outf, po + r * outf);
      });
      gemm<T>(false, true, rows, outf, in, T(1), xc.data<T>(), in, weight.data<T>(), weight.strides()[0], T(1), po,
              outf);
    });
  } else {
    out = bmm_raw(x3, w3, false, true).as_strided(out_shape, contiguous_strides(out_shape), 0);
    if (bias.defined()) out = binary_raw(BinaryOp::add, out, bias);
  }
  if (needs_grad({x, weight, bias})) {
    const Tensor dx = x3, dw = w3;
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gbias = bias.defined() && bias.requires_grad();
    record(out, "linear", {x, weight, bias}, [=, in_shape = x.sizes()](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gc = g.contiguous_raw();
      const Tensor g3 = gc.as_strided({1, rows, outf}, {0, outf, 1}, gc.offset());
      Tensor grad_x, grad_w, grad_b;
      if (gx) grad_x = bmm_raw(g3, dw, false, false).as_strided(in_shape, contiguous_strides(in_shape), 0);
      if (gw) grad_w = bmm_raw(g3, dx, true, false).as_strided({outf, in}, {in, 1}, 0);
      if (gbias) grad_b = sum_raw(gc.as_strided({rows, outf}, {outf, 1}, gc.offset()), {0}, false);
      return {grad_x, grad_w, grad_b};
    });
  }
  return out;
}

DIMIX_REGISTER_OP_CASES({
    {"matmul/2d", [](Generator& g, DType t) { return std::vector{randn_input(g, {3, 4}, t), randn_input(g, {4, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }},
    {"matmul/batched_broadcast", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 1, 3, 4}, t), randn_input(g, {3, 4, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }},
    {"matmul/shared_rhs_noncontig", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5}, t), noncontig_input(g, {5, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }},
    {"matmul/transposed_lhs", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {2, 4, 3}, t), randn_input(g, {2, 3, 1}, t)}; },
     [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }},
    {"linear/bias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 5}, t), randn_input(g, {4, 5}, t), randn_input(g, {4}, t)}; },
     [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }},
    {"linear/nobias_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 5}, t), randn_input(g, {1, 5}, t)}; },
     [](const std::vector<Tensor>& x) { return linear(x[0], x[1]); }},
});

}  // namespace dimix
