// train_lra: trains the LRA transformer (PAPERS.md 1.6, Nystromformer's
// layout with dense or butterfly attention) on a Long Range Arena task, with
// the authors' per-task defaults, evaluation on the validation split every
// N steps, the best validation model kept and scored on the test split, and
// the Path-X curriculum's initialisation from a smaller stage (PAPERS.md 1.7).
//
//   train_lra --task listops --data data/lra/listops-1000 --generate
//   train_lra --task listops --attention butterfly --steps 200 --threads 1
//   train_lra --task pathfinder64 --attention butterfly --init-from runs/pf32/best.safetensors
//   train_lra --out runs/lra-listops-dense --resume
//   train_lra --task listops --out runs/x --eval-only --split test
//   mpirun -np 2 train_lra --task listops --batch-size 32 --zero1   (data parallel; see the README)
//
// Defaults per task (PAPERS.md 1.6 table; Nystromformer's lra_config.py):
// AdamW(0.9, 0.999, eps 1e-6), weight decay 0, lr 1e-4, OneCycle with linear
// annealing and pct_start = warmup / steps (cycling beta1 0.85-0.95, PyTorch's
// defaults), attention dropout 0.1, other dropout 0 (the DM run_tasks.py
// quirk). With --steps but no --warmup, the warm-up keeps its ratio to the
// default steps. pathfinder64 / pathfinder128 (Path-X) follow the curriculum
// stages: batch 64, warm-up 500, radix = image width.
//
// Data parallel as train_image (apps/data_parallel_common.h): --batch-size is
// the global batch, each rank reads its part of every batch (validation and
// test included), only rank 0 prints and writes files; checkpoints resume at
// any world size that divides the batch.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "apps/app_common.h"
#include "apps/data_parallel_common.h"
#include "apps/lra_common.h"
#include "apps/train_common.h"
#include "core/kernel_table.h"
#include "core/parallel.h"
#include "cuda/runtime.h"
#include "data/io.h"
#include "data/lra_datasets.h"
#include "data/lra_listops.h"
#include "data/lra_pathfinder.h"
#include "models/init.h"
#include "models/serialize.h"

using namespace dimix;
namespace fs = std::filesystem;

