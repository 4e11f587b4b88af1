// CUDA kernels of ops/conv2d through cuDNN (its legacy convolution API,
// still in cuDNN 9): "conv2d_forward" and "conv2d_backward". NCHW, contiguous,
// f32 or f64; weight [O, C/groups, kh, kw]; dilation 1, cross-correlation
// (what deep-learning "convolution" means).
//
// Algorithms come from cuDNN's heuristics (no benchmarking runs); the
// backward takes only algorithms cuDNN reports deterministic, so gradients
// are the same bits run to run. f32 uses FMA math (no TF32) unless
// cuda::set_allow_tf32(true). Workspaces come from the caching allocator.
// The cuDNN handle is per device, made on first use and bound to the
// device's stream.
#include "cuda/common.cuh"

#ifdef DIMIX_HAVE_CUDNN
#include <cudnn.h>

#include <memory>
#include <mutex>
#include <vector>

namespace dimix::cuda {
namespace {

[[noreturn]] void fail_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  DIMIX_FAIL("cuDNN error: ", cudnnGetErrorString(s), " (", static_cast<int>(s), ") in ", expr, " at ", file, ":",
             line);
}
#define DIMIX_CUDNN_CHECK(expr)                                                                   \
  do {                                                                                            \
    const cudnnStatus_t dimix_s_ = (expr);                                                        \
    if (dimix_s_ != CUDNN_STATUS_SUCCESS) fail_cudnn(dimix_s_, #expr, __FILE__, __LINE__);        \
  } while (0)

cudnnHandle_t cudnn_handle(DeviceContext& ctx) {
  static std::mutex mu;
  static std::vector<cudnnHandle_t>* handles = new std::vector<cudnnHandle_t>(device_count(), nullptr);  // leaked
  std::lock_guard<std::mutex> lock(mu);
  cudnnHandle_t& h = (*handles)[ctx.device];
  if (!h) {
    DIMIX_CUDNN_CHECK(cudnnCreate(&h));
    DIMIX_CUDNN_CHECK(cudnnSetStream(h, ctx.stream));
  }
  return h;
}

// RAII owners of the descriptors of one call.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(cudnnDataType_t t, int n, int c, int h, int w) {
    DIMIX_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    DIMIX_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, t, n, c, h, w));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(cudnnDataType_t t, int o, int c, int h, int w) {
    DIMIX_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    DIMIX_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, t, CUDNN_TENSOR_NCHW, o, c, h, w));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(cudnnDataType_t t, int pad, int stride, int groups) {
    DIMIX_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    DIMIX_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, t));
    DIMIX_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, groups));
    DIMIX_CUDNN_CHECK(cudnnSetConvolutionMathType(
        d, t == CUDNN_DATA_FLOAT && allow_tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
};

int as_int(int64_t v, const char* what) {
  DIMIX_CHECK(v >= 0 && v <= INT32_MAX, "conv2d: ", what, " = ", v, " exceeds cuDNN's 32-bit limit");
  return static_cast<int>(v);
}

// Everything one call needs: descriptors for x, weight, out and the conv.
struct ConvCall {
  cudnnDataType_t type;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  ConvCall(const Tensor& xt, const Tensor& wt, const Tensor& yt, int64_t stride, int64_t padding, int64_t groups,
           cudnnDataType_t t)
      : type(t),
        x(t, as_int(xt.sizes()[0], "N"), as_int(xt.sizes()[1], "C"), as_int(xt.sizes()[2], "H"),
          as_int(xt.sizes()[3], "W")),
        y(t, as_int(yt.sizes()[0], "N"), as_int(yt.sizes()[1], "O"), as_int(yt.sizes()[2], "Ho"),
          as_int(yt.sizes()[3], "Wo")),
        w(t, as_int(wt.sizes()[0], "O"), as_int(wt.sizes()[1], "C/groups"), as_int(wt.sizes()[2], "kh"),
          as_int(wt.sizes()[3], "kw")),
        conv(t, as_int(padding, "padding"), as_int(stride, "stride"), as_int(groups, "groups")) {}
};

cudnnDataType_t data_type(const Tensor& t) {
  if (t.dtype() == DType::f32) return CUDNN_DATA_FLOAT;
  if (t.dtype() == DType::f64) return CUDNN_DATA_DOUBLE;
  DIMIX_FAIL("conv2d: expected f32 or f64, got ", dtype_name(t.dtype()));
}

// Picks the first algorithm of cuDNN's ranked list that is usable (and
// deterministic when asked).
template <class Perf>
auto pick(const Perf* perf, int count, bool deterministic, const char* what) -> decltype(perf[0].algo) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    return perf[i].algo;
  }
  DIMIX_FAIL("conv2d: cuDNN offers no usable ", deterministic ? "deterministic " : "", what, " algorithm");
}

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(bytes)}, DType::u8, device);
}

