// train_image: trains a named network on an image dataset (Fashion-MNIST,
// MNIST, CIFAR-10/100, synthetic) with progress, metrics, checkpoints and
// exact resume; --eval-only scores a checkpoint on a split.
//
//   train_image --model butterfly-mixer-s --dataset fashion-mnist --epochs 10
//   train_image --model vit-p4-l4-butterfly --dataset cifar10 --data-root DIR --lr 1e-4
//   train_image --out runs/x --resume            (continue an interrupted run)
//   train_image --eval-only --out runs/x --split test
//   mpirun -np 2 train_image --batch-size 256 --zero1   (data parallel; see the README)
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "apps/app_common.h"
#include "apps/data_parallel_common.h"
#include "apps/train_common.h"
#include "core/kernel_table.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "cuda/runtime.h"
#include "data/image_dataset.h"
#include "data/transforms.h"
#include "models/init.h"
#include "models/serialize.h"
#include "models/sparsifiner.h"

using namespace dimix;

namespace {

// Per-dataset normalisation (train-set channel statistics) and augmentation.
std::shared_ptr<Compose> make_transform(const std::string& dataset, bool train, bool augment, int64_t channels) {
  auto t = std::make_shared<Compose>();
  const bool cifar = dataset == "cifar10" || dataset == "cifar100";
  if (train && augment && cifar) {
    t->add<RandomCrop>(32, 4);
    t->add<RandomHorizontalFlip>(0.5);
  }
  t->add<ToFloat>();
  if (cifar) t->add<Normalize>(std::vector<double>{0.4914, 0.4822, 0.4465}, std::vector<double>{0.2023, 0.1994, 0.2010});
  else if (dataset == "fashion-mnist") t->add<Normalize>(std::vector<double>{0.2860}, std::vector<double>{0.3530});
  else if (dataset == "mnist") t->add<Normalize>(std::vector<double>{0.1307}, std::vector<double>{0.3081});
  else t->add<Normalize>(std::vector<double>(channels, 0.5), std::vector<double>(channels, 0.5));
  return t;
}

// Sparsifiner's first stage (PAPERS.md 3): only the mask predictors train,
// reconstructing the model's own dense attention; app::train then runs the
// second stage with the predictors frozen.
void sparsifiner_stage1(Network& model, DataLoader& loader, int64_t steps, Device device, bool progress) {
  model.to(device);
  ReconstructionStageOptions o;
  o.steps = steps;
  SparsifinerReconstructionStage stage(model, o);
  int64_t epoch = 0;
  loader.set_epoch(epoch);
  while (stage.steps_done() < steps) {
    auto batch = loader.next();
    if (!batch) {
      loader.set_epoch(++epoch);
      continue;
    }
    const double loss = stage.step(device.is_cpu() ? batch->inputs : to_device_raw(batch->inputs, device));
    if (progress && (stage.steps_done() % 50 == 0 || stage.steps_done() == steps))
      std::cout << "sparsifiner stage 1: step " << stage.steps_done() << "/" << steps << "  reconstruction loss "
                << loss << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  return app::run_distributed_main([&](std::shared_ptr<dist::Communicator> comm) {
    app::Flags f("train_image", "Trains a dimension-mixer network on an image-classification dataset.");
    f.add("model", "butterfly-mixer-s", "network name (--list-models shows all)");
    f.add("mixer", "", "replace the network's mixer (--list-models shows mixers), e.g. butterfly-mlp");
    f.add("dataset", "fashion-mnist", "fashion-mnist | mnist | cifar10 | cifar100 | synthetic");
    f.add("data-root", "", "dataset directory (default: the Debian package location for (fashion-)mnist)");
    f.add("epochs", "10", "epochs (ignored when --steps is given)");
    f.add("steps", "0", "total optimizer steps (0: epochs x batches per epoch)");
    f.add("batch-size", "128", "examples per step, over all ranks (each of N ranks takes batch-size / N)");
    f.add("optimizer", "adamw", "sgd | adam | adamw");
    f.add("lr", "0.002", "peak learning rate");
    f.add("momentum", "0.9", "SGD momentum");
    f.add("weight-decay", "0.05", "weight decay (not applied to 1-d parameters)");
    f.add("schedule", "cosine", "constant | cosine | warmup-linear | warmup-cosine | onecycle | onecycle-linear");
    f.add("warmup", "0", "warm-up steps for the warmup-* schedules");
    f.add("clip", "0", "clip the global gradient norm to this value (0: off)");
    f.add("label-smoothing", "0", "cross-entropy label smoothing");
    f.add("seed", "0", "seed of initialisation, data order, augmentation and dropout");
    f.add("threads", "0", "CPU threads (0: all cores)");
    f.add("workers", "2", "data-loader worker threads");
    f.add_bool("no-augment", "disable random crop / flip on CIFAR");
    f.add("eval-every", "0", "evaluate every N steps (0: once per epoch)");
    f.add("log-every", "50", "write a metrics line every N steps");
    f.add("stop-after", "0", "stop with a checkpoint after N steps of this invocation (0: run to the end)");
    f.add("out", "runs/image", "output directory (checkpoint.safetensors, metrics.jsonl, curves.png)");
    f.add_bool("resume", "continue the run in --out from its checkpoint");
    f.add("device", "cpu", "cpu | cuda | cuda:N");
    f.add("synthetic-size", "2048", "training examples of --dataset synthetic");
    f.add_bool("eval-only", "only evaluate the checkpoint in --out on --split");
    f.add("split", "test", "split for --eval-only: train | test");
    f.add_bool("list-models", "list the named networks and mixers, then exit");
    f.add_bool("quiet", "no progress output");
    app::add_distributed_flags(f);
    f.add("sparsifiner-stage1-steps", "0",
          "Sparsifiner models: first train only the mask predictors for N steps on attention reconstruction");
    if (!f.parse(argc, argv)) return 0;

    if (f.flag("list-models")) {
      std::cout << "networks:\n";
      for (const auto& [n, d] : network_names()) std::cout << "  " << std::left << std::setw(26) << n << d << "\n";
      std::cout << "mixers (--mixer):\n";
      for (const auto& [n, d] : mixer_names()) std::cout << "  " << std::left << std::setw(26) << n << d << "\n";
      return 0;
    }
    const int64_t batch = f.integer("batch-size");
    DIMIX_CHECK(batch > 0, "train_image: --batch-size must be positive, got ", batch);
    const app::DistributedSetup ds = app::setup_distributed(f, comm, f.str("device"), batch, "train_image");
    const bool leader = comm->rank() == 0;
    const Device device = ds.device;
    DIMIX_CHECK(device.is_cpu() || cuda::available(), "train_image: --device ", f.str("device"),
                " requested but no CUDA device is available", cuda_built() ? "" : " (built without CUDA)");
    const uint64_t seed = static_cast<uint64_t>(f.integer("seed"));
    const std::string dataset = f.str("dataset");

    ImageDatasetOptions dopt;
    dopt.synthetic.size = f.integer("synthetic-size");
    dopt.synthetic.seed = seed;
    auto train_set = make_image_dataset(dataset, f.str("data-root"), "train", dopt);
    auto test_set = make_image_dataset(dataset, f.str("data-root"), "test", dopt);
    DIMIX_CHECK(train_set->height() == train_set->width(), "train_image: square images expected, got ",
                train_set->height(), "x", train_set->width());

    // The model is a pure function of the seed.
    init::seed(seed);
    NetworkInput input{train_set->channels(), train_set->height(), train_set->num_classes()};
    auto model = make_network(f.str("model"), input, f.str("mixer"));

    // Evaluation: 256 examples per shard, each rank taking its shards.
    DataLoaderOptions eval_opt;
    eval_opt.batch_size = 256 * ds.micro_batches;
    eval_opt.rank = comm->rank();
    eval_opt.world_size = comm->world_size();
    eval_opt.shuffle = false;
    eval_opt.num_workers = static_cast<int>(f.integer("workers"));
    eval_opt.transform = make_transform(dataset, false, false, train_set->channels());

    app::TrainTask task;
    task.model = model;
    task.metadata = {{"model", f.str("model")}, {"mixer", f.str("mixer")}, {"dataset", dataset}};

    if (f.flag("eval-only")) {
      const std::string ckpt = (std::filesystem::path(f.str("out")) / "checkpoint.safetensors").string();
      load_checkpoint(ckpt, *model, nullptr);
      auto split = f.str("split") == "train" ? train_set : test_set;
      DIMIX_CHECK(f.str("split") == "train" || f.str("split") == "test", "train_image: --split must be train or test, got '",
                  f.str("split"), "'");
      model->to(device);
      DataLoader loader(split, eval_opt);
      const auto r = app::evaluate(*model, loader, device, 0, comm.get(), ds.micro_batches);
      if (leader)
        std::cout << f.str("model") << " on " << dataset << " " << f.str("split") << ": accuracy " << std::fixed
                << std::setprecision(2) << 100 * r.accuracy << "%  loss " << std::setprecision(4) << r.loss << "  ("
                << r.examples << " examples, " << ckpt << ")\n";
      return 0;
    }

    DataLoaderOptions train_opt;
    train_opt.batch_size = ds.rank_batch;
    train_opt.rank = comm->rank();
    train_opt.world_size = comm->world_size();
    train_opt.shuffle = true;
    train_opt.drop_last = true;
    train_opt.seed = seed;
    train_opt.num_workers = static_cast<int>(f.integer("workers"));
    train_opt.transform = make_transform(dataset, true, !f.flag("no-augment"), train_set->channels());
    task.train = std::make_shared<DataLoader>(train_set, train_opt);
    task.eval = std::make_shared<DataLoader>(test_set, eval_opt);

    app::TrainConfig c;
    c.out_dir = f.str("out");
    c.epochs = f.integer("epochs");
    c.steps = f.integer("steps");
    c.optimizer = f.str("optimizer");
    c.lr = f.real("lr");
    c.momentum = f.real("momentum");
    c.weight_decay = f.real("weight-decay");
    c.schedule = f.str("schedule");
    c.warmup = f.integer("warmup");
    c.clip = f.real("clip");
    c.label_smoothing = f.real("label-smoothing");
    c.seed = seed;
    c.eval_every = f.integer("eval-every");
    c.log_every = std::max<int64_t>(1, f.integer("log-every"));
    c.stop_after = f.integer("stop-after");
    c.resume = f.flag("resume");
    c.device = device;
    c.progress = !f.flag("quiet");
    app::apply_distributed(f, ds, c);
    DIMIX_CHECK(c.epochs > 0 || c.steps > 0, "train_image: --epochs or --steps must be positive");

    if (c.progress && leader) {
      const std::string dist_line = app::distributed_summary(ds, c);
      std::cout << "dimix train_image: " << f.str("model") << (f.str("mixer").empty() ? "" : " (mixer " + f.str("mixer") + ")")
                << ", " << model->num_parameters() << " parameters, on " << dataset << " (" << train_set->size()
                << " train / " << test_set->size() << " test), " << device.str() << ", " << get_num_threads()
                << " threads" << (dist_line.empty() ? "" : ", " + dist_line) << std::endl;
    }
    if (f.integer("sparsifiner-stage1-steps") > 0 && !c.resume)
      sparsifiner_stage1(*model, *task.train, f.integer("sparsifiner-stage1-steps"), device, c.progress && leader);
    app::install_interrupt_handler();
    const app::TrainResult r = app::train(c, task);
    if (c.progress && leader) {
      std::cout << "\n" << (r.interrupted ? "stopped" : "finished") << " after " << r.steps << " steps in " << std::fixed
                << std::setprecision(1) << r.seconds << " s";
      if (r.last_eval.examples > 0)
        std::cout << "; test accuracy " << std::setprecision(2) << 100 * r.last_eval.accuracy << "% (best "
                  << 100 * r.best_accuracy << "%)";
      std::cout << std::defaultfloat << "\n  checkpoint: " << r.checkpoint << "\n  metrics:    " << r.metrics
                << "\n  plot:       " << r.plot << "\n";
    }
    return 0;
  });
}
