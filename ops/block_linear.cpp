// block_linear (see block_linear.h): the butterfly block-diagonal product of
// PAPERS.md 1.1-1.3, with the butterfly permutation folded into indexing.
//
// Letters: x is viewed as [outer, n, inner] around `dim`; G groups, block
// sizes b_in / b_out, strides g_in / g_out. Group k = a * g + s reads the
// positions a*b*g + s + j*g, j < b, so a "super-block" a is a [b, g] matrix
// whose column s is one group. Nothing permuted is ever materialised; the
// kernels below read the groups where they lie:
//
//  inner > 1 (mixing a middle dim): for each (outer o, group k) the product is
//    Y_k[b_out, inner] = W_k X_k, with X_k's rows g_in*inner apart: a small
//    GEMM with contiguous rows (tile::small_gemm, or gemm<T> for big blocks).
//  inner == 1 (mixing the last dim), rows r:
//    - g_out == 1 and b_out a (near) multiple of the vector width: group k's
//      outputs are contiguous, so vector lanes run over jo (W_k^T rows are
//      the B operand) and x is broadcast from wherever its group lies;
//    - otherwise a tile of 32 rows is transposed in registers (16 x 16
//      blocks), each group becomes Y_k^T = W_k X_k^T with lanes over rows and
//      the weights broadcast from L1, and the result is transposed back.
//    (Lanes over neighbouring groups s, each with its own weights, were tried
//    and measured 5x slower: every FMA then needs a full weight vector, where
//    the broadcast forms need 4 bytes.)
//  The input gradient is block_linear itself with W_k^T and the strides
//  swapped. The weight gradient dW_k = sum over rows of dY_k X_k^T is, for
//  inner == 1, a small GEMM per group with K running over rows, over
//  sub-chunks of 32 rows that every group uses while they sit in L1; for
//  inner > 1, register tiles of dot products along the contiguous inner dim.
//  Either is reduced per chunk of rows into partial sums that are added in a
//  fixed order (deterministic for a given thread count).
//  The inner == 1 weight gradient prefetches its next rows in software: in a
//  training step x was written long before its gradient is taken and is no
//  longer in cache, and a group reads only b of each row's n positions, a
//  pattern the hardware prefetcher does not follow (without it the weight
//  gradient ran 4x slower in a training step than on cached data).
//
// CUDA kernels dispatched to (x3 [outer, n_in, inner] with unit inner stride
// when inner > 1; y3, dy3 contiguous [outer, n_out, inner]; w [G, b_out, b_in]
// and bias [G, b_out] contiguous, bias possibly undefined):
//   "block_linear_forward"         void(const Tensor& y3, const Tensor& x3, const Tensor& w, const Tensor& bias,
//                                       int64_t in_stride, int64_t out_stride)
//   "block_linear_backward_weight" void(const Tensor& dw, const Tensor& dy3, const Tensor& x3,
//                                       int64_t in_stride, int64_t out_stride)
// (the input gradient reuses the forward kernel; the bias gradient is sum_raw.)
#include "ops/block_linear.h"

#include <cmath>

#include "ops/common.h"
#include "ops/linalg.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/tile_gemm.h"

