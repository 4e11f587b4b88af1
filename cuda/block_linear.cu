// CUDA kernels of ops/block_linear, the butterfly block-diagonal product:
// "block_linear_forward" and "block_linear_backward_weight" (the input
// gradient is the forward with W^T and the sides swapped; the bias gradient
// is a sum; both are composed by the op).
//
// x3 [outer, n_in, inner] (any strides), y3/dy3 [outer, n_out, inner]
// (contiguous), weight [G, b_out, b_in] (contiguous), bias [G, b_out] or
// undefined. Group k = a * g + s of a side with block b and stride g holds
// positions a*b*g + s + j*g, j < b (PAPERS.md 1.1).
//
// Two sets of kernels:
//  - part 1 ("block_linear_forward_simple", "..._backward_weight_simple"),
//    written to be obviously right: a thread per output element (forward),
//    and for the weight gradient a thread per (chunk of rows, weight) partial
//    sum followed by an ordered sum over chunks (deterministic). They are the
//    oracles of the tiled kernels, and run whenever a shape falls outside
//    what the tiled kernels assume, or DIMIX_CUDA_SIMPLE=1 (cuda/tiling.cuh);
//  - part 2, tiled ("block_linear_forward", "block_linear_backward_weight"):
//    see "tiled kernels" below for the scheme and its assumptions.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/tiling.cuh"

