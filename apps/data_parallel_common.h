// Data parallelism for the training loop (apps/train_common.cpp): W ranks
// (a dist::Communicator) each run forward and backward on their part of
// every global batch, the gradients are summed over ranks before the step,
// and optionally (ZeRO-1) each rank keeps the optimizer state of only its
// share of the parameters.
//
// The arithmetic, and why W ranks give the bits of one process:
//   - a global batch of G examples is cut into S = W x K contiguous shards:
//     the DataLoader gives rank r its part (as evenly as possible), which
//     the rank cuts the same way into K micro-batches, shards rK .. rK+K-1;
//   - shard s's loss is the SUM of its examples' cross-entropies times 1/G,
//     so the shard gradients add up to the gradient of the batch's mean;
//   - a rank adds its K micro-batch gradients in order (bucket = g_rK, then
//     += g_rK+1, ...) and the ranks' sums are added in rank order (CPU sums
//     in dist/ are rank-ordered).
//   So one process with K = W micro-batches and W processes with K = 1 do
//   the very same float operations, ((g0 + g1) + g2) + ..., and end with the
//   same parameters bit for bit on the CPU (tests/dist assert it). One
//   process with K = 1 computes the batch in one GEMM over all G rows, which
//   rounds differently: equally right, not the same bits. (W = 2, K = 2 and
//   W = 4, K = 1 group the sums differently, so they agree only to rounding.)
//   - the logged loss and accuracy, and evaluation metrics, go per shard
//     (a vector of S slots, each rank filling its own, one all-reduce) and
//     are then summed over shards in order: the same for any W x K = S.
//   - dropout (any draw from the default RNG) uses one Philox stream per
//     shard, restarted every step at (seed of shard s, step << 40), so a
//     shard's masks do not depend on which rank computes it.
//
// Gradients travel in buckets: flat buffers of up to bucket_bytes holding
// consecutive parameters' gradients, one collective per bucket, not per
// tensor.
//
// ZeRO-1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
// Trillion Parameter Models", SC'20, stage 1, "optimizer state
// partitioning"): each parameter is owned by one rank (whole tensors, as
// PyTorch's ZeroRedundancyOptimizer assigns them, balanced by size within
// each bucket); a bucket is laid out as W equal chunks, chunk r holding
// rank r's parameters (zero-padded). Gradients are reduce-scattered (each
// rank receives the sums of its chunk only), each owner steps its own
// parameters with an optimizer that holds state for them alone, and the
// updated parameters are all-gathered. The optimizers are elementwise and
// clipping sums the same block norms in the same order, so ZeRO-1 gives the
// bits of plain data parallelism.
//
// Checkpoints hold the full optimizer state (gathered from the owners) in
// the unsharded layout, so a run resumes at any world size, with or without
// ZeRO-1.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "apps/app_common.h"
#include "apps/train_common.h"
#include "dist/communicator.h"
#include "models/optim.h"

namespace dimix::app {

// Rows [begin, end) of a batch (views; indices copied).
Batch slice_batch(const Batch& batch, int64_t begin, int64_t end);
// Part `index` of m rows cut into `parts` contiguous parts, as evenly as
// possible (the first m % parts one longer): the DataLoader's rank split.
std::pair<int64_t, int64_t> shard_range(int64_t m, int64_t parts, int64_t index);
// The Philox key of shard s's random stream.
uint64_t shard_seed(uint64_t seed, int64_t shard);
// Correct arg-max predictions of logits [B, C] against labels i64 [B].
int64_t correct_predictions(const Tensor& logits, const Tensor& labels);

struct DataParallelOptions {
  bool zero1 = false;
  int64_t bucket_bytes = int64_t(25) << 20;
};

class DataParallel {
 public:
  // params: the model's named parameters in model order (the order of
  // clip_grad_norm_); groups: the optimizer's groups over them (global).
  // comm carries host scalars; buffer_comm the gradient and parameter
  // buffers (on the parameters' device; the same as comm on the CPU).
  DataParallel(const std::vector<std::pair<std::string, Tensor>>& params, const std::vector<ParamGroupSpec>& groups,
               dist::Communicator& comm, dist::Communicator& buffer_comm, const DataParallelOptions& options);

  bool zero1() const { return options_.zero1; }
  int rank() const { return comm_.rank(); }
  int world_size() const { return comm_.world_size(); }
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Whether this rank updates parameter `index` (model order): every one
  // without ZeRO-1.
  bool owns(size_t index) const { return !options_.zero1 || owner_[index] == comm_.rank(); }
  // The groups this rank's optimizer steps: `groups` (as given to the
  // constructor) restricted to owned parameters under ZeRO-1.
  std::vector<ParamGroupSpec> local_groups(const std::vector<ParamGroupSpec>& groups) const;