namespace dimix {
namespace {

using tile::dispatch_count;
using tile::kLanes;
using tile::small_gemm;

// Where the groups of one side (input or output) lie along the mixed dim.
struct Side {
  int64_t b;  // block size
  int64_t g;  // stride
  // First position of group k; its j-th position is base(k) + j * g.
  int64_t base(int64_t k) const { return (k / g) * b * g + k % g; }
};

// Blocks at least this big (b_in * b_out) go to gemm<T> (for f32 our AVX-512
// sgemm, ops/cpu_sgemm.h); from about 48 x 48 on, its packed 14 x 32 tiles
// beat the small-block kernels here (MLP-Mixer token Linears of 64 and 81
// tokens: t2-dense-h2 and mixer0-l7 steps 5-10% faster than at 128 x 128).
constexpr int64_t kGemmBlock = 48 * 48;

// Splits [0, n) into at most `max_chunks` chunks of at least `min_size`.
inline int64_t chunk_count(int64_t n, int64_t min_size, int64_t max_chunks) {
  return std::max<int64_t>(1, std::min<int64_t>(max_chunks, n / std::max<int64_t>(min_size, 1)));
}

// ---- forward (and input gradient) ---------------------------------------------------

// y3 [outer, n_out, inner] (contiguous) = block_linear(x3 [outer, n_in, inner]).
// w [G, b_out, b_in] and bias [G, b_out] (or null) contiguous.
template <class T>
void forward_cpu(const Tensor& y3, const Tensor& x3, const T* w, const T* bias, int64_t G, Side in, Side out) {
  const int64_t outer = x3.sizes()[0], n_in = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const int64_t n_out = G * out.b;
  const T* x = x3.data<T>();
  T* y = y3.data<T>();
  const int64_t blk = in.b * out.b;
  if (y3.numel() == 0) return;

  if (inner > 1) {
    // Each (o, k) is Y_k[b_out, inner] = W_k X_k with X_k's rows g_in*sn apart.
    // (Prefetching the next slice here made cold x 1.5x faster but cached x
    // 20% slower, and a training step no faster: not done.)
    const int64_t work = std::max<int64_t>(1, blk * inner);
    const int64_t per_task = std::max<int64_t>(1, 65536 / work), pairs = outer * G;
    tile::for_each_task((pairs + per_task - 1) / per_task, [] { return 0; }, [&](int, int64_t task) {
      for (int64_t t = task * per_task; t < std::min(pairs, (task + 1) * per_task); ++t) {
        const int64_t o = t / G, k = t % G;
        const T* wk = w + k * blk;
        const T* bk = bias ? bias + k * out.b : nullptr;
        const T* xk = x + o * so + in.base(k) * sn;
        T* yk = y + (o * n_out + out.base(k)) * inner;
        if (blk >= kGemmBlock) {
          gemm<T>(false, false, out.b, inner, in.b, T(1), wk, in.b, xk, in.g * sn, T(0), yk, out.g * inner);
          if (bk)
            for (int64_t jo = 0; jo < out.b; ++jo)
              for (int64_t i = 0; i < inner; ++i) yk[jo * out.g * inner + i] += bk[jo];
        } else {
          small_gemm<T>(out.b, inner, in.b, wk, in.b, 1, xk, in.g * sn, yk, out.g * inner, bk, nullptr, false);
        }
      }
    });
    return;
  }

  // inner == 1: rows r = o, mixing the last dim.
  const int64_t R = outer;
  if (blk >= kGemmBlock && in.g == 1 && out.g == 1 && sn == 1) {
    // Big dense blocks: Y[:, block k] = X[:, block k] W_k^T, gemm<T> threads it.
    for (int64_t k = 0; k < G; ++k) {
      T* yk = y + out.base(k);
      gemm<T>(false, true, R, out.b, in.b, T(1), x + in.base(k), so, w + k * blk, in.b, T(0), yk, n_out);
      if (bias)
        parallel_for(0, R, 256, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t jo = 0; jo < out.b; ++jo) yk[r * n_out + jo] += bias[k * out.b + jo];
        });
    }
    return;
  }
  // Two layouts, in tiles of RT rows:
  //  - lanes over jo, when group k's outputs are contiguous (g_out == 1) and
  //    b_out fills the vectors (>= 85%): W_k^T [b_in, b_out] rows are the B
  //    operand, x broadcast from its group's positions (any g_in);
  //  - otherwise lanes over rows: the tile is transposed (xt [n_in, RT]), each
  //    group is Y_k^T = W_k X_k^T with the weights broadcast from L1, and the
  //    result is transposed back (for b_out = 11 this beats 11 of 16 lanes).
  // (Unlike the weight gradient's, these loops read whole rows of x, which
  // the hardware prefetcher follows: prefetching in software here measured
  // no faster in a training step.)
  constexpr int64_t L = kLanes<T>;
  const bool lanes_jo = out.g == 1 && out.b * 100 >= 85 * ((out.b + L - 1) / L * L);
  const int64_t RT = lanes_jo ? 16 : 2 * L;
  std::vector<T> wt;
  if (lanes_jo) {
    wt.resize(G * blk);
    for (int64_t k = 0; k < G; ++k)
      for (int64_t jo = 0; jo < out.b; ++jo)
        for (int64_t j = 0; j < in.b; ++j) wt[(k * in.b + j) * out.b + jo] = w[(k * out.b + jo) * in.b + j];
  }
  struct Tiles {
    std::vector<T> xt, yt;
  };
  tile::for_each_task(
      (R + RT - 1) / RT,
      [&] { return lanes_jo ? Tiles{} : Tiles{std::vector<T>(n_in * RT), std::vector<T>(n_out * RT)}; },
      [&](Tiles& s, int64_t task) {
        const int64_t r0 = task * RT, rows = std::min(RT, R - r0);
        if (lanes_jo) {
          for (int64_t k = 0; k < G; ++k)
            small_gemm<T>(rows, out.b, in.b, x + r0 * so + in.base(k) * sn, so, in.g * sn, wt.data() + k * blk,
                          out.b, y + r0 * n_out + out.base(k), n_out, nullptr, bias ? bias + k * out.b : nullptr,
                          false);
          return;
        }
        T* xt = s.xt.data();
        T* yt = s.yt.data();
        if (rows < RT) std::fill(s.xt.begin(), s.xt.end(), T(0));
        if (sn == 1) {
          tile::transpose(x + r0 * so, so, xt, RT, rows, n_in);
        } else {
          for (int64_t p = 0; p < n_in; ++p)
            for (int64_t r = 0; r < rows; ++r) xt[p * RT + r] = x[(r0 + r) * so + p * sn];
        }
        for (int64_t k = 0; k < G; ++k)
          small_gemm<T>(out.b, RT, in.b, w + k * blk, in.b, 1, xt + in.base(k) * RT, in.g * RT, yt + out.base(k) * RT,
                        out.g * RT, bias ? bias + k * out.b : nullptr, nullptr, false);
        tile::transpose(yt, RT, y + r0 * n_out, n_out, n_out, rows);
      });
}

