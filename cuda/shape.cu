// CUDA kernels of ops/shape's index ops: index_select, index_add, gather,
// scatter_add and where.
//
// Operands are seen as [outer, n, inner] around the indexed dim d (outer and
// inner walked with x's own strides, so no operand needs to be contiguous);
// outputs are fresh contiguous tensors. Indices are i64 or i32, checked
// against the dim size: a bad one is a dimix::Error with the CPU's message
// (index ops wait for their kernel to learn that; see IndexChecker).
//
// Determinism: index_add sums each output row over its source rows in
// source order (the rows are grouped on the host first), and scatter_add
// lets each output element walk the index column in order, so both add in
// the CPU's order and give bit-identical results run to run. scatter_add
// with long index columns (k > 64) uses atomics instead (order not fixed).
#include "cuda/common.cuh"

#include <vector>

namespace dimix::cuda {
namespace {

// Sizes/strides of the dims before and after d (size-1 dims are harmless).
void split_dims(const Tensor& t, const Shape& sizes, int64_t d, Shape& outer_s, Shape& outer_st, Shape& inner_s,
                Shape& inner_st) {
  for (int64_t i = 0; i < static_cast<int64_t>(sizes.size()); ++i) {
    if (i < d) { outer_s.push_back(sizes[i]); outer_st.push_back(t.strides()[i]); }
    if (i > d) { inner_s.push_back(sizes[i]); inner_st.push_back(t.strides()[i]); }
  }
}

int64_t prod(const Shape& s) { return shape_numel(s); }

// Waits for the kernel; throws the CPU path's message for the first bad index.
void report_bad_index(DeviceContext& ctx, const char* op, const Tensor& index, int64_t n) {
  const int64_t pos = first_bad_index(ctx);
  if (pos >= 0)
    DIMIX_FAIL(op, ": index ", index_value_at(index, pos), " out of range for a dim of size ", n);
}

// ---- index_select -----------------------------------------------------------------------
template <class T, class I>
__global__ void index_select_kernel(T* out, const T* x, const I* index, int64_t index_stride, int64_t k, int64_t n,
                                    int64_t x_dim_stride, int64_t inner, int64_t total, StridedIndex<1> outer_x,
                                    StridedIndex<1> inner_x, IndexChecker bad) {
  DIMIX_GRID_STRIDE(i, total) {
    const int64_t r = i % inner, q = i / inner, j = q % k, o = q / k;
    const int64_t v = static_cast<int64_t>(index[j * index_stride]);
    if (v < 0 || v >= n) {
      bad.report(j);
      out[i] = T(0);
      continue;
    }
    int64_t a[1], b[1];
    outer_x.offsets(o, a);
    inner_x.offsets(r, b);
    out[i] = x[a[0] + v * x_dim_stride + b[0]];
  }
}

void index_select_cuda(const Tensor& out, const Tensor& x, int64_t d, const Tensor& index) {
  DeviceContext& ctx = context_of(out);
  const int64_t total = out.numel(), n = x.sizes()[d], k = index.numel();
  if (total == 0) return;
  Shape os, ost, is, ist;
  split_dims(x, x.sizes(), d, os, ost, is, ist);
  const auto outer_x = make_strided_index<1>(os, {&ost}, "index_select");
  const auto inner_x = make_strided_index<1>(is, {&ist}, "index_select");
  const IndexChecker bad = index_checker(ctx);
  dispatch_all(x.dtype(), "index_select", [&]<class T>() {
    dispatch_index_types(index.dtype(), "index_select", [&]<class I>() {
      index_select_kernel<T, I><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(
          ptr<T>(out), ptr<T>(x), ptr<I>(index), index.strides()[0], k, n, x.strides()[d], prod(is), total, outer_x,
          inner_x, bad);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
  report_bad_index(ctx, "index_select", index, n);
}

// ---- index_add --------------------------------------------------------------------------
// out [outer, n, inner] (contiguous, zeros) gets row t = sum over the source
// rows j with index[j] == t, in increasing j: rows_of[t] .. rows_of[t+1]
// delimit them in `rows`.
template <class T>
__global__ void index_add_kernel(T* out, const T* src, const int64_t* rows_of, const int64_t* rows, int64_t n,
                                 int64_t inner, int64_t total, int64_t src_dim_stride, StridedIndex<1> outer_src,
                                 StridedIndex<1> inner_src) {
  DIMIX_GRID_STRIDE(i, total) {
    const int64_t r = i % inner, q = i / inner, t = q % n, o = q / n;
    int64_t a[1], b[1];
    outer_src.offsets(o, a);
    inner_src.offsets(r, b);
    T acc = out[i];
    for (int64_t p = rows_of[t]; p < rows_of[t + 1]; ++p) acc += src[a[0] + rows[p] * src_dim_stride + b[0]];
    out[i] = acc;
  }
}

void index_add_cuda(const Tensor& out, int64_t d, const Tensor& index, const Tensor& src) {
  DeviceContext& ctx = context_of(out);
  DIMIX_CHECK(out.is_contiguous(), "index_add: expected a contiguous output");
  const int64_t total = out.numel(), n = out.sizes()[d], k = index.numel();
  DIMIX_CHECK(src.dim() == out.dim() && src.sizes()[d] == k, "index_add: source ", src.shape_str(), " does not have ",
              k, " rows along dim ", d);
  if (total == 0 || k == 0) {
    group_rows(index, n, "index_add", out.device());  // still range-checks
    return;
  }
  const GroupedRows grouped = group_rows(index, n, "index_add", out.device());
  context_of(out);  // the transfers may have switched devices
  Shape os, ost, is, ist;
  split_dims(src, src.sizes(), d, os, ost, is, ist);
  const auto outer_src = make_strided_index<1>(os, {&ost}, "index_add");
  const auto inner_src = make_strided_index<1>(is, {&ist}, "index_add");
  dispatch_float(out.dtype(), "index_add", [&]<class T>() {
    index_add_kernel<T><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(
        ptr<T>(out), ptr<T>(src), ptr<int64_t>(grouped.rows_of), ptr<int64_t>(grouped.rows), n, prod(is), total,
        src.strides()[d], outer_src, inner_src);
    DIMIX_CUDA_LAUNCH_CHECK();
  });
}

// ---- gather -----------------------------------------------------------------------------
// Walks index's shape; off[0] addresses index, off[1] addresses x at the same
// position except along d (stride 0 there), where the index value goes.
template <class T, class I>
__global__ void gather_kernel(T* out, const T* x, const I* index, int64_t n, int64_t x_dim_stride, int64_t total,
                              StridedIndex<2> idx, IndexChecker bad) {
  DIMIX_GRID_STRIDE(i, total) {
    int64_t off[2];
    idx.offsets(i, off);
    const int64_t v = static_cast<int64_t>(index[off[0]]);
    if (v < 0 || v >= n) {
      bad.report(i);
      out[i] = T(0);
      continue;
    }
    out[i] = x[off[1] + v * x_dim_stride];
  }
}

void gather_cuda(const Tensor& out, const Tensor& x, int64_t d, const Tensor& index) {
  DeviceContext& ctx = context_of(out);
  const int64_t total = out.numel(), n = x.sizes()[d];
  if (total == 0) return;
  Shape xs = x.strides();
  xs[d] = 0;
  const auto idx = make_strided_index<2>(index.sizes(), {&index.strides(), &xs}, "gather");
  const IndexChecker bad = index_checker(ctx);
  dispatch_all(x.dtype(), "gather", [&]<class T>() {
    dispatch_index_types(index.dtype(), "gather", [&]<class I>() {
      gather_kernel<T, I><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(out), ptr<T>(x), ptr<I>(index),
                                                                            n, x.strides()[d], total, idx, bad);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
  report_bad_index(ctx, "gather", index, n);
}

// ---- scatter_add ------------------------------------------------------------------------
template <class I>
__global__ void check_range_kernel(const I* index, int64_t n, int64_t total, StridedIndex<1> idx, IndexChecker bad) {
  DIMIX_GRID_STRIDE(i, total) {
    int64_t off[1];
    idx.offsets(i, off);
    const int64_t v = static_cast<int64_t>(index[off[0]]);
    if (v < 0 || v >= n) bad.report(i);
  }
}

// One thread per output element (o, t, r) of out [outer, n, inner]: adds,
// in order j = 0..k-1, src[o, j, r] where index[o, j, r] == t.
template <class T, class I>
__global__ void scatter_add_ordered(T* out, const T* src, const I* index, int64_t n, int64_t k, int64_t inner,
                                    int64_t total, int64_t src_dim_stride, int64_t index_dim_stride,
                                    StridedIndex<2> outer, StridedIndex<2> inner_idx) {
  DIMIX_GRID_STRIDE(i, total) {
    const int64_t r = i % inner, q = i / inner, t = q % n, o = q / n;
    int64_t a[2], b[2];
    outer.offsets(o, a);  // [index, src]
    inner_idx.offsets(r, b);
    const int64_t ib = a[0] + b[0], sb = a[1] + b[1];
    T acc = out[i];
    for (int64_t j = 0; j < k; ++j)
      if (static_cast<int64_t>(index[ib + j * index_dim_stride]) == t) acc += src[sb + j * src_dim_stride];
    out[i] = acc;
  }
}

// One thread per index element, atomically adding into out (contiguous).
template <class T, class I>
__global__ void scatter_add_atomic(T* out, const T* src, const I* index, int64_t n, int64_t total,
                                   StridedIndex<3> idx, int64_t out_dim_stride) {
  DIMIX_GRID_STRIDE(i, total) {
    int64_t off[3];
    idx.offsets(i, off);  // [index, src, out without d]
    const int64_t v = static_cast<int64_t>(index[off[0]]);
    if (v >= 0 && v < n) atomicAdd(out + off[2] + v * out_dim_stride, src[off[1]]);
  }
}

void scatter_add_cuda(const Tensor& out, int64_t d, const Tensor& index, const Tensor& src) {
  DeviceContext& ctx = context_of(out);
  DIMIX_CHECK(out.is_contiguous(), "scatter_add: expected a contiguous output");
  DIMIX_CHECK(src.sizes() == index.sizes(), "scatter_add: source shape ", src.shape_str(), " differs from index shape ",
              index.shape_str());
  const int64_t n = out.sizes()[d], k = index.sizes()[d], icount = index.numel();
  if (icount == 0) return;
  const IndexChecker bad = index_checker(ctx);
  dispatch_float(out.dtype(), "scatter_add", [&]<class T>() {
    dispatch_index_types(index.dtype(), "scatter_add", [&]<class I>() {
      {
        const auto all = make_strided_index<1>(index.sizes(), {&index.strides()}, "scatter_add");
        check_range_kernel<I><<<grid_for(icount, ctx), kThreads, 0, ctx.stream>>>(ptr<I>(index), n, icount, all, bad);
        DIMIX_CUDA_LAUNCH_CHECK();
      }
      const int64_t total = out.numel();
      if (total == 0) return;
      if (k <= 64) {
        Shape os, ist_o, sst_o, is, ist_i, sst_i, dummy1, dummy2;
        split_dims(index, index.sizes(), d, os, ist_o, is, ist_i);
        split_dims(src, src.sizes(), d, dummy1, sst_o, dummy2, sst_i);
        const auto outer = make_strided_index<2>(os, {&ist_o, &sst_o}, "scatter_add");
        const auto inner_idx = make_strided_index<2>(is, {&ist_i, &sst_i}, "scatter_add");
        scatter_add_ordered<T, I><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(
            ptr<T>(out), ptr<T>(src), ptr<I>(index), n, k, prod(is), total, src.strides()[d], index.strides()[d],
            outer, inner_idx);
      } else {
        Shape ost = out.strides();
        ost[d] = 0;
        const auto idx =
            make_strided_index<3>(index.sizes(), {&index.strides(), &src.strides(), &ost}, "scatter_add");
        scatter_add_atomic<T, I><<<grid_for(icount, ctx), kThreads, 0, ctx.stream>>>(
            ptr<T>(out), ptr<T>(src), ptr<I>(index), n, icount, idx, out.strides()[d]);
      }
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
  report_bad_index(ctx, "scatter_add", index, n);
}

// ---- where ------------------------------------------------------------------------------
template <class T, class C>
__global__ void where_kernel(T* out, const C* cond, const T* a, const T* b, int64_t total, StridedIndex<4> idx) {
  DIMIX_GRID_STRIDE(i, total) {
    int64_t off[4];
    idx.offsets(i, off);
    out[off[0]] = cond[off[1]] != C(0) ? a[off[2]] : b[off[3]];
  }
}

void where_cuda(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  DeviceContext& ctx = context_of(out);
  const int64_t total = out.numel();
  if (total == 0) return;
  const Shape sc = broadcast_strides_to(cond, out.sizes()), sa = broadcast_strides_to(a, out.sizes()),
              sb = broadcast_strides_to(b, out.sizes());
  const auto idx = make_strided_index<4>(out.sizes(), {&out.strides(), &sc, &sa, &sb}, "where");
  dispatch_all(out.dtype(), "where", [&]<class T>() {
    dispatch_all(cond.dtype(), "where", [&]<class C>() {
      where_kernel<T, C><<<grid_for(total, ctx), kThreads, 0, ctx.stream>>>(ptr<T>(out), ptr<C>(cond), ptr<T>(a),
                                                                           ptr<T>(b), total, idx);
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace

GroupedRows group_rows(const Tensor& index, int64_t n, const char* op, Device device) {
  const std::vector<int64_t> idx = index.contiguous_raw().to_vector<int64_t>();
  const int64_t k = static_cast<int64_t>(idx.size());
  std::vector<int64_t> rows_of(n + 1, 0), rows(k);
  for (int64_t j = 0; j < k; ++j) {
    DIMIX_CHECK(idx[j] >= 0 && idx[j] < n, op, ": index ", idx[j], " out of range for a dim of size ", n);
    rows_of[idx[j] + 1]++;
  }
  for (int64_t t = 0; t < n; ++t) rows_of[t + 1] += rows_of[t];
  std::vector<int64_t> next(rows_of.begin(), rows_of.end() - 1);
  for (int64_t j = 0; j < k; ++j) rows[next[idx[j]]++] = j;
  return {to_device_raw(from_vector<int64_t>(rows_of, {n + 1}), device),
          to_device_raw(from_vector<int64_t>(rows, {k}), device)};
}

DIMIX_REGISTER_KERNEL("index_select", index_select_cuda);
DIMIX_REGISTER_KERNEL("index_add", index_add_cuda);
DIMIX_REGISTER_KERNEL("gather", gather_cuda);
DIMIX_REGISTER_KERNEL("scatter_add", scatter_add_cuda);
DIMIX_REGISTER_KERNEL("where", where_cuda);

}  // namespace dimix::cuda