  // Makes every rank's parameters rank 0's (collective).
  void broadcast_parameters();
  // After a micro-batch's backward: moves the parameters' gradients into the
  // buckets (first: overwrite, else add) and drops them from the parameters.
  void accumulate_gradients(bool first);
  // Sums one step over ranks (collective): `scalars` (host f64, summed in
  // place, with this step's gradient-presence flags in the same call), then
  // the buckets. Afterwards each parameter this rank updates holds its
  // summed gradient (a view into a bucket); one no rank had a gradient for
  // holds none, so the optimizer skips it as a single process would.
  void reduce(std::vector<double>& scalars);
  // Global gradient-norm clipping, as clip_grad_norm_ over all parameters
  // (the same bits on the CPU); returns the norm before clipping. Collective
  // under ZeRO-1.
  double clip_grad_norm(double max_norm);
  // ZeRO-1: all-gathers the updated parameters from their owners
  // (collective). Nothing otherwise.
  void gather_parameters();
  // The state an unsharded optimizer over all parameters would have, from
  // this rank's `local` one (collective under ZeRO-1; a plain state_dict
  // otherwise).
  OptimizerState full_state(const Optimizer& local);
  // This rank's part of a full (unsharded) state, for its local optimizer.
  OptimizerState local_state(const OptimizerState& full) const;

 private:
  struct Slot {
    size_t param;
    int64_t offset;  // in the bucket's flat buffer
  };
  struct Bucket {
    Tensor flat;        // [W * chunk] under ZeRO-1, else [sum of numels]
    int64_t chunk = 0;  // ZeRO-1: elements per rank
    std::vector<Slot> slots;
  };
  Tensor region(const Bucket& b, const Slot& s, const Tensor& flat) const;
  Tensor own_chunk(const Bucket& b, const Tensor& flat) const;
  static std::vector<std::string> buffer_names(const std::string& optimizer_type);

  dist::Communicator& comm_;
  dist::Communicator& buffer_comm_;
  DataParallelOptions options_;
  std::vector<Tensor> params_;
  std::vector<std::string> names_;
  std::vector<int> owner_;                       // per parameter
  std::vector<char> has_grad_;                   // this step, this rank
  std::vector<std::vector<size_t>> members_;     // [group] -> parameter indices, optimizer order
  std::vector<std::vector<size_t>> local_index_; // [group] -> positions in members_[group] this rank owns
  std::vector<Bucket> buckets_;
};

// What one step's forward and backward produced, summed over every rank.
struct StepStats {
  double loss = 0;     // mean cross-entropy over the global batch
  double correct = 0;  // correct predictions in the global batch
  double count = 0;    // examples in the global batch
  bool stop = false;   // some rank asked to stop (Ctrl-C): all ranks stop after this step
};

// Forward and backward of one training step on this rank's part `batch` of
// a global batch of `global_count` examples, in `micro_batches` parts (see
// the top of this file), then the reduction over ranks (`dp` may be null
// only in a world of one without micro-batches). Afterwards the parameters
// this rank updates hold the gradient of the global batch's mean loss.
// `stop_request` (this rank's Ctrl-C) rides along with the reduction, so
// every rank agrees on when to stop.
StepStats data_parallel_step(Network& model, const Batch& batch, int64_t global_count, Device device,
                             double label_smoothing, uint64_t seed, int64_t step, int micro_batches,
                             DataParallel* dp, bool stop_request = false);

// ---- for the training binaries ------------------------------------------------------------

// Runs a binary's body (as run_main: an Error becomes one line on stderr and
// exit code 1) with the communicator of its launch: MPI's world under
// mpirun / srun, else one process. After an error in a multi-rank run the
// whole run is ended (MPI_Abort), so no rank waits for this one.
int run_distributed_main(const std::function<int(std::shared_ptr<dist::Communicator>)>& body);

// --micro-batches, --zero1, --bucket-mb, --dist-timeout.
void add_distributed_flags(Flags& flags);

struct DistributedSetup {
  std::shared_ptr<dist::Communicator> comm;         // host collectives
  std::shared_ptr<dist::Communicator> device_comm;  // GPU buffers (NCCL), or null
  Device device;                                    // this rank's device
  int64_t rank_batch = 0;                           // examples per step on this rank
  int micro_batches = 1;
};

// After parsing: the timeout, CPU threads per rank (the cores shared by the
// ranks on this machine unless --threads is given), this rank's device
// ("cuda" means cuda:<local rank>) and NCCL for it, and the per-rank share
// of `global_batch` (Error unless the world size divides it).
DistributedSetup setup_distributed(const Flags& flags, std::shared_ptr<dist::Communicator> comm,
                                   const std::string& device_flag, int64_t global_batch, const std::string& program);
// Copies the setup and the flags into a TrainConfig.
void apply_distributed(const Flags& flags, const DistributedSetup& setup, TrainConfig& config);
// One line for the banner: "2 ranks (mpi), ZeRO-1" (empty for one process).
std::string distributed_summary(const DistributedSetup& setup, const TrainConfig& config);

}  // namespace dimix::app