// ---- weight gradient -------------------------------------------------------------------

// dw [G, b_out, b_in] = sum over (o, i) of dY_k X_k^T; dy3 [outer, n_out, inner]
// contiguous, x3 any strides (unit inner stride when inner > 1).
template <class T>
void weight_grad_cpu(T* dw, const Tensor& dy3, const Tensor& x3, int64_t G, Side in, Side out) {
  const int64_t outer = x3.sizes()[0], n_in = x3.sizes()[1], inner = x3.sizes()[2];
  const int64_t so = x3.strides()[0], sn = x3.strides()[1];
  const int64_t n_out = G * out.b;
  const int64_t blk = in.b * out.b;
  const T* x = x3.data<T>();
  const T* dy = dy3.data<T>();
  const int64_t nthreads = get_num_threads();
  if (x3.numel() == 0) {
    std::fill(dw, dw + G * blk, T(0));
    return;
  }

  // Partial sums per chunk of rows (up to 4 per thread, handed out as tasks),
  // added in chunk order at the end: deterministic for a given thread count.
  auto reduce_chunks = [&](int64_t rows, int64_t chunks, auto&& body) {
    std::vector<T> partial(static_cast<size_t>(chunks * G * blk), T(0));
    const int64_t per = (rows + chunks - 1) / chunks;
    tile::for_each_task(chunks, [] { return 0; }, [&](int, int64_t c) {
      body(std::min(rows, c * per), std::min(rows, (c + 1) * per), partial.data() + c * G * blk);
    });
    return partial;
  };

  if (inner > 1) {
    // dW_k[jo][j] = sum over o, i of dy[o][jo][i] x[o][j][i]: dot products
    // along the contiguous inner dim, in register tiles of (jo, j), added into
    // unreduced vectors acc [G, b_out, b_in, lanes] that are reduced across
    // lanes once per chunk. Slices o go through OS at a time, few enough that
    // a group's rows stay in L1/L2 while all its tiles read them (48 KiB of
    // rows measured best: 6 slices at the T2 token level); slices outer
    // and groups inner read x and dy front to back, once (which the hardware
    // prefetcher follows), unless acc for all groups would not fit in L2:
    // then groups go outer, each with its own acc.
    constexpr int64_t L = kLanes<T>;
    const int64_t OS = std::max<int64_t>(1, (48 << 10) / std::max<int64_t>(1, (in.b + out.b) * inner * sizeof(T)));
    const bool slices_outer = G * blk * L * static_cast<int64_t>(sizeof(T)) <= (256 << 10);
    auto body = [&](int64_t o0, int64_t o1, T* part) {
      if (blk >= kGemmBlock) {
        for (int64_t k = 0; k < G; ++k)
          for (int64_t o = o0; o < o1; ++o)
            gemm<T>(false, true, out.b, in.b, inner, T(1), dy + (o * n_out + out.base(k)) * inner, out.g * inner,
                    x + o * so + in.base(k) * sn, in.g * sn, T(1), part + k * blk, in.b);
        return;
      }
      const int64_t groups_at_once = slices_outer ? G : 1;
      std::vector<T> acc(groups_at_once * blk * L);
      for (int64_t k0 = 0; k0 < G; k0 += groups_at_once) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t os = o0; os < o1; os += OS)
          for (int64_t k = k0; k < k0 + groups_at_once; ++k)
            tile::dot_block<T, 4, 4, true>(out.b, in.b, std::min(OS, o1 - os), inner,
                                           dy + (os * n_out + out.base(k)) * inner, n_out * inner, out.g * inner,
                                           x + os * so + in.base(k) * sn, so, in.g * sn,
                                           acc.data() + (k - k0) * blk * L, in.b);
        for (int64_t e = 0; e < groups_at_once * blk; ++e)
          part[k0 * blk + e] = tile::hsum_tree<T, L>(tile::load<T>(acc.data() + e * L));
      }
    };
    const int64_t chunks =
        chunk_count(outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, inner * in.b)), 4 * nthreads);
    const auto partial = reduce_chunks(outer, chunks, body);
    for (int64_t e = 0; e < G * blk; ++e) {
      T s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += partial[c * G * blk + e];
      dw[e] = s;
    }
    return;
  }

  // inner == 1: rows r. dW_k += dY_k^T X_k over rows, as small GEMMs whose
  // vector lanes run over one side's block and whose K loop runs over rows.
  // Lanes need that side's group positions contiguous: x's when g_in == 1
  // (and unit element stride), dy's when g_out == 1 (then dW_k^T is
  // computed). With both, the side that needs fewer FMAs per row takes the
  // lanes (b = 8 -> 16: 16 lanes over dy beat 8 of 16 lanes over x); with
  // neither, each row's x is first gathered group-major.
  const int64_t R = outer;
  constexpr int64_t L = kLanes<T>;
  auto fmas = [](int64_t lane_b, int64_t bcast_b) { return (lane_b + L - 1) / L * bcast_b; };
  const bool x_rows = in.g == 1 && sn == 1;
  const bool transposed = out.g == 1 && (!x_rows || fmas(out.b, in.b) < fmas(in.b, out.b));
  const bool gather = !x_rows && !transposed;
  // Rows go through in sub-chunks of RS that stay in L1 while every group
  // uses them (a group reads only b of each row's n positions, so a pass per
  // group over many rows would fetch every cache line once per group), and
  // the next sub-chunk is prefetched meanwhile, a share per group (x and
  // dy: either may be out of cache in a training step).
  // Big dense blocks go to gemm<T>, over longer sub-chunks.
  const bool big = blk >= kGemmBlock && out.g == 1 && x_rows && !transposed;
  const int64_t RS = big ? 256 : 32;
  const int64_t x_span = (n_in - 1) * sn + 1;  // elements of one x row
  auto prefetch_rows = [&](int64_t r0, int64_t r1, int64_t part, int64_t parts) {
    tile::prefetch_rows(x, so, x_span, r0, r1, part, parts);
    tile::prefetch_rows(dy, n_out, n_out, r0, r1, part, parts);
  };
  // C [M, N] += A^T B over K rows, A's M scalars of a row a_m apart.
  auto accumulate = [](int64_t M, int64_t N, int64_t K, const T* A, int64_t a_m, int64_t a_k, const T* B,
                       int64_t b_k, T* C, int64_t c_m) {
    if (a_m == 1) tile::small_gemm_unit_a<T>(M, N, K, A, a_k, B, b_k, C, c_m, nullptr, nullptr, true);
    else small_gemm<T>(M, N, K, A, a_m, a_k, B, b_k, C, c_m, nullptr, nullptr, true);
  };
  auto body = [&](int64_t r0, int64_t r1, T* part) {
    std::vector<T> xg;
    // Gathered rows: xg[k][r][j], groups gs apart (one row more than needed,
    // so that the gather's stores do not all fall into one cache set).
    const int64_t gs = (RS + 1) * in.b;
    if (gather) xg.resize(G * gs);
    for (int64_t rs = r0; rs < r1; rs += RS) {
      const int64_t rows = std::min(RS, r1 - rs), next_end = std::min(r1, rs + 2 * RS);
      const T* xr = x + rs * so;
      if (gather) {
        // Per row, each super-block [b_in, g_in] transposed.
        const int64_t A = G / in.g, sb = in.b * in.g;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t a = 0; a < A; ++a) {
            T* dst = xg.data() + a * in.g * gs + r * in.b;
            if (sn == 1) {
              tile::transpose(xr + r * so + a * sb, in.g, dst, gs, in.b, in.g);
            } else {
              for (int64_t s = 0; s < in.g; ++s)
                for (int64_t j = 0; j < in.b; ++j) dst[s * gs + j] = xr[r * so + (a * sb + j * in.g + s) * sn];
            }
          }
      }
      if (rs == r0) prefetch_rows(rs, rs + rows, 0, 1);
      for (int64_t k = 0; k < G; ++k) {
        prefetch_rows(rs + rows, next_end, k, G);
        const T* dyk = dy + rs * n_out + out.base(k);
        T* pk = part + k * blk;
        if (transposed) {
          // dW_k^T [b_in, b_out]: lanes over jo, x broadcast.
          accumulate(in.b, out.b, rows, xr + in.base(k) * sn, in.g * sn, so, dyk, n_out, pk, out.b);
        } else if (gather) {
          accumulate(out.b, in.b, rows, dyk, out.g, n_out, xg.data() + k * gs, in.b, pk, in.b);
        } else if (big) {
          gemm<T>(true, false, out.b, in.b, rows, T(1), dyk, n_out, xr + in.base(k), so, T(1), pk, in.b);
        } else {
          // Lanes over j, dy broadcast.
          accumulate(out.b, in.b, rows, dyk, out.g, n_out, xr + in.base(k), so, pk, in.b);
        }
      }
    }
  };
  const int64_t chunks = chunk_count(R, 64, 4 * nthreads);
  const auto partial = reduce_chunks(R, chunks, body);
  for (int64_t k = 0; k < G; ++k)
    for (int64_t jo = 0; jo < out.b; ++jo)
      for (int64_t j = 0; j < in.b; ++j) {
        T s = 0;
        const int64_t e = transposed ? k * blk + j * out.b + jo : k * blk + jo * in.b + j;
        for (int64_t c = 0; c < chunks; ++c) s += partial[c * G * blk + e];
        dw[k * blk + jo * in.b + j] = s;
      }
}