namespace dimix::cuda {
namespace {

constexpr int64_t kRowChunk = 256;

__device__ __forceinline__ int64_t group_base(int64_t k, int64_t b, int64_t g) { return (k / g) * b * g + k % g; }

template <class T>
__global__ void block_linear_forward_kernel(T* y, const T* x, const T* w, const T* bias, int64_t outer, int64_t inner,
                                            int64_t G, int64_t b_in, int64_t b_out, int64_t g_in, int64_t g_out,
                                            int64_t sxo, int64_t sxn, int64_t sxi) {
  const int64_t n_out = G * b_out;
  DIMIX_GRID_STRIDE(idx, outer * n_out * inner) {
    const int64_t i = idx % inner, p = (idx / inner) % n_out, o = idx / (inner * n_out);
    const int64_t a = p / (b_out * g_out), rem = p % (b_out * g_out), jo = rem / g_out, s = rem % g_out;
    const int64_t k = a * g_out + s;
    const T* xk = x + o * sxo + group_base(k, b_in, g_in) * sxn + i * sxi;
    const T* wk = w + (k * b_out + jo) * b_in;
    T acc = bias ? bias[k * b_out + jo] : T(0);
    for (int64_t j = 0; j < b_in; ++j) acc += wk[j] * xk[j * g_in * sxn];
    y[idx] = acc;
  }
}

// partial[c, k, jo, j] = sum over rows r of chunk c of dy[r, pos_out(k, jo)] * x[r, pos_in(k, j)].
template <class T>
__global__ void block_linear_weight_partials(T* partial, const T* dy, const T* x, int64_t outer, int64_t inner,
                                             int64_t G, int64_t b_in, int64_t b_out, int64_t g_in, int64_t g_out,
                                             int64_t sxo, int64_t sxn, int64_t sxi, int64_t chunks) {
  const int64_t n_out = G * b_out, per = G * b_out * b_in, R = outer * inner;
  DIMIX_GRID_STRIDE(idx, chunks * per) {
    const int64_t c = idx / per, e = idx - c * per;
    const int64_t k = e / (b_out * b_in), jo = (e / b_in) % b_out, j = e % b_in;
    const int64_t pin = group_base(k, b_in, g_in) + j * g_in, pout = group_base(k, b_out, g_out) + jo * g_out;
    const int64_t r1 = (c + 1) * kRowChunk < R ? (c + 1) * kRowChunk : R;
    T acc = 0;
    for (int64_t r = c * kRowChunk; r < r1; ++r) {
      const int64_t o = r / inner, i = r - o * inner;
      acc += dy[(o * n_out + pout) * inner + i] * x[o * sxo + pin * sxn + i * sxi];
    }
    partial[idx] = acc;
  }
}

template <class T>
__global__ void sum_partials(T* out, const T* partial, int64_t chunks, int64_t per) {
  DIMIX_GRID_STRIDE(e, per) {
    T s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * per + e];
    out[e] = s;
  }
}

void block_linear_forward_simple_cuda(const Tensor& y3, const Tensor& x3, const Tensor& w, const Tensor& bias, int64_t g_in,
                               int64_t g_out) {
  DIMIX_CHECK(y3.is_contiguous() && w.is_contiguous() && (!bias.defined() || bias.is_contiguous()) && x3.dim() == 3,
              "block_linear: CUDA kernel expects a 3-d x and contiguous y, weight and bias");
  DeviceContext& ctx = context_of(y3);
  const int64_t outer = x3.sizes()[0], inner = x3.sizes()[2];
  const int64_t G = w.sizes()[0], b_out = w.sizes()[1], b_in = w.sizes()[2];
  if (y3.numel() == 0) return;
  dispatch_float(x3.dtype(), "block_linear", [&]<class T>() {
    block_linear_forward_kernel<T><<<grid_for(y3.numel(), ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(y3), ptr<T>(x3), ptr<T>(w), bias.defined() ? ptr<T>(bias) : nullptr, outer, inner, G, b_in, b_out,
        g_in, g_out, x3.strides()[0], x3.strides()[1], x3.strides()[2]);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

void block_linear_backward_weight_simple_cuda(const Tensor& dw, const Tensor& dy3, const Tensor& x3, int64_t g_in,
                                       int64_t g_out) {
  DIMIX_CHECK(dw.is_contiguous() && dy3.is_contiguous() && x3.dim() == 3,
              "block_linear backward: CUDA kernel expects contiguous dw and dy");
  DeviceContext& ctx = context_of(dw);
  const int64_t outer = x3.sizes()[0], inner = x3.sizes()[2];
  const int64_t G = dw.sizes()[0], b_out = dw.sizes()[1], b_in = dw.sizes()[2], per = G * b_out * b_in;
  const int64_t R = outer * inner;
  if (per == 0) return;
  if (R == 0) {
    DIMIX_CUDA_CHECK(cudaMemsetAsync(dw.raw_data(), 0, per * dtype_size(dw.dtype()), ctx.stream));
    return;
  }
  const int64_t chunks = (R + kRowChunk - 1) / kRowChunk;
  const Tensor partial = empty({chunks, per}, dw.dtype(), dw.device());
  dispatch_float(dw.dtype(), "block_linear", [&]<class T>() {
    block_linear_weight_partials<T><<<grid_for(chunks * per, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(partial), ptr<T>(dy3), ptr<T>(x3), outer, inner, G, b_in, b_out, g_in, g_out, x3.strides()[0],
        x3.strides()[1], x3.strides()[2], chunks);
    DIMIX_CUDA_LAUNCH_CHECK();
    sum_partials<T><<<grid_for(per, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(dw), ptr<T>(partial), chunks, per);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- tiled kernels (part 2) ----------------------------------------------------------
//
// Rows r = o * inner + i (the positions' "columns"): every group's product is
// the same small GEMM on every row, so a block takes a tile of TR rows and a
// range of GT consecutive groups, gathers exactly those groups' inputs into
// shared memory with coalesced loads, and multiplies them by the weights,
// which every thread keeps in registers for RS rows at a time (each weight
// read serves RS rows; each staged input serves 4 outputs).
//
// Staging order (coalescing): when inner > 1 the rows are consecutive i
// (unit stride in x, as ops/block_linear.cpp's as_3d guarantees; any stride
// is still right, only slower), so threads run over rows; when inner == 1
// threads run over positions: with stride 1 a group's b positions are
// contiguous, with stride g > 1 neighbouring groups k, k+1 (same super-block)
// sit side by side, so the range [k0, k0 + GT) is read group-fastest.
//
// Shared tile layout: slot e = kl * b + j (local group kl, slot j), row rr at
// e * (TR + 1) + rr + e / 32: the odd pitch keeps threads reading one row of
// many slots on distinct banks, and the e / 32 skew separates slots 32 apart
// (b = 32 blocks would otherwise put every group's slot j on one bank).
//
// Assumptions (checked on the host, else the simple kernel runs): the staged
// tile fits in shared memory with TR >= 4 rows (forward: GT * b_in * 5
// elements at least, i.e. b_in up to ~4800 in f32); for the weight gradient
// also (b_out / 4) * (b_in / 4) <= 256 (blocks up to 64 x 64), since each
// thread owns a 4 x 4 tile of one group's dW for a whole chunk of rows.
//
// Arithmetic order: the forward accumulates bias + sum_j w * x over j in
// ascending order exactly as the simple kernel (the same fused multiply-adds),
// so the two agree to the bit; the weight gradient sums rows in a different
// grouping (chunks of rows, then chunks in order): deterministic on a given
// GPU, equal to the simple kernel up to rounding.

constexpr int kTileThreads = 256;

struct Sides {
  int64_t outer, inner, G;
  int b_in, b_out;
  int64_t g_in, g_out;
  int64_t sxo, sxn, sxi;  // x's element strides (y / dy are contiguous)
};

__device__ __forceinline__ int tile_index(int slot, int rr, int ld) { return slot * ld + rr + (slot >> 5); }
// Elements of a tile of `slots` slots and TR rows (pitch TR + 1, skew).
__host__ __device__ inline int64_t tile_elems(int64_t slots, int TR) { return slots * (TR + 1) + slots / 32 + 1; }

// Row offsets of the tile's rows: x's o * sxo + i * sxi and the contiguous
// [outer, n_out, inner] tensor's o * n_out * inner + i (rows past R get 0).
__device__ __forceinline__ void row_offsets(int64_t* off_x, int64_t* off_y, const Sides& d, int64_t r0, int64_t R,
                                            int TR) {
  const int64_t n_out = d.G * d.b_out;
  for (int rr = threadIdx.x; rr < TR; rr += blockDim.x) {
    const int64_t r = r0 + rr < R ? r0 + rr : 0;
    const int64_t o = r / d.inner, i = r - o * d.inner;
    off_x[rr] = o * d.sxo + i * d.sxi;
    off_y[rr] = o * n_out * d.inner + i;
  }
}

// Gathers groups [k0, k0 + gt) of one side (block b, stride g, element
// stride sn along the mixed dim; row offsets `off`) for rows [0, rows) of
// the tile into `tile`; rows past `rows` are zero.
template <class T>
__device__ __forceinline__ void gather_groups(T* tile, const T* src, const int64_t* off, int64_t sn, bool rows_fast,
                                              int rows, int TR, int64_t k0, int gt, int b, int64_t g) {
  const int slots = gt * b, total = slots * TR, ld = TR + 1;
  for (int e = threadIdx.x; e < total; e += blockDim.x) {
    int rr, kl, j;
    if (rows_fast) {
      rr = e % TR;
      const int s = e / TR;
      kl = s / b;
      j = s - kl * b;
    } else {
      rr = e / slots;
      const int s = e - rr * slots;
      if (g == 1) {
        kl = s / b;
        j = s - kl * b;
      } else {
        kl = s % gt;
        j = s / gt;
      }
    }
    T v = T(0);
    if (rr < rows) {
      const int64_t k = k0 + kl;
      v = src[off[rr] + (group_base(k, b, g) + j * g) * sn];
    }
    tile[tile_index(kl * b + j, rr, ld)] = v;
  }
}

template <class T, int RS>
__global__ void __launch_bounds__(kTileThreads)
    block_linear_forward_tiled(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                               const T* __restrict__ bias, Sides d, int TR, int GT) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  int64_t* off_x = reinterpret_cast<int64_t*>(smem_raw);
  int64_t* off_y = off_x + TR;
  T* xs = reinterpret_cast<T*>(off_y + TR);
  const int64_t R = d.outer * d.inner;
  const int64_t row_tiles = (R + TR - 1) / TR, group_tiles = (d.G + GT - 1) / GT;
  const int b_in = d.b_in, b_out = d.b_out, quads = (b_out + 3) / 4, ld = TR + 1;
  const bool rows_fast = d.inner > 1;
  for (int64_t tile = blockIdx.x; tile < row_tiles * group_tiles; tile += gridDim.x) {
    const int64_t r0 = (tile / group_tiles) * TR, k0 = (tile % group_tiles) * GT;
    const int rows = static_cast<int>(R - r0 < TR ? R - r0 : TR);
    const int gt = static_cast<int>(d.G - k0 < GT ? d.G - k0 : GT);
    __syncthreads();  // the previous tile's readers are done with off_* and xs
    row_offsets(off_x, off_y, d, r0, R, TR);
    __syncthreads();
    gather_groups(xs, x, off_x, d.sxn, rows_fast, rows, TR, k0, gt, b_in, d.g_in);
    __syncthreads();
    // Task = (row subtile st, local group kl, output quad q); neighbouring
    // threads take neighbouring outputs in memory (quads when g_out = 1,
    // groups when g_out > 1) so the stores coalesce.
    const int tasks = (TR / RS) * gt * quads;
    for (int task = threadIdx.x; task < tasks; task += blockDim.x) {
      int kl, q, st;
      if (d.g_out == 1) {
        q = task % quads;
        kl = (task / quads) % gt;
        st = task / (quads * gt);
      } else {
        kl = task % gt;
        q = (task / gt) % quads;
        st = task / (gt * quads);
      }
      const int64_t k = k0 + kl;
      const int jo0 = q * 4;
      T acc[RS][4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const T bv = bias != nullptr && jo0 + u < b_out ? bias[k * b_out + jo0 + u] : T(0);
#pragma unroll
        for (int rr = 0; rr < RS; ++rr) acc[rr][u] = bv;
      }
      const T* wk = w + (k * b_out + jo0) * b_in;
      for (int j = 0; j < b_in; ++j) {
        T wv[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) wv[u] = jo0 + u < b_out ? __ldg(wk + static_cast<int64_t>(u) * b_in + j) : T(0);
        const T* xr = xs + tile_index(kl * b_in + j, st * RS, ld);
#pragma unroll
        for (int rr = 0; rr < RS; ++rr) {
          const T xv = xr[rr];
#pragma unroll
          for (int u = 0; u < 4; ++u) acc[rr][u] += wv[u] * xv;
        }
      }
      const int64_t out_base = group_base(k, b_out, d.g_out);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (jo0 + u >= b_out) continue;
        const int64_t pos = (out_base + static_cast<int64_t>(jo0 + u) * d.g_out) * d.inner;
#pragma unroll
        for (int rr = 0; rr < RS; ++rr)
          if (st * RS + rr < rows) y[off_y[st * RS + rr] + pos] = acc[rr][u];
      }
    }
  }
}

// partial[c, k, jo, j] = sum over the rows of chunk c of dy[r, pos_out(k, jo)] * x[r, pos_in(k, j)].
// Work item = (chunk c, group range); thread = a 4 x 4 tile (group kl, output
// quad, input quad) of dW, accumulated over every row of the chunk in order.
template <class T>
__global__ void __launch_bounds__(kTileThreads)
    block_linear_weight_tiled(T* __restrict__ partial, const T* __restrict__ dy, const T* __restrict__ x, Sides d,
                              int TR, int GT, int64_t rows_per_chunk, int64_t chunks) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  int64_t* off_x = reinterpret_cast<int64_t*>(smem_raw);
  int64_t* off_y = off_x + TR;
  T* xs = reinterpret_cast<T*>(off_y + TR);
  T* ys = xs + tile_elems(static_cast<int64_t>(GT) * d.b_in, TR);
  const int64_t R = d.outer * d.inner, per = d.G * d.b_out * d.b_in;
  const int64_t group_tiles = (d.G + GT - 1) / GT;
  const int b_in = d.b_in, b_out = d.b_out, qo = (b_out + 3) / 4, qi = (b_in + 3) / 4, ld = TR + 1;
  const bool rows_fast = d.inner > 1;
  for (int64_t item = blockIdx.x; item < chunks * group_tiles; item += gridDim.x) {
    const int64_t c = item / group_tiles, k0 = (item % group_tiles) * GT;
    const int gt = static_cast<int>(d.G - k0 < GT ? d.G - k0 : GT);
    const int64_t r_begin = c * rows_per_chunk, r_end = r_begin + rows_per_chunk < R ? r_begin + rows_per_chunk : R;
    const int task = threadIdx.x;
    const bool active = task < gt * qo * qi;
    const int kl = active ? task / (qo * qi) : 0;
    const int jo0 = active ? ((task / qi) % qo) * 4 : 0, j0 = active ? (task % qi) * 4 : 0;
    T acc[4][4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[u][v] = T(0);
    for (int64_t r0 = r_begin; r0 < r_end; r0 += TR) {
      const int rows = static_cast<int>(r_end - r0 < TR ? r_end - r0 : TR);
      __syncthreads();
      row_offsets(off_x, off_y, d, r0, R, TR);
      __syncthreads();
      gather_groups(xs, x, off_x, d.sxn, rows_fast, rows, TR, k0, gt, b_in, d.g_in);
      // dy is contiguous [outer, n_out, inner]: element stride `inner` along the mixed dim.
      gather_groups(ys, dy, off_y, d.inner, rows_fast, rows, TR, k0, gt, b_out, d.g_out);
      __syncthreads();
      if (!active) continue;
      for (int rr = 0; rr < rows; ++rr) {
        T dv[4], xv[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) dv[u] = jo0 + u < b_out ? ys[tile_index(kl * b_out + jo0 + u, rr, ld)] : T(0);
#pragma unroll
        for (int v = 0; v < 4; ++v) xv[v] = j0 + v < b_in ? xs[tile_index(kl * b_in + j0 + v, rr, ld)] : T(0);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
          for (int v = 0; v < 4; ++v) acc[u][v] += dv[u] * xv[v];
      }
    }
    if (active) {
      T* out = partial + c * per + ((k0 + kl) * b_out) * b_in;
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v)
          if (jo0 + u < b_out && j0 + v < b_in) out[(jo0 + u) * b_in + j0 + v] = acc[u][v];
    }
  }
}

Sides sides_of(const Tensor& x3, const Tensor& w, int64_t g_in, int64_t g_out) {
  return Sides{x3.sizes()[0],   x3.sizes()[2],    w.sizes()[0],     static_cast<int>(w.sizes()[2]),
               static_cast<int>(w.sizes()[1]), g_in, g_out, x3.strides()[0], x3.strides()[1], x3.strides()[2]};
}

// A launch plan: rows per tile TR, groups per tile GT, rows per thread RS,
// dynamic shared memory bytes. ok = false: the simple kernel runs instead.
struct TilePlan {
  bool ok = false;
  int TR = 0, GT = 0, RS = 1;
  size_t smem = 0;
};

TilePlan plan_forward(const Sides& d, size_t elem, size_t budget) {
  TilePlan p;
  // Blocks this big would not leave TR >= 4 rows in shared memory; int
  // indexing inside a tile needs them small anyway.
  if (d.b_in > (1 << 20) || d.b_out > (1 << 20)) return p;
  // About 128 staged positions per row: a whole row for the paper's small
  // levels (n = 64, 121), a few groups for n = 1024.
  const int64_t GT = std::max<int64_t>(1, std::min<int64_t>(d.G, 128 / d.b_in));
  for (int TR : {64, 32, 16, 8, 4}) {
    const size_t bytes = 2 * TR * sizeof(int64_t) + tile_elems(GT * d.b_in, TR) * elem;
    if (bytes <= budget) {
      p = TilePlan{true, TR, static_cast<int>(GT), 1, bytes};
      break;
    }
  }
  if (!p.ok) return p;
  // The most rows per thread that still gives every thread a task.
  const int64_t quads = (d.b_out + 3) / 4;
  for (int RS : {8, 4, 2, 1}) {
    if (RS > p.TR) continue;
    if ((p.TR / RS) * GT * quads >= kTileThreads || RS == 1) {
      p.RS = RS;
      break;
    }
  }
  return p;
}

TilePlan plan_weight(const Sides& d, size_t elem, size_t budget) {
  TilePlan best;
  const int64_t per_group = static_cast<int64_t>((d.b_out + 3) / 4) * ((d.b_in + 3) / 4);
  if (per_group > kTileThreads) return best;
  const int64_t gt_max = std::max<int64_t>(1, std::min<int64_t>(d.G, kTileThreads / per_group));
  int64_t best_busy = 0;
  for (int TR : {32, 16, 8, 4}) {
    for (int64_t GT = gt_max; GT >= 1; --GT) {
      const size_t bytes = 2 * TR * sizeof(int64_t) +
                           (tile_elems(GT * d.b_in, TR) + tile_elems(GT * d.b_out, TR)) * elem;
      if (bytes > budget) continue;
      // Busy threads; ties keep the larger TR (fewer synchronisations per row).
      if (GT * per_group > best_busy) {
        best_busy = GT * per_group;
        best = TilePlan{true, TR, static_cast<int>(GT), 1, bytes};
      }
      break;
    }
  }
  return best;
}

void block_linear_forward_cuda(const Tensor& y3, const Tensor& x3, const Tensor& w, const Tensor& bias, int64_t g_in,
                               int64_t g_out) {
  DIMIX_CHECK(y3.is_contiguous() && w.is_contiguous() && (!bias.defined() || bias.is_contiguous()) && x3.dim() == 3,
              "block_linear: CUDA kernel expects a 3-d x and contiguous y, weight and bias");
  DeviceContext& ctx = context_of(y3);
  if (y3.numel() == 0) return;
  const Sides d = sides_of(x3, w, g_in, g_out);
  const TilePlan p = use_simple_kernels() ? TilePlan{} : plan_forward(d, dtype_size(x3.dtype()), smem_budget(ctx));
  if (!p.ok) return block_linear_forward_simple_cuda(y3, x3, w, bias, g_in, g_out);
  const int64_t tiles = ((d.outer * d.inner + p.TR - 1) / p.TR) * ((d.G + p.GT - 1) / p.GT);
  dispatch_float(x3.dtype(), "block_linear", [&]<class T>() {
    auto launch = [&]<int RS>() {
      auto* kernel = &block_linear_forward_tiled<T, RS>;
      allow_smem(kernel, p.smem);
      kernel<<<tile_grid(tiles, ctx), kTileThreads, p.smem, ctx.stream>>>(
          ptr<T>(y3), ptr<T>(x3), ptr<T>(w), bias.defined() ? ptr<T>(bias) : nullptr, d, p.TR, p.GT);
      DIMIX_CUDA_LAUNCH_CHECK();
    };
    switch (p.RS) {
      case 8: launch.template operator()<8>(); break;
      case 4: launch.template operator()<4>(); break;
      case 2: launch.template operator()<2>(); break;
      default: launch.template operator()<1>(); break;
    }
  });
}

void block_linear_backward_weight_cuda(const Tensor& dw, const Tensor& dy3, const Tensor& x3, int64_t g_in,
                                       int64_t g_out) {
  DIMIX_CHECK(dw.is_contiguous() && dy3.is_contiguous() && x3.dim() == 3,
              "block_linear backward: CUDA kernel expects contiguous dw and dy");
  DeviceContext& ctx = context_of(dw);
  const Sides d = sides_of(x3, dw, g_in, g_out);
  const int64_t per = d.G * d.b_out * d.b_in, R = d.outer * d.inner;
  const TilePlan p = use_simple_kernels() || per == 0 || R == 0
                         ? TilePlan{}
                         : plan_weight(d, dtype_size(x3.dtype()), smem_budget(ctx));
  if (!p.ok) return block_linear_backward_weight_simple_cuda(dw, dy3, x3, g_in, g_out);
  // Chunks of rows: enough (chunk, group range) items for ~4 blocks per SM,
  // each chunk a whole number of row tiles. Depends on the SM count only, so
  // a given GPU gives the same bits every run.
  const int64_t group_tiles = (d.G + p.GT - 1) / p.GT;
  const int64_t want_chunks = std::max<int64_t>(1, (4 * static_cast<int64_t>(ctx.num_sms) + group_tiles - 1) / group_tiles);
  int64_t rows_per_chunk = (R + want_chunks - 1) / want_chunks;
  rows_per_chunk = std::max<int64_t>(p.TR, (rows_per_chunk + p.TR - 1) / p.TR * p.TR);
  const int64_t chunks = (R + rows_per_chunk - 1) / rows_per_chunk;
  const Tensor partial = empty({chunks, per}, dw.dtype(), dw.device());
  dispatch_float(dw.dtype(), "block_linear", [&]<class T>() {
    auto* kernel = &block_linear_weight_tiled<T>;
    allow_smem(kernel, p.smem);
    kernel<<<tile_grid(chunks * group_tiles, ctx), kTileThreads, p.smem, ctx.stream>>>(
        ptr<T>(partial), ptr<T>(dy3), ptr<T>(x3), d, p.TR, p.GT, rows_per_chunk, chunks);
    DIMIX_CUDA_LAUNCH_CHECK();
    sum_partials<T><<<grid_for(per, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(dw), ptr<T>(partial), chunks, per);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}
}  // namespace

// The tiled kernels under the names the op calls; the part-1 kernels stay
// reachable as the oracles (tests/ops/test_cuda_fused.cpp).
DIMIX_REGISTER_KERNEL("block_linear_forward", block_linear_forward_cuda);
DIMIX_REGISTER_KERNEL("block_linear_backward_weight", block_linear_backward_weight_cuda);
DIMIX_REGISTER_KERNEL("block_linear_forward_simple", block_linear_forward_simple_cuda);
DIMIX_REGISTER_KERNEL("block_linear_backward_weight_simple", block_linear_backward_weight_simple_cuda);

}  // namespace dimix::cuda
