// The training loop shared by the training binaries (image and LRA): one
// optimizer step per batch (forward, cross-entropy, backward, optional
// gradient clipping, step, schedule), a progress bar on a terminal and plain
// periodic lines otherwise, metrics as JSON lines, evaluation, atomic
// checkpoints with everything needed to resume exactly (model, optimizer,
// schedule step, data-loader position, RNG state, the running log sums),
// Ctrl-C handling, NaN detection, and a PNG plot of the curves.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "data/loader.h"
#include "dist/communicator.h"
#include "models/networks.h"

namespace dimix::app {

struct TrainConfig {
  std::string out_dir = "runs/run";
  int64_t epochs = 10;
  int64_t steps = 0;        // total optimizer steps; 0: epochs x batches per epoch
  std::string optimizer = "adamw";  // sgd | adam | adamw
  double lr = 1e-3, weight_decay = 0.0, momentum = 0.9, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool nesterov = false;
  std::string schedule = "cosine";  // constant | cosine | warmup-linear | warmup-cosine | onecycle | onecycle-linear
  int64_t warmup = 0;
  double clip = 0.0;                // max global gradient norm; 0: off
  double label_smoothing = 0.0;
  uint64_t seed = 0;
  int64_t eval_every = 0;           // steps between evaluations; 0: once per epoch
  int64_t eval_batches = 0;         // evaluate on at most this many batches; 0: all
  int64_t log_every = 50;
  int64_t stop_after = 0;           // stop (with a checkpoint) after this many steps of this invocation
  bool resume = false;
  std::string init_from;            // initialise the model from another run's checkpoint (non-strict)
  bool save_best = false;           // keep the model of the best evaluation (accuracy) in <out_dir>/best.safetensors
  Device device = Device::cpu();
  bool progress = true;             // progress bar / periodic lines on stdout
  std::string item_name = "img";    // for "img/s"
  // Data parallelism (apps/data_parallel_common.h). comm: this run's ranks
  // (null: one process); the loaders must be built for its rank and world
  // size, with the global batch divided among the ranks. device_comm: the
  // collectives on GPU buffers (NCCL; null: comm). Only rank 0 prints,
  // writes metrics and plots, and writes checkpoints.
  std::shared_ptr<dist::Communicator> comm, device_comm;
  int micro_batches = 1;            // per rank: each rank's part of a batch in this many forward/backward passes
  bool zero1 = false;               // shard the optimizer state over the ranks (ZeRO stage 1)
  double bucket_mb = 25;            // gradient bucket size (one collective per bucket)
};

struct TrainTask {
  std::shared_ptr<Network> model;
  std::shared_ptr<DataLoader> train;
  std::shared_ptr<DataLoader> eval;  // may be null
  std::map<std::string, std::string> metadata;  // written into checkpoints (model name, dataset, ...)
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t examples = 0;
};

struct TrainResult {
  int64_t steps = 0;
  bool interrupted = false;  // stopped early (stop_after or Ctrl-C), checkpoint written
  EvalResult last_eval;
  double best_accuracy = 0;
  int64_t best_step = -1;      // step of the best evaluation (-1: none)
  std::string best_checkpoint; // <out_dir>/best.safetensors when save_best and an evaluation ran
  double seconds = 0;
  std::string checkpoint, metrics, plot;
};

// Runs (or resumes) training; throws dimix::Error on bad configuration, on a
// NaN loss (naming the step and the last good checkpoint) and on I/O errors.
TrainResult train(const TrainConfig& config, TrainTask& task);

// Loss and accuracy of `model` on every batch of `loader` (or the first
// `max_batches`), in eval mode without recording gradients. With `comm`
// (the loader built for its rank and world size) the result covers every
// rank's part; each part is evaluated in `micro_batches` pieces, and the
// sums go per shard, so W ranks and one process with W micro-batches agree
// to the bit.
EvalResult evaluate(Network& model, DataLoader& loader, Device device, int64_t max_batches = 0,
                    dist::Communicator* comm = nullptr, int micro_batches = 1);

// Moves a batch's inputs to `device` and runs the model.
Tensor forward_batch(const Network& model, const Batch& batch, Device device);

// Renders the loss and accuracy curves of a metrics.jsonl to a PNG.
void plot_metrics(const std::string& metrics_path, const std::string& png_path);

// Ctrl-C sets a flag the loop checks between steps (it then checkpoints).
void install_interrupt_handler();

}  // namespace dimix::app