// Any-device raw ops: the CPU kernels above or the CUDA ones by name.
Tensor forward_raw(const Tensor& x3, const Tensor& w, const Tensor& bias, Side in, Side out) {
  const int64_t G = w.sizes()[0];
  Tensor y3 = empty({x3.sizes()[0], G * out.b, x3.sizes()[2]}, x3.dtype(), x3.device());
  if (x3.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t)>(
        "block_linear_forward")(y3, x3, w, bias, in.g, out.g);
    return y3;
  }
  dispatch_float(x3.dtype(), "block_linear", [&]<class T>() {
    forward_cpu<T>(y3, x3, w.data<T>(), bias.defined() ? bias.data<T>() : nullptr, G, in, out);
  });
  return y3;
}

Tensor weight_grad_raw(const Tensor& dy3, const Tensor& x3, Side in, Side out, int64_t G) {
  Tensor dw = empty({G, out.b, in.b}, x3.dtype(), x3.device());
  if (x3.device().is_cuda()) {
    cuda_kernel<void(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t)>("block_linear_backward_weight")(
        dw, dy3, x3, in.g, out.g);
    return dw;
  }
  dispatch_float(x3.dtype(), "block_linear", [&]<class T>() { weight_grad_cpu<T>(dw.data<T>(), dy3, x3, G, in, out); });
  return dw;
}

