// CUDA kernels of ops/fft through cuFFT: "rfft" (x [R, n] -> y [R, n/2+1, 2]),
// "irfft" (X [R, n/2+1, 2] -> y [R, n]; X may be overwritten: cuFFT's C2R
// does, and the op passes a copy) and "fft_c2c" (x [R, n, 2] -> y [R, n, 2],
// inverse = e^{+2 pi i jk / n}). R rows of length n, contiguous, f32 or f64;
// the unnormalised transform is multiplied by `scale` afterwards.
//
// Plans are cached per (device, transform, dtype, n, R): making one costs far
// more than running it. Each is bound to the device's stream when used.
#include "cuda/common.cuh"

#include <cufft.h>

#include <map>
#include <mutex>
#include <tuple>

namespace dimix::cuda {
namespace {

[[noreturn]] void fail_cufft(cufftResult r, const char* expr, const char* file, int line) {
  DIMIX_FAIL("cuFFT error ", static_cast<int>(r), " in ", expr, " at ", file, ":", line);
}
#define DIMIX_CUFFT_CHECK(expr)                                                                \
  do {                                                                                         \
    const cufftResult dimix_r_ = (expr);                                                       \
    if (dimix_r_ != CUFFT_SUCCESS) fail_cufft(dimix_r_, #expr, __FILE__, __LINE__);            \
  } while (0)

enum class Kind { r2c, c2r, c2c };

cufftType cufft_type(Kind k, bool f64) {
  switch (k) {
    case Kind::r2c: return f64 ? CUFFT_D2Z : CUFFT_R2C;
    case Kind::c2r: return f64 ? CUFFT_Z2D : CUFFT_C2R;
    case Kind::c2c: return f64 ? CUFFT_Z2Z : CUFFT_C2C;
  }
  return CUFFT_C2C;
}

// A cached plan, used under the cache's lock (a plan is not re-entrant).
cufftHandle plan_for(DeviceContext& ctx, Kind kind, bool f64, int64_t n, int64_t rows, std::unique_lock<std::mutex>& lock) {
  static std::mutex mu;
  static auto* cache = new std::map<std::tuple<int, int, bool, int64_t, int64_t>, cufftHandle>();  // leaked
  lock = std::unique_lock<std::mutex>(mu);
  const auto key = std::make_tuple(ctx.device, static_cast<int>(kind), f64, n, rows);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  if (cache->size() >= 64) {  // keep the cache (and cuFFT's work areas) bounded
    for (auto& [k, h] : *cache) cufftDestroy(h);
    cache->clear();
  }
  cufftHandle h;
  DIMIX_CUFFT_CHECK(cufftCreate(&h));
  long long len = n;
  const long long in_dist = kind == Kind::c2r ? n / 2 + 1 : n, out_dist = kind == Kind::r2c ? n / 2 + 1 : n;
  size_t work = 0;
  const cufftResult r = cufftMakePlanMany64(h, 1, &len, nullptr, 1, in_dist, nullptr, 1, out_dist,
                                            cufft_type(kind, f64), rows, &work);
  if (r != CUFFT_SUCCESS) {
    cufftDestroy(h);
    fail_cufft(r, "cufftMakePlanMany64", __FILE__, __LINE__);
  }
  cache->emplace(key, h);
  return h;
}

template <class T>
__global__ void scale_kernel(T* p, int64_t n, T s) {
  DIMIX_GRID_STRIDE(i, n) p[i] *= s;
}

// cuFFT wants its complex arrays aligned to the complex type.
Tensor aligned(const Tensor& t) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(t.raw_data());
  if (a % (2 * dtype_size(t.dtype())) == 0) return t;
  Tensor c = empty(t.sizes(), t.dtype(), t.device());
  copy_(c, t);
  return c;
}

void run(Kind kind, const Tensor& y, const Tensor& x_in, int64_t n, bool inverse, double scale, const char* op) {
  DIMIX_CHECK(x_in.is_contiguous() && y.is_contiguous(), op, ": CUDA kernel expects contiguous tensors");
  DeviceContext& ctx = context_of(y);
  const int64_t rows = x_in.sizes()[0];
  if (rows == 0 || n == 0) return;
  const Tensor x = aligned(x_in);
  const bool f64 = x.dtype() == DType::f64;
  DIMIX_CHECK(x.dtype() == DType::f32 || f64, op, ": expected f32 or f64, got ", dtype_name(x.dtype()));
  std::unique_lock<std::mutex> lock;
  const cufftHandle h = plan_for(ctx, kind, f64, n, rows, lock);
  DIMIX_CUFFT_CHECK(cufftSetStream(h, ctx.stream));
  void* in = x.raw_data();
  void* out = y.raw_data();
  const int dir = inverse ? CUFFT_INVERSE : CUFFT_FORWARD;
  switch (cufft_type(kind, f64)) {
    case CUFFT_R2C: DIMIX_CUFFT_CHECK(cufftExecR2C(h, static_cast<cufftReal*>(in), static_cast<cufftComplex*>(out))); break;
    case CUFFT_D2Z:
      DIMIX_CUFFT_CHECK(cufftExecD2Z(h, static_cast<cufftDoubleReal*>(in), static_cast<cufftDoubleComplex*>(out)));
      break;
    case CUFFT_C2R: DIMIX_CUFFT_CHECK(cufftExecC2R(h, static_cast<cufftComplex*>(in), static_cast<cufftReal*>(out))); break;
    case CUFFT_Z2D:
      DIMIX_CUFFT_CHECK(cufftExecZ2D(h, static_cast<cufftDoubleComplex*>(in), static_cast<cufftDoubleReal*>(out)));
      break;
    case CUFFT_C2C:
      DIMIX_CUFFT_CHECK(cufftExecC2C(h, static_cast<cufftComplex*>(in), static_cast<cufftComplex*>(out), dir));
      break;
    case CUFFT_Z2Z:
      DIMIX_CUFFT_CHECK(
          cufftExecZ2Z(h, static_cast<cufftDoubleComplex*>(in), static_cast<cufftDoubleComplex*>(out), dir));
      break;
    default: DIMIX_FAIL(op, ": unexpected cuFFT type");
  }
  lock.unlock();
  if (scale != 1.0) {
    dispatch_float(y.dtype(), op, [&]<class T>() {
      scale_kernel<T><<<grid_for(y.numel(), ctx), kThreads, 0, ctx.stream>>>(ptr<T>(y), y.numel(), static_cast<T>(scale));
      DIMIX_CUDA_LAUNCH_CHECK();
    });
  } else if (sync_debug()) {
    DIMIX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  }
}

void rfft_cuda(const Tensor& y, const Tensor& x, int64_t n, double scale) { run(Kind::r2c, y, x, n, false, scale, "rfft"); }
void irfft_cuda(const Tensor& y, const Tensor& X, int64_t n, double scale) { run(Kind::c2r, y, X, n, true, scale, "irfft"); }
void fft_c2c_cuda(const Tensor& y, const Tensor& x, int64_t n, bool inverse, double scale) {
  run(Kind::c2c, y, x, n, inverse, scale, inverse ? "ifft" : "fft");
}

}  // namespace

DIMIX_REGISTER_KERNEL("rfft", rfft_cuda);
DIMIX_REGISTER_KERNEL("irfft", irfft_cuda);
DIMIX_REGISTER_KERNEL("fft_c2c", fft_c2c_cuda);

}  // namespace dimix::cuda
