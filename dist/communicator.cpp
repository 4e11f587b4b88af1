// The Communicator base (argument checks, timeout), the single-process
// backend, the environment-driven choice of backend, and the rank-ordered
// sum shared by the CPU backends (see communicator.h).
#include "dist/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/parallel.h"
#include "dist/detail.h"

namespace dimix::dist {

namespace detail {

void sum_in_rank_order(DType dtype, void* out, const std::vector<const void*>& srcs, int64_t n) {
  DIMIX_CHECK(!srcs.empty(), "sum_in_rank_order: no sources");
  dispatch_all(dtype, "all_reduce", [&]<class T>() {
    if constexpr (std::is_same_v<T, uint8_t>) {
      DIMIX_FAIL("all_reduce: sums of u8 tensors are not supported (use i32, i64, f32 or f64)");
    } else {
      constexpr int64_t kBlock = 2048;
      T* o = static_cast<T*>(out);
      parallel_for(0, (n + kBlock - 1) / kBlock, 16, [&](int64_t b0, int64_t b1) {
        T acc[kBlock];
        for (int64_t blk = b0; blk < b1; ++blk) {
          const int64_t s = blk * kBlock, len = std::min(kBlock, n - s);
          const T* first = static_cast<const T*>(srcs[0]) + s;
          for (int64_t i = 0; i < len; ++i) acc[i] = first[i];
          for (size_t q = 1; q < srcs.size(); ++q) {
            const T* src = static_cast<const T*>(srcs[q]) + s;
            for (int64_t i = 0; i < len; ++i) acc[i] = acc[i] + src[i];
          }
          std::memcpy(o + s, acc, static_cast<size_t>(len) * sizeof(T));
        }
      });
    }
  });
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

double env_timeout(double fallback) {
  const char* v = std::getenv("DIMIX_DIST_TIMEOUT");
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  DIMIX_CHECK(end && *end == '\0' && s > 0, "DIMIX_DIST_TIMEOUT: expected a positive number of seconds, got '", v, "'");
  return s;
}

}  // namespace detail

Communicator::Communicator() : timeout_(detail::env_timeout(300)) {}

void Communicator::set_timeout(double seconds) {
  DIMIX_CHECK(seconds > 0, backend(), ": timeout must be positive, got ", seconds);
  timeout_ = seconds;
}

void Communicator::check_tensor(const char* op, const Tensor& t) const {
  DIMIX_CHECK(t.defined(), backend(), " ", op, ": expected a tensor, got an undefined one");
  DIMIX_CHECK(t.is_contiguous(), backend(), " ", op, ": expected a contiguous tensor, got ", t.shape_str(),
              " with strides ", shape_str(t.strides()));
}

void Communicator::check_scatter_gather(const char* op, const Tensor& big, const Tensor& small) const {
  check_tensor(op, big);
  check_tensor(op, small);
  DIMIX_CHECK(big.dtype() == small.dtype(), backend(), " ", op, ": input and output dtypes differ (",
              dtype_name(big.dtype()), " and ", dtype_name(small.dtype()), ")");
  DIMIX_CHECK(big.device() == small.device(), backend(), " ", op, ": input and output are on ", big.device().str(),
              " and ", small.device().str());
  DIMIX_CHECK(big.numel() == small.numel() * world_size(), backend(), " ", op, ": expected the large buffer to hold ",
              world_size(), " x ", small.numel(), " = ", small.numel() * world_size(), " elements, got ", big.numel(),
              " (", big.shape_str(), ")");
}

void Communicator::check_root(const char* op, int root) const {
  DIMIX_CHECK(root >= 0 && root < world_size(), backend(), " ", op, ": root must be in [0, ", world_size(), "), got ",
              root);
}

namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce(const Tensor& t) override { check_tensor("all_reduce", t); }
  void reduce_scatter(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("reduce_scatter", input, output);
    if (input.raw_data() != output.raw_data()) copy_(output, input.as_strided(output.sizes(), output.strides(), input.offset()));
  }
  void all_gather(const Tensor& input, const Tensor& output) override {
    check_scatter_gather("all_gather", output, input);
    if (input.raw_data() != output.raw_data()) copy_(output.as_strided(input.sizes(), input.strides(), output.offset()), input);
  }
  void broadcast(const Tensor& t, int root) override {
    check_tensor("broadcast", t);
    check_root("broadcast", root);
  }
  void barrier() override {}
};

}  // namespace

std::shared_ptr<Communicator> single_process() { return std::make_shared<SingleCommunicator>(); }

bool launched_by_mpi() {
  // OpenMPI's mpirun, MPICH/Hydra and Slurm's srun (PMI-2 or PMIx) each set
  // one of these in every process they start.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

namespace {
int launched_world_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 0;  // unknown
}
}  // namespace

std::shared_ptr<Communicator> from_environment() {
  if (!launched_by_mpi()) return single_process();
  if (!mpi_built()) {
    const int n = launched_world_size();
    DIMIX_CHECK(n == 1, "this process was started as one of ", n > 0 ? std::to_string(n) : std::string("several"),
                " by an MPI launcher, but dimix was built without MPI: distributed runs need MPI (install "
                "openmpi-bin and libopenmpi-dev, then re-run cmake and rebuild)");
    return single_process();
  }
  return mpi_world();
}

void all_reduce_values(Communicator& comm, std::vector<double>& values) {
  if (comm.world_size() == 1 || values.empty()) return;
  Tensor t = from_vector<double>(values, {static_cast<int64_t>(values.size())});
  comm.all_reduce(t);
  const double* p = t.data<double>();
  std::copy(p, p + values.size(), values.begin());
}

}  // namespace dimix::dist