// db[k][jo] = sum over (o, i) of dy at output position base(k) + jo * g_out.
template <class T>
void bias_grad_cpu(T* db, const T* dy, int64_t outer, int64_t n_out, int64_t inner, int64_t G, Side out) {
  std::vector<T> per_position(n_out, T(0));
  if (inner > 1) {
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, outer * inner));
    parallel_for(0, n_out, grain, [&](int64_t q0, int64_t q1) {
      constexpr int L = kLanes<T>;
      const int64_t full = inner / L * L;
      for (int64_t q = q0; q < q1; ++q) {
        tile::Vec<T> acc{};  // one horizontal sum per position, not per (o, position)
        T s = 0;
        for (int64_t o = 0; o < outer; ++o) {
          const T* p = dy + (o * n_out + q) * inner;
          for (int64_t i = 0; i < full; i += L) acc += tile::load<T>(p + i);
          for (int64_t i = full; i < inner; ++i) s += p[i];
        }
        per_position[q] = s + tile::hsum<T, L>(acc);
      }
    });
  } else {
    // Column sums: per-chunk partial rows, added in chunk order.
    const int64_t chunks = chunk_count(outer, 256, get_num_threads());
    std::vector<T> partial(chunks * n_out, T(0));
    const int64_t per = (outer + chunks - 1) / chunks;
    parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        T* acc = partial.data() + c * n_out;
        for (int64_t r = c * per; r < std::min(outer, (c + 1) * per); ++r) {
          const T* row = dy + r * n_out;
#pragma omp simd
          for (int64_t q = 0; q < n_out; ++q) acc[q] += row[q];
        }
      }
    });
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t q = 0; q < n_out; ++q) per_position[q] += partial[c * n_out + q];
  }
  for (int64_t k = 0; k < G; ++k)
    for (int64_t jo = 0; jo < out.b; ++jo) db[k * out.b + jo] = per_position[out.base(k) + jo * out.g];
}