namespace {

// The network "lra-<base>-<attention>" with the task's length and overrides.
std::shared_ptr<LRATransformer> build_model(const app::Flags& f, const LRATaskInfo& info, const app::LRATaskDefaults& d,
                                            uint64_t seed) {
  const std::string base = info.name.rfind("pathfinder", 0) == 0 ? "pathfinder32" : info.name;
  const std::string name = "lra-" + base + "-" + f.str("attention");
  auto named = std::dynamic_pointer_cast<LRATransformer>(make_network(name, NetworkInput{}));
  DIMIX_CHECK(named != nullptr, "train_lra: network ", name, " is not an LRA transformer");
  LRAConfig c = named->config;
  c.max_len = info.lengths.seq_len;
  if (info.name != base) c.radix = d.radix;  // the curriculum's radix = image width
  if (f.integer("radix") > 0) c.radix = f.integer("radix");
  if (f.integer("layers") > 0) c.layers = f.integer("layers");
  if (f.integer("heads") > 0) c.heads = f.integer("heads");
  if (f.integer("dim") > 0) c.dim = f.integer("dim");
  if (f.integer("hidden") > 0) c.hidden = f.integer("hidden");
  if (f.given("dropout")) c.dropout = f.real("dropout");
  if (f.given("attn-dropout")) c.attn_dropout = f.real("attn-dropout");
  DIMIX_CHECK(info.vocab <= c.vocab, "train_lra: the task's ids reach ", info.vocab, " but the model's vocabulary is ",
              c.vocab);
  init::seed(seed);  // the model is a pure function of the seed
  return std::make_shared<LRATransformer>(c);
}

void generate_if_missing(const app::Flags& f, const LRATaskInfo& info, const std::string& dir, bool verbose) {
  const uint64_t seed = static_cast<uint64_t>(f.integer("generate-seed"));
  if (info.name == "listops") {
    if (data::file_exists(data::join_path(dir, "basic_train.tsv"))) return;
    lra::ListOpsOptions o;
    o.seed = seed;
    if (verbose) std::cout << "generating ListOps (96000/2000/2000, seed " << seed << ") into " << dir << "\n";
    lra::generate_listops_files(dir, o, verbose ? lra::ListOpsProgress([](int64_t d, int64_t t) {
      if (d == t || d % 20000 == 0) std::cout << "  " << d << "/" << t << " trees\n" << std::flush;
    }) : lra::ListOpsProgress());
    return;
  }
  if (info.resolution > 0) {
    if (fs::is_directory(fs::path(dir) / "metadata")) return;
    lra::PathfinderRunOptions o;
    o.params = lra::pathfinder_params(info.resolution, static_cast<int>(f.integer("generate-contour")));
    o.count = f.integer("generate-count");
    o.seed = seed;
    if (verbose)
      std::cout << "generating " << o.count << " Pathfinder" << info.resolution << " images (contour "
                << o.params.contour_length << ", seed " << seed << ") into " << dir << "\n";
    lra::generate_pathfinder(dir, o, verbose ? lra::PathfinderProgress([](int64_t d, int64_t t) {
      std::cout << "  " << d << "/" << t << " images\n" << std::flush;
    }) : lra::PathfinderProgress());
    return;
  }
  DIMIX_FAIL("train_lra: --generate makes ListOps and Pathfinder data only; task ", info.name,
             " needs its release files in --data");
}

void append_metrics(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  DIMIX_CHECK(out.good(), "train_lra: cannot write ", path);
  out << line << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::cout << std::unitbuf;  // progress lines reach a log file as they happen
  return app::run_distributed_main([&](std::shared_ptr<dist::Communicator> comm) {
    app::Flags f("train_lra", "Trains the LRA transformer (dense or butterfly attention) on a Long Range Arena task.");
    f.add("task", "listops", "listops | text | retrieval | image | pathfinder32 | pathfinder64 | pathfinder128 (pathx)");
    f.add("attention", "dense", "dense | butterfly (or another lra-<task>-<name> network, e.g. sparsifiner)");
    f.add("radix", "0", "butterfly block size (0: the task's, PAPERS.md 1.6)");
    f.add("data", "", "data directory (default: data/lra/<task layout>; see data/lra_datasets.h)");
    f.add_bool("generate", "generate ListOps / Pathfinder data into --data when it is missing");
    f.add("generate-seed", "0", "seed of --generate");
    f.add("generate-count", "20000", "Pathfinder images made by --generate");
    f.add("generate-contour", "14", "Pathfinder contour length made by --generate (6, 9, 14)");
    f.add("steps", "0", "optimizer steps (0: the task's)");
    f.add("batch-size", "0", "examples per step, over all ranks (each of N ranks takes batch-size / N; 0: the task's)");
    f.add("lr", "1e-4", "peak learning rate");
    f.add("warmup", "-1", "warm-up steps, pct_start = warmup / steps (-1: the task's, scaled to --steps)");
    f.add("schedule", "onecycle-linear", "onecycle-linear | onecycle | warmup-linear | warmup-cosine | cosine | constant");
    f.add("weight-decay", "0.0", "AdamW weight decay (not on 1-d parameters)");
    f.add("clip", "0.0", "clip the global gradient norm (0: off)");
    f.add("layers", "0", "override: transformer layers (0: the task's, 2)");
    f.add("heads", "0", "override: attention heads (0: 2)");
    f.add("dim", "0", "override: model dimension (0: 64)");
    f.add("hidden", "0", "override: MLP hidden size (0: 128)");
    f.add("dropout", "0.0", "embedding / MLP / residual dropout (DM's run_tasks.py default 0)");
    f.add("attn-dropout", "0.1", "attention dropout");
    f.add("eval-every", "0", "evaluate on val every N steps (0: the task's)");
    f.add("eval-batches", "-1", "validation batches per evaluation (-1: the task's, 0: all)");
    f.add("log-every", "50", "write a metrics line every N steps");
    f.add("seed", "0", "seed of initialisation, data order and dropout");
    f.add("threads", "0", "CPU threads (0: all cores)");
    f.add("workers", "2", "data-loader worker threads");
    f.add("init-from", "", "initialise from a checkpoint or best.safetensors (Path-X curriculum; position table 2x2-upsampled)");
    f.add("stop-after", "0", "stop with a checkpoint after N steps of this invocation (0: run to the end)");
    f.add("out", "", "output directory (default: runs/lra-<task>-<attention>)");
    f.add_bool("resume", "continue the run in --out from its checkpoint");
    f.add("device", "cpu", "cpu | cuda | cuda:N");
    f.add_bool("eval-only", "only evaluate --out's best.safetensors (else checkpoint) on --split");
    f.add("split", "test", "split for --eval-only: train | val | test");
    f.add_bool("quiet", "no progress output");
    app::add_distributed_flags(f);
    if (!f.parse(argc, argv)) return 0;

    const LRATaskInfo info = lra_task_info(f.str("task"));
    const app::LRATaskDefaults d = app::lra_task_defaults(info.name);
    const std::string attention = f.str("attention");
    const int64_t batch = f.integer("batch-size") > 0 ? f.integer("batch-size") : d.batch;
    const app::DistributedSetup ds = app::setup_distributed(f, comm, f.str("device"), batch, "train_lra");
    const int rank = comm->rank(), world = comm->world_size();
    const bool leader = rank == 0;
    const bool verbose = !f.flag("quiet") && leader;  // rank 0 alone prints
    const Device device = ds.device;
    DIMIX_CHECK(device.is_cpu() || cuda::available(), "train_lra: --device ", f.str("device"),
                " requested but no CUDA device is available", cuda_built() ? "" : " (built without CUDA)");
    const uint64_t seed = static_cast<uint64_t>(f.integer("seed"));
    const std::string data_dir = f.str("data").empty() ? d.data_dir : f.str("data");
    const std::string out = f.str("out").empty() ? "runs/lra-" + info.name + "-" + attention : f.str("out");
    const int64_t steps = f.integer("steps") > 0 ? f.integer("steps") : d.steps;
    int64_t warmup = f.integer("warmup");
    if (warmup < 0)  // OneCycle needs a warm-up phase of at least 2 steps
      warmup = f.integer("steps") > 0 ? std::max<int64_t>(2, std::llround(double(d.warmup) * steps / d.steps)) : d.warmup;
    DIMIX_CHECK(warmup < steps, "train_lra: --warmup ", warmup, " must be below --steps ", steps);

    const int workers = static_cast<int>(f.integer("workers"));
    if (f.flag("generate")) {
      // Rank 0 writes the files; the others wait for it, however long it takes.
      if (leader) generate_if_missing(f, info, data_dir, verbose);
      if (world > 1) {
        const double timeout = comm->timeout();
        comm->set_timeout(std::max(timeout, 7 * 24 * 3600.0));
        comm->barrier();
        comm->set_timeout(timeout);
      }
    }
    auto model = build_model(f, info, d, seed);
    const std::string model_name = "lra-" + info.name + "-" + attention;

    // Every loader takes the global batch, each rank its part of it.
    const DataLoaderOptions eval_opt = app::lra_loader_options(batch, false, seed, workers, rank, world);

    if (f.flag("eval-only")) {
      const std::string split = f.str("split");
      const std::string best = (fs::path(out) / "best.safetensors").string();
      const std::string ckpt = fs::exists(best) ? best : (fs::path(out) / "checkpoint.safetensors").string();
      if (ckpt == best) load_module(*model, ckpt);
      else load_checkpoint(ckpt, *model, nullptr);
      model->to(device);
      DataLoader loader(make_lra_dataset(info.name, data_dir, split), eval_opt);
      const auto r = app::evaluate(*model, loader, device, 0, comm.get(), ds.micro_batches);
      if (leader)
        std::cout << model_name << " on " << split << ": accuracy " << std::fixed << std::setprecision(2) << 100 * r.accuracy
                << "%  loss " << std::setprecision(4) << r.loss << "  (" << r.examples << " examples, " << ckpt << ")\n";
      return 0;
    }

    auto train_set = make_lra_dataset(info.name, data_dir, "train");
    auto val_set = make_lra_dataset(info.name, data_dir, "val");
    auto test_set = make_lra_dataset(info.name, data_dir, "test");
    if (!f.str("init-from").empty() && !f.flag("resume")) {
      const bool upsampled = app::init_lra_from(*model, f.str("init-from"));
      if (verbose)
        std::cout << "initialised from " << f.str("init-from")
                  << (upsampled ? " (position table upsampled 2x2)" : "") << "\n";
    }

    const DataLoaderOptions train_opt = app::lra_loader_options(batch, true, seed, workers, rank, world);
    app::TrainTask task;
    task.model = model;
    task.train = std::make_shared<DataLoader>(train_set, train_opt);
    task.eval = std::make_shared<DataLoader>(val_set, eval_opt);
    task.metadata = {{"model", model_name}, {"task", info.name}, {"radix", std::to_string(model->config.radix)}};

    app::TrainConfig c;
    c.out_dir = out;
    c.steps = steps;
    c.optimizer = "adamw";
    c.lr = f.real("lr");
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-6;
    c.weight_decay = f.real("weight-decay");
    c.schedule = f.str("schedule");
    c.warmup = warmup;
    c.clip = f.real("clip");
    c.seed = seed;
    c.eval_every = f.integer("eval-every") > 0 ? f.integer("eval-every") : d.eval_every;
    c.eval_batches = f.integer("eval-batches") >= 0 ? f.integer("eval-batches") : d.eval_batches;
    c.log_every = std::max<int64_t>(1, f.integer("log-every"));
    c.stop_after = f.integer("stop-after");
    c.resume = f.flag("resume");
    c.device = device;
    c.progress = verbose;
    c.item_name = "seq";
    c.save_best = true;
    app::apply_distributed(f, ds, c);

    if (verbose) {
      std::cout << "dimix train_lra: " << model_name << " (radix " << model->config.radix << ", " << model->config.layers
                << " layers, dim " << model->config.dim << "), " << model->num_parameters() << " parameters; "
                << info.name << " " << train_set->size() << " train / " << val_set->size() << " val / "
                << test_set->size() << " test, length " << info.lengths.seq_len << "; batch " << batch << ", " << steps
                << " steps, lr " << c.lr << " " << c.schedule << " (warm-up " << warmup << "); " << device.str() << ", "
                << get_num_threads() << " threads";
      const std::string dist_line = app::distributed_summary(ds, c);
      std::cout << (dist_line.empty() ? "" : ", " + dist_line) << "\n";
    }
    app::install_interrupt_handler();
    const app::TrainResult r = app::train(c, task);
    if (verbose)
      std::cout << "\n" << (r.interrupted ? "stopped" : "finished") << " after " << r.steps << " steps in " << std::fixed
                << std::setprecision(1) << r.seconds << " s (" << std::setprecision(3) << r.seconds / std::max<int64_t>(r.steps, 1)
                << " s/step incl. evaluation)" << std::defaultfloat << "\n";
    if (r.interrupted) return 0;

    // The best validation model, scored on the test split. Every rank loads
    // it (rank 0 wrote it before train's last collective) and scores its part.
    std::string scored = "final";
    if (!r.best_checkpoint.empty()) {
      load_module(*model, r.best_checkpoint);
      scored = "best (step " + std::to_string(r.best_step) + ")";
    }
    DataLoader test_loader(test_set, eval_opt);
    const app::EvalResult t = app::evaluate(*model, test_loader, device, 0, comm.get(), ds.micro_batches);
    std::ostringstream line;
    line << std::setprecision(8) << "{\"type\":\"test\",\"step\":" << (r.best_step >= 0 ? r.best_step : r.steps)
         << ",\"loss\":" << t.loss << ",\"acc\":" << t.accuracy << ",\"val_acc\":";
    if (r.best_step >= 0) line << r.best_accuracy;
    else line << "null";
    line << "}";
    if (leader) append_metrics(r.metrics, line.str());
    if (verbose)
      std::cout << "test accuracy of the " << scored << " model: " << std::fixed << std::setprecision(2) << 100 * t.accuracy
                << "% (" << (r.best_step >= 0 ? "val " + std::to_string(100 * r.best_accuracy).substr(0, 5) + "%, " : "")
                << t.examples << " test examples)" << std::defaultfloat
                << "\n  checkpoint: " << r.checkpoint << "\n  best:       " << r.best_checkpoint
                << "\n  metrics:    " << r.metrics << "\n  plot:       " << r.plot << "\n";
    return 0;
  });
}