void conv2d_forward_cuda(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                         int64_t padding, int64_t groups) {
  DIMIX_CHECK(out.is_contiguous() && x.is_contiguous() && weight.is_contiguous(),
              "conv2d: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(out);
  if (out.numel() == 0) return;
  cudnnHandle_t h = cudnn_handle(ctx);
  const cudnnDataType_t t = data_type(x);
  ConvCall c(x, weight, out, stride, padding, groups, t);
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int found = 0;
  DIMIX_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, c.x.d, c.w.d, c.conv.d, c.y.d,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
  const auto algo = pick(perf, found, false, "forward");
  size_t ws_bytes = 0;
  DIMIX_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, c.x.d, c.w.d, c.conv.d, c.y.d, algo, &ws_bytes));
  const Tensor ws = workspace(ws_bytes, out.device());
  dispatch_float(x.dtype(), "conv2d", [&]<class T>() {
    const T one = 1, zero = 0;
    DIMIX_CUDNN_CHECK(cudnnConvolutionForward(h, &one, c.x.d, x.raw_data(), c.w.d, weight.raw_data(), c.conv.d, algo,
                                              ws_bytes ? ws.raw_data() : nullptr, ws_bytes, &zero, c.y.d,
                                              out.raw_data()));
    if (bias.defined()) {
      TensorDesc bd(t, 1, as_int(bias.numel(), "O"), 1, 1);
      DIMIX_CUDNN_CHECK(cudnnAddTensor(h, &one, bd.d, bias.raw_data(), &one, c.y.d, out.raw_data()));
    }
  });
  if (sync_debug()) DIMIX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

void conv2d_backward_cuda(const Tensor& gx, const Tensor& gw, const Tensor& gb, const Tensor& gout, const Tensor& x,
                          const Tensor& weight, int64_t stride, int64_t padding, int64_t groups) {
  DIMIX_CHECK(gout.is_contiguous() && x.is_contiguous() && weight.is_contiguous(),
              "conv2d backward: CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(x);
  const size_t elem = dtype_size(x.dtype());
  if (gout.numel() == 0) {  // an empty batch: zero gradients
    for (const Tensor* g : {&gx, &gw, &gb})
      if (g->defined() && g->numel() > 0)
        DIMIX_CUDA_CHECK(cudaMemsetAsync(g->raw_data(), 0, g->numel() * elem, ctx.stream));
    return;
  }
  cudnnHandle_t h = cudnn_handle(ctx);
  const cudnnDataType_t t = data_type(x);
  ConvCall c(x, weight, gout, stride, padding, groups, t);
  dispatch_float(x.dtype(), "conv2d", [&]<class T>() {
    const T one = 1, zero = 0;
    if (gb.defined()) {
      TensorDesc bd(t, 1, as_int(gb.numel(), "O"), 1, 1);
      DIMIX_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &one, c.y.d, gout.raw_data(), &zero, bd.d, gb.raw_data()));
    }
    if (gw.defined()) {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int found = 0;
      DIMIX_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          h, c.x.d, c.y.d, c.conv.d, c.w.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf));
      const auto algo = pick(perf, found, true, "weight-gradient");
      size_t ws_bytes = 0;
      DIMIX_CUDNN_CHECK(
          cudnnGetConvolutionBackwardFilterWorkspaceSize(h, c.x.d, c.y.d, c.conv.d, c.w.d, algo, &ws_bytes));
      const Tensor ws = workspace(ws_bytes, x.device());
      DIMIX_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, c.x.d, x.raw_data(), c.y.d, gout.raw_data(), c.conv.d,
                                                       algo, ws_bytes ? ws.raw_data() : nullptr, ws_bytes, &zero,
                                                       c.w.d, gw.raw_data()));
    }
    if (gx.defined()) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int found = 0;
      DIMIX_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
          h, c.w.d, c.y.d, c.conv.d, c.x.d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf));
      const auto algo = pick(perf, found, true, "input-gradient");
      size_t ws_bytes = 0;
      DIMIX_CUDNN_CHECK(
          cudnnGetConvolutionBackwardDataWorkspaceSize(h, c.w.d, c.y.d, c.conv.d, c.x.d, algo, &ws_bytes));
      const Tensor ws = workspace(ws_bytes, x.device());
      DIMIX_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, c.w.d, weight.raw_data(), c.y.d, gout.raw_data(),
                                                     c.conv.d, algo, ws_bytes ? ws.raw_data() : nullptr, ws_bytes,
                                                     &zero, c.x.d, gx.raw_data()));
    }
  });
  if (sync_debug()) DIMIX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

}  // namespace

DIMIX_REGISTER_KERNEL("conv2d_forward", conv2d_forward_cuda);
DIMIX_REGISTER_KERNEL("conv2d_backward", conv2d_backward_cuda);

}  // namespace dimix::cuda

#else  // no cuDNN found at configure time: the op says so instead of "no kernel"

namespace dimix::cuda {
namespace {
void conv2d_forward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) {
  DIMIX_FAIL("conv2d: this CUDA build has no cuDNN (not found at configure time); run conv2d on the CPU");
}
void conv2d_backward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          int64_t, int64_t, int64_t) {
  DIMIX_FAIL("conv2d: this CUDA build has no cuDNN (not found at configure time); run conv2d on the CPU");
}
}  // namespace
DIMIX_REGISTER_KERNEL("conv2d_forward", conv2d_forward_cuda);
DIMIX_REGISTER_KERNEL("conv2d_backward", conv2d_backward_cuda);
}  // namespace dimix::cuda

#endif