Tensor bias_grad_raw(const Tensor& dy3, Side out, int64_t G) {
  if (dy3.device().is_cuda()) {
    // A per-position sum, then the group order read through a strided view.
    const Tensor per_position = sum_raw(dy3, {0, 2}, false).contiguous_raw();  // [n_out]
    const int64_t A = G / out.g;
    return per_position.as_strided({A, out.g, out.b}, {out.b * out.g, 1, out.g}, per_position.offset())
        .contiguous_raw()
        .as_strided({G, out.b}, {out.b, 1}, 0);
  }
  Tensor db = empty({G, out.b}, dy3.dtype(), dy3.device());
  dispatch_float(dy3.dtype(), "block_linear", [&]<class T>() {
    bias_grad_cpu<T>(db.data<T>(), dy3.data<T>(), dy3.sizes()[0], dy3.sizes()[1], dy3.sizes()[2], G, out);
  });
  return db;
}

}  // namespace

// ---- views (block_linear.h) ---------------------------------------------------------------------------

Tensor view_around_dim(const Tensor& x, int64_t dim) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.sizes()[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.sizes()[d];
  const int64_t n = x.sizes()[dim];
  // Merged stride of dims [d0, d1), or -1 when they do not merge.
  auto merged = [&](int64_t d0, int64_t d1) -> int64_t {
    int64_t stride = -1, expect = -1;
    for (int64_t d = d1 - 1; d >= d0; --d) {
      if (x.sizes()[d] == 1) continue;
      if (stride < 0) stride = x.strides()[d];
      else if (x.strides()[d] != expect) return -1;
      expect = x.strides()[d] * x.sizes()[d];
    }
    return stride < 0 ? 1 : stride;
  };
  const int64_t so = merged(0, dim), si = merged(dim + 1, x.dim());
  const int64_t sn = n == 1 ? 1 : x.strides()[dim];
  if (so >= 0 && si >= 0 && (inner == 1 || si == 1))
    return x.as_strided({outer, n, inner}, {so, sn, inner == 1 ? 1 : si}, x.offset());
  const Tensor c = x.contiguous_raw();
  return c.as_strided({outer, n, inner}, {n * inner, inner, 1}, c.offset());
}

std::vector<int64_t> butterfly_strides(int64_t n, int64_t b, bool capped) {
  DIMIX_CHECK(n >= 1 && b >= 2, "butterfly_strides: expected n >= 1 and block size b >= 2, got n = ", n, ", b = ", b);
  // L = int(np.ceil(np.log(n) / np.log(b))) in double precision, as the authors.
  const double levels = std::log(static_cast<double>(n)) / std::log(static_cast<double>(b));
  const int64_t L = static_cast<int64_t>(std::ceil(levels));
  std::vector<int64_t> strides;
  int64_t gap = 1;
  for (int64_t i = 0; i < L; ++i) {
    if (!capped || gap * b <= n) strides.push_back(gap);
    else strides.push_back((n + b - 1) / b);
    gap *= b;
  }
  return strides;
}

Tensor block_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t dim, int64_t in_stride,
                    int64_t out_stride) {
  const char* op = "block_linear";
  check_floating(op, x);
  DIMIX_CHECK(weight.defined() && weight.dim() == 3, op, ": expected weight [G, b_out, b_in], got ",
              weight.defined() ? weight.shape_str() : std::string("undefined"));
  check_same_device(op, x, weight);
  check_same_dtype(op, x, weight);
  DIMIX_CHECK(x.dim() >= 1, op, ": expected x with at least 1 dim, got ", x.shape_str());
  const int64_t nd = x.dim();
  DIMIX_CHECK(dim >= -nd && dim < nd, op, ": dim ", dim, " out of range for x ", x.shape_str());
  if (dim < 0) dim += nd;
  const int64_t G = weight.sizes()[0], b_out = weight.sizes()[1], b_in = weight.sizes()[2];
  DIMIX_CHECK(G >= 1 && b_out >= 1 && b_in >= 1, op, ": weight ", weight.shape_str(), " has an empty dim");
  const int64_t n_in = x.sizes()[dim];
  DIMIX_CHECK(n_in == G * b_in, op, ": x ", x.shape_str(), " has ", n_in, " positions along dim ", dim,
              ", expected G * b_in = ", G, " * ", b_in, " = ", G * b_in, " for weight ", weight.shape_str());
  DIMIX_CHECK(in_stride >= 1 && out_stride >= 1, op, ": strides must be >= 1, got in_stride ", in_stride,
              ", out_stride ", out_stride);
  DIMIX_CHECK(G % in_stride == 0 && G % out_stride == 0, op, ": the number of groups G = ", G, " (weight ",
              weight.shape_str(), ") must be divisible by in_stride ", in_stride, " and out_stride ", out_stride);
  if (bias.defined()) {
    check_same_device(op, x, bias);
    check_same_dtype(op, x, bias);
    DIMIX_CHECK(bias.dim() == 2 && bias.sizes()[0] == G && bias.sizes()[1] == b_out, op,
                ": expected bias [G, b_out] = [", G, ", ", b_out, "] for weight ", weight.shape_str(), ", got ",
                bias.shape_str());
  }
  const Side in{b_in, in_stride}, out{b_out, out_stride};
  const Tensor x3 = view_around_dim(x, dim);
  const Tensor w = weight.contiguous_raw();
  const Tensor bc = bias.defined() ? bias.contiguous_raw() : Tensor();
  const Tensor y3 = forward_raw(x3, w, bc, in, out);
  Shape out_shape = x.sizes();
  out_shape[dim] = G * b_out;
  Tensor y = y3.as_strided(out_shape, contiguous_strides(out_shape), 0);

  if (needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    const Tensor saved_x = gw ? x3.detach() : Tensor();
    const Tensor saved_w = gx ? w.detach() : Tensor();
    const Shape in_shape = x.sizes(), y_shape = y3.sizes();
    record(y, op, {x, weight, bias}, [=](const Tensor& grad) -> std::vector<Tensor> {
      const Tensor gc = grad.contiguous_raw();
      const Tensor dy = gc.as_strided(y_shape, contiguous_strides(y_shape), gc.offset());
      Tensor dx, dw, db;
      if (gx) {
        // dX = block_linear(dY) with W_k^T and the two sides swapped.
        const Tensor wt =
            saved_w.as_strided({G, b_in, b_out}, {b_in * b_out, 1, b_in}, saved_w.offset()).contiguous_raw();
        dx = forward_raw(dy, wt, Tensor(), out, in).as_strided(in_shape, contiguous_strides(in_shape), 0);
      }
      if (gw) dw = weight_grad_raw(dy, saved_x, in, out, G);
      if (gb) db = bias_grad_raw(dy, out, G);
      return {dx, dw, db};
    });
  }
  return y;
}

// ---- registry cases ---------------------------------------------------------------------
DIMIX_REGISTER_OP_CASES({
    // b = 3, strides 1 -> 1 (block diagonal), last dim, with bias.
    {"block_linear/b3_stride1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {4, 9}, t), randn_input(g, {3, 3, 3}, t), randn_input(g, {3, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], -1, 1, 1); }},
    // b = 3, stride 3 (second butterfly level of n = 9), non-contiguous x.
    {"block_linear/b3_stride3_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {5, 9}, t), randn_input(g, {3, 3, 3}, t), randn_input(g, {3, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 1, 3, 3); }},
    // b_in 3 -> b_out 5, in_stride 2 != out_stride 4 (G = 4), no bias.
    {"block_linear/3to5_strides2to4_nobias", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 3, 12}, t), randn_input(g, {4, 5, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], Tensor(), 2, 2, 4); }},
    // Mixing a middle dim (inner = 5 > 1): x [2, 12, 5], dim 1, b 4 -> 2, strides 3 / 1.
    {"block_linear/middle_dim", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {2, 12, 5}, t), randn_input(g, {3, 2, 4}, t), randn_input(g, {3, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 1, 3, 1); }},
    // Middle dim of a non-contiguous x (inner stride != 1), stride 2.
    {"block_linear/middle_dim_noncontig", [](Generator& g, DType t) {
       return std::vector{noncontig_input(g, {3, 8, 2, 3}, t), randn_input(g, {4, 2, 2}, t),
                          randn_input(g, {4, 2}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 1, 2, 2); }},
    // G = 1: a dense map along dim 0.
    {"block_linear/dense_G1", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 3}, t), randn_input(g, {1, 4, 5}, t), randn_input(g, {1, 4}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 0, 1, 1); }},
    // Stride 8: the transposed-tile path, with ragged 16 x 16 blocks.
    {"block_linear/stride8", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {5, 48}, t), randn_input(g, {16, 3, 3}, t), randn_input(g, {16, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 1, 8, 8); }},
    // Stride 5 with b 2 -> 3 (b_in != b_out on a strided level).
    {"block_linear/stride5_2to3", [](Generator& g, DType t) {
       return std::vector{randn_input(g, {3, 20}, t), randn_input(g, {10, 3, 2}, t), randn_input(g, {10, 3}, t)}; },
     [](const std::vector<Tensor>& x) { return block_linear(x[0], x[1], x[2], 1, 5, 5); }},
});

}  // namespace dimix
