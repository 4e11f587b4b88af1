// The shared training loop (see train_common.h).
#include "apps/train_common.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <stb_easy_font.h>

#include "apps/app_common.h"
#include "apps/data_parallel_common.h"
#include "autograd/node.h"
#include "core/rng.h"
#include "models/optim.h"
#include "models/schedule.h"
#include "models/serialize.h"
#include "ops/loss.h"
#include "ops/reduce.h"

namespace dimix::app {
namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) { g_interrupted = true; }

using Clock = std::chrono::steady_clock;

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, std::vector<ParamGroupSpec> groups) {
  if (c.optimizer == "sgd") {
    SGDOptions o;
    o.lr = c.lr;
    o.momentum = c.momentum;
    o.nesterov = c.nesterov;
    o.weight_decay = c.weight_decay;
    return std::make_unique<SGD>(std::move(groups), o);
  }
  if (c.optimizer == "adam") {
    AdamOptions o;
    o.lr = c.lr;
    o.beta1 = c.beta1;
    o.beta2 = c.beta2;
    o.eps = c.eps;
    o.weight_decay = c.weight_decay;
    return std::make_unique<Adam>(std::move(groups), o);
  }
  if (c.optimizer == "adamw") {
    AdamWOptions o;
    o.lr = c.lr;
    o.beta1 = c.beta1;
    o.beta2 = c.beta2;
    o.eps = c.eps;
    o.weight_decay = c.weight_decay;
    return std::make_unique<AdamW>(std::move(groups), o);
  }
  DIMIX_FAIL("train: unknown optimizer '", c.optimizer, "' (expected sgd, adam or adamw)");
}

std::string fmt_time(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  const int64_t t = static_cast<int64_t>(s + 0.5);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << ":" << std::setw(2) << std::setfill('0') << (t / 60) % 60 << ":";
  else os << (t / 60) << ":";
  os << std::setw(2) << std::setfill('0') << t % 60;
  return os.str();
}

// Running sums of one logging interval (saved in checkpoints so a resumed run
// logs exactly what the uninterrupted one would).
struct LogSums {
  double loss = 0, correct = 0, count = 0, steps = 0;
};

// Keeps only the metrics lines whose "step" is <= `step` (on resume, lines
// written after the checkpoint by the interrupted run are dropped).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::vector<std::string> keep;
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find("\"step\":");
    if (p == std::string::npos) continue;
    if (std::stoll(line.substr(p + 7)) <= step) keep.push_back(line);
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : keep) out << l << "\n";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream os;
  os << std::setprecision(8) << v;
  return os.str();
}

}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }

Tensor forward_batch(const Network& model, const Batch& batch, Device device) {
  const Tensor x = device.is_cpu() ? batch.inputs : to_device_raw(batch.inputs, device);
  Tensor x2;
  if (batch.inputs2.defined()) x2 = device.is_cpu() ? batch.inputs2 : to_device_raw(batch.inputs2, device);
  return model.forward(x, x2);
}

EvalResult evaluate(Network& model, DataLoader& loader, Device device, int64_t max_batches, dist::Communicator* comm,
                    int micro_batches) {
  NoGradGuard ng;
  const int W = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0, K = micro_batches;
  DIMIX_CHECK(K >= 1, "evaluate: micro-batches must be at least 1, got ", K);
  DIMIX_CHECK(loader.options().world_size == W && loader.options().rank == rank, "evaluate: the loader was built for rank ",
              loader.options().rank, " of ", loader.options().world_size, ", this process is rank ", rank, " of ", W);
  const bool was_training = model.is_training();
  model.eval();
  loader.set_epoch(0);
  // Sums per shard (rank r's micro-batch k is shard rK + k), added over
  // shards in order at the end: the same bits for any ranks x micro-batches.
  const int64_t S = static_cast<int64_t>(W) * K;
  std::vector<double> v(static_cast<size_t>(3 * S), 0.0);
  int64_t batches = 0;
  while (auto batch = loader.next()) {
    if (max_batches > 0 && batches >= max_batches) break;
    for (int k = 0; k < K; ++k) {
      const auto [begin, end] = shard_range(batch->size(), K, k);
      if (end == begin) continue;
      const Batch part = K == 1 ? *batch : slice_batch(*batch, begin, end);
      const Tensor logits = forward_batch(model, part, device);
      const Tensor labels = device.is_cpu() ? part.labels : to_device_raw(part.labels, device);
      const int64_t s = static_cast<int64_t>(rank) * K + k;
      v[s] += cross_entropy(logits, labels, 0.0, "sum").item();
      v[S + s] += static_cast<double>(correct_predictions(logits, part.labels));
      v[2 * S + s] += static_cast<double>(end - begin);
    }
    ++batches;
  }
  model.train(was_training);
  if (comm) dist::all_reduce_values(*comm, v);
  EvalResult r;
  double loss_sum = 0, correct = 0, examples = 0;
  for (int64_t s = 0; s < S; ++s) {
    loss_sum += v[s];
    correct += v[S + s];
    examples += v[2 * S + s];
  }
  r.examples = static_cast<int64_t>(examples);
  DIMIX_CHECK(r.examples > 0, "evaluate: the evaluation loader produced no examples");
  r.loss = loss_sum / examples;
  r.accuracy = correct / examples;
  return r;
}

TrainResult train(const TrainConfig& config, TrainTask& task) {
  DIMIX_CHECK(task.model && task.train, "train: a model and a training loader are required");
  // Every rank trains; rank 0 alone prints, writes metrics, plots and checkpoints.
  const std::shared_ptr<dist::Communicator> comm = config.comm ? config.comm : dist::single_process();
  const bool leader = comm->rank() == 0;
  TrainConfig c = config;
  c.progress = config.progress && leader;
  namespace fs = std::filesystem;
  fs::create_directories(c.out_dir);
  TrainResult result;
  result.checkpoint = (fs::path(c.out_dir) / "checkpoint.safetensors").string();
  result.metrics = (fs::path(c.out_dir) / "metrics.jsonl").string();
  result.plot = (fs::path(c.out_dir) / "curves.png").string();

  Network& model = *task.model;
  DataLoader& loader = *task.train;
  model.to(c.device);
  model.train();
  const int W = comm->world_size(), K = c.micro_batches;
  DIMIX_CHECK(K >= 1, "train: micro-batches must be at least 1, got ", K);
  DIMIX_CHECK(loader.options().world_size == W && loader.options().rank == comm->rank(),
              "train: the training loader was built for rank ", loader.options().rank, " of ",
              loader.options().world_size, ", this process is rank ", comm->rank(), " of ", W);
  // Data parallelism (data_parallel_common.h); none in a plain single process.
  const std::vector<ParamGroupSpec> groups = param_groups_no_decay_1d(model.named_parameters(), c.weight_decay);
  std::unique_ptr<DataParallel> dp;
  if (W > 1 || K > 1 || c.zero1) {
    DataParallelOptions o;
    o.zero1 = c.zero1;
    o.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(c.bucket_mb * (1 << 20)));
    dp = std::make_unique<DataParallel>(model.named_parameters(), groups, *comm,
                                        c.device_comm ? *c.device_comm : *comm, o);
  }
  // Under ZeRO-1 this rank's optimizer holds its parameters' state only;
  // checkpoints hold the unsharded state, through a full optimizer.
  std::unique_ptr<Optimizer> opt = make_optimizer(c, dp ? dp->local_groups(groups) : groups);
  const bool sharded = dp && dp->zero1();
  const int64_t per_epoch = loader.num_batches();
  DIMIX_CHECK(per_epoch > 0, "train: the training loader yields no batches (dataset of ", loader.dataset().size(),
              " examples, batch ", loader.global_batch_size(), ")");
  const int64_t total = c.steps > 0 ? c.steps : c.epochs * per_epoch;
  DIMIX_CHECK(total > 0, "train: nothing to do (steps ", c.steps, ", epochs ", c.epochs, ")");
  std::unique_ptr<Schedule> schedule = make_schedule(c.schedule, c.lr, total, c.warmup);

  int64_t step = 0, epoch = 0;
  LogSums sums;
  double best = 0;
  int64_t best_step = -1;  // step of the best evaluation so far (-1: none yet)
  const std::string best_path = (fs::path(c.out_dir) / "best.safetensors").string();
  if (!c.init_from.empty() && !c.resume) {
    load_checkpoint(c.init_from, model, nullptr, /*strict=*/false);
  }
  if (c.resume) {
    DIMIX_CHECK(fs::exists(result.checkpoint), "train: --resume but no checkpoint at ", result.checkpoint);
    std::unique_ptr<Optimizer> full = sharded ? make_optimizer(c, groups) : nullptr;
    const CheckpointExtras ex = load_checkpoint(result.checkpoint, model, sharded ? full.get() : opt.get());
    if (sharded) opt->load_state_dict(dp->local_state(full->state_dict()));
    auto meta = [&](const std::string& k) {
      auto it = ex.metadata.find(k);
      DIMIX_CHECK(it != ex.metadata.end(), "train: checkpoint ", result.checkpoint, " lacks '", k, "'");
      return it->second;
    };
    const std::string data_seed = std::to_string(loader.options().seed);
    DIMIX_CHECK(meta("data_seed") == data_seed, "train: checkpoint ", result.checkpoint, " was written with data seed ",
                meta("data_seed"), " but this run uses ", data_seed, " (pass the same --seed to resume)");
    // The data position counts global batches: a run resumes at any world
    // size (and micro-batch count) that divides the same global batch.
    const std::string global_batch = std::to_string(loader.global_batch_size());
    DIMIX_CHECK(!ex.metadata.count("global_batch") || meta("global_batch") == global_batch, "train: checkpoint ",
                result.checkpoint, " was written with a global batch of ", ex.metadata.count("global_batch") ? meta("global_batch") : "",
                " but this run's is ", global_batch, " (", W, " ranks x ", loader.options().batch_size,
                "): resume with the same global batch");
    if (ex.metadata.count("world_size") && ex.metadata.count("micro_batches") && c.progress) {
      const int64_t shards = std::stoll(meta("world_size")) * std::stoll(meta("micro_batches"));
      if (shards != int64_t(W) * K)
        std::cout << "note: the checkpoint was written by " << meta("world_size") << " ranks x " << meta("micro_batches")
                  << " micro-batches, this run has " << W << " x " << K
                  << ": it continues correctly, but its gradient sums are grouped differently, so not bit for bit"
                  << (shards % W == 0 ? " (--micro-batches " + std::to_string(shards / W) + " would be)" : std::string())
                  << "\n";
    }
    for (const auto& [k, v] : task.metadata) {
      auto it = ex.metadata.find(k);
      DIMIX_CHECK(it == ex.metadata.end() || it->second == v, "train: checkpoint ", result.checkpoint, " has ", k,
                  " = '", it->second, "' but this run has '", v, "'");
    }
    step = std::stoll(meta("step"));
    epoch = std::stoll(meta("epoch"));
    const int64_t position = std::stoll(meta("position"));
    default_generator().set_state(std::stoull(meta("rng_seed")), std::stoull(meta("rng_offset")));
    sums.loss = std::stod(meta("log_loss"));
    sums.correct = std::stod(meta("log_correct"));
    sums.count = std::stod(meta("log_count"));
    sums.steps = std::stod(meta("log_steps"));
    best = std::stod(meta("best_accuracy"));
    if (ex.metadata.count("best_step")) best_step = std::stoll(ex.metadata.at("best_step"));
    loader.set_epoch(epoch, position);
    if (leader) truncate_metrics(result.metrics, step);
    if (c.progress) std::cout << "resumed from " << result.checkpoint << " at step " << step << " (epoch " << epoch + 1
                              << ", batch " << position << ")\n";
  } else {
    default_generator().manual_seed(c.seed);
    loader.set_epoch(0);
    if (leader) std::ofstream(result.metrics, std::ios::trunc);
  }
  std::ofstream metrics;  // rank 0's file; elsewhere a closed stream that drops what is written
  if (leader) {
    metrics.open(result.metrics, std::ios::app);
    DIMIX_CHECK(metrics.good(), "train: cannot write ", result.metrics);
  }
  if (dp) dp->broadcast_parameters();

  auto save = [&] {
    CheckpointExtras ex;
    ex.metadata = task.metadata;
    ex.metadata["step"] = std::to_string(step);
    ex.metadata["data_seed"] = std::to_string(loader.options().seed);
    ex.metadata["epoch"] = std::to_string(epoch);
    ex.metadata["position"] = std::to_string(loader.position());
    ex.metadata["rng_seed"] = std::to_string(default_generator().seed());
    ex.metadata["rng_offset"] = std::to_string(default_generator().offset());
    auto exact = [](double v) { std::ostringstream os; os << std::setprecision(17) << v; return os.str(); };
    ex.metadata["log_loss"] = exact(sums.loss);
    ex.metadata["log_correct"] = exact(sums.correct);
    ex.metadata["log_count"] = exact(sums.count);
    ex.metadata["log_steps"] = exact(sums.steps);
    ex.metadata["best_accuracy"] = exact(best);
    ex.metadata["best_step"] = std::to_string(best_step);
    ex.metadata["global_batch"] = std::to_string(loader.global_batch_size());
    ex.metadata["world_size"] = std::to_string(W);
    ex.metadata["micro_batches"] = std::to_string(K);
    ex.metadata["zero1"] = c.zero1 ? "1" : "0";
    std::string failure;
    try {
      if (sharded) {
        const OptimizerState state = dp->full_state(*opt);  // collective
        if (leader) {
          std::unique_ptr<Optimizer> full = make_optimizer(c, groups);
          full->load_state_dict(state);
          save_checkpoint(result.checkpoint, model, full.get(), ex);
        }
      } else if (leader) {
        save_checkpoint(result.checkpoint, model, opt.get(), ex);
      }
    } catch (const Error& e) {
      failure = e.what();
    }
    if (W > 1) {  // every rank learns whether rank 0's write failed, instead of waiting for it
      std::vector<double> failed{failure.empty() ? 0.0 : 1.0};
      try {
        dist::all_reduce_values(*comm, failed);
      } catch (const Error&) {
        if (!failure.empty()) throw Error(failure);
        throw;
      }
      DIMIX_CHECK(failed[0] == 0 || !failure.empty(), "train: rank 0 could not write the checkpoint ",
                  result.checkpoint, " (its error names the cause)");
    }
    if (!failure.empty()) throw Error(failure);
  };
  auto run_eval = [&] {
    if (!task.eval) return;
    result.last_eval = evaluate(model, *task.eval, c.device, c.eval_batches, comm.get(), K);
    const bool improved = best_step < 0 || result.last_eval.accuracy > best;
    best = std::max(best, result.last_eval.accuracy);
    if (improved) {
      best_step = step;
      if (c.save_best && leader) {
        std::ostringstream acc;
        acc << std::setprecision(17) << best;
        save_module(model, best_path, {{"step", std::to_string(step)}, {"accuracy", acc.str()}});
      }
    }
    metrics << "{\"type\":\"eval\",\"step\":" << step << ",\"epoch\":" << epoch + 1
            << ",\"loss\":" << json_number(result.last_eval.loss) << ",\"acc\":" << json_number(result.last_eval.accuracy)
            << "}\n";
    metrics.flush();
    if (c.progress) {
      std::cout << (stdout_is_terminal() ? "\n" : "") << "eval  step " << step << "  epoch " << epoch + 1 << "  loss "
                << std::fixed << std::setprecision(4) << result.last_eval.loss << "  acc " << std::setprecision(2)
                << 100 * result.last_eval.accuracy << "%" << std::defaultfloat << std::endl;
    }
  };

  const bool tty = c.progress && stdout_is_terminal();
  const auto start = Clock::now();
  auto interval_start = start;
  int64_t interval_items = 0, run_steps = 0;
  double items_per_s = 0;
  g_interrupted = false;

  while (step < total) {
    auto batch = loader.next();
    if (!batch) {  // end of epoch
      if (c.eval_every == 0) run_eval();
      ++epoch;
      loader.set_epoch(epoch);
      save();
      continue;
    }
    schedule->apply(*opt, step);
    // Forward and backward of this rank's part, gradients summed over ranks.
    const int64_t global_batch = loader.global_batch_size();
    const int64_t global_count = std::min(global_batch, loader.dataset().size() - batch->batch_index * global_batch);
    const StepStats stats = data_parallel_step(model, *batch, global_count, c.device, c.label_smoothing, c.seed, step, K,
                                               dp.get(), g_interrupted);
    const double loss_value = stats.loss;
    if (!std::isfinite(loss_value)) {
      DIMIX_FAIL("train: loss became ", loss_value, " at step ", step + 1, "; stopping. The last good checkpoint is ",
                 fs::exists(result.checkpoint) ? result.checkpoint : std::string("(none yet)"),
                 " (try a lower --lr or --clip)");
    }
    if (c.clip > 0) {
      if (dp) dp->clip_grad_norm(c.clip);
      else clip_grad_norm_(model.parameters(), c.clip);
    }
    opt->step();
    opt->zero_grad();
    if (dp) dp->gather_parameters();  // ZeRO-1: the owners' updates to every rank
    ++step;
    ++run_steps;
    sums.loss += loss_value;
    sums.correct += stats.correct;
    sums.count += stats.count;
    sums.steps += 1;
    interval_items += static_cast<int64_t>(stats.count);

    const bool log_now = step % c.log_every == 0 || step == total;
    if (log_now) {
      const double dt = std::chrono::duration<double>(Clock::now() - interval_start).count();
      items_per_s = dt > 0 ? interval_items / dt : 0;
      metrics << "{\"type\":\"train\",\"step\":" << step << ",\"epoch\":" << epoch + 1
              << ",\"loss\":" << json_number(sums.loss / sums.steps) << ",\"acc\":" << json_number(sums.correct / sums.count)
              << ",\"lr\":" << json_number(opt->param_groups()[0].lr) << ",\"" << c.item_name
              << "_per_s\":" << json_number(items_per_s) << "}\n";
      metrics.flush();
      if (c.progress && !tty) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        std::cout << "step " << step << "/" << total << "  epoch " << epoch + 1 << "  loss " << std::fixed
                  << std::setprecision(4) << sums.loss / sums.steps << "  acc " << std::setprecision(2)
                  << 100 * sums.correct / sums.count << "%  " << std::setprecision(0) << items_per_s << " "
                  << c.item_name << "/s  ETA " << fmt_time(elapsed / run_steps * (total - step)) << std::defaultfloat
                  << std::endl;
      }
      sums = LogSums{};
      interval_start = Clock::now();
      interval_items = 0;
    }
    if (tty) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const int64_t pos = loader.position();
      const int width = 24;
      const int filled = static_cast<int>(width * pos / std::max<int64_t>(per_epoch, 1));
      std::cout << "\repoch " << epoch + 1 << " [" << std::string(filled, '=') << (filled < width ? ">" : "")
                << std::string(std::max(0, width - filled - 1), ' ') << "] " << pos << "/" << per_epoch << "  step "
                << step << "/" << total << "  loss " << std::fixed << std::setprecision(4) << loss_value << "  "
                << std::setprecision(0) << (items_per_s > 0 ? items_per_s : run_steps * stats.count / std::max(elapsed, 1e-9))
                << " " << c.item_name << "/s  ETA " << fmt_time(elapsed / run_steps * (total - step)) << std::defaultfloat
                << "   " << std::flush;
    }
    if (c.eval_every > 0 && step % c.eval_every == 0) run_eval();
    if ((c.stop_after > 0 && run_steps >= c.stop_after && step < total) || stats.stop) {  // stop: agreed by all ranks
      save();
      result.interrupted = true;
      if (c.progress)
        std::cout << (tty ? "\n" : "") << (stats.stop ? "interrupted" : "stopped") << " at step " << step
                  << "; checkpoint " << result.checkpoint << " (continue with --resume)\n";
      break;
    }
  }
  if (!result.interrupted) {
    if (c.eval_every == 0 && loader.position() > 0) run_eval();  // a run that ends mid-epoch
    save();
  }
  result.steps = step;
  result.best_accuracy = best;
  result.best_step = best_step;
  if (c.save_best && best_step >= 0) result.best_checkpoint = best_path;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  metrics.close();
  try {
    if (leader) plot_metrics(result.metrics, result.plot);
  } catch (const Error& e) {
    if (c.progress) std::cout << "plot: " << e.what() << "\n";
  }
  return result;
}

// ---- plotting --------------------------------------------------------------------------
namespace {

struct Series {
  std::vector<double> x, y;
};

double field(const std::string& line, const std::string& key, bool& ok) {
  const std::string k = "\"" + key + "\":";
  const auto p = line.find(k);
  ok = p != std::string::npos && line.compare(p + k.size(), 4, "null") != 0;
  return ok ? std::stod(line.substr(p + k.size())) : 0.0;
}

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int w, int h) : w(w), h(h), px(static_cast<size_t>(w) * h * 3, 255) {}
  void dot(int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    for (int k = 0; k < 3; ++k) px[(static_cast<size_t>(y) * w + x) * 3 + k] = c[k];
  }
  void line(double x0, double y0, double x1, double y1, const uint8_t c[3]) {
    const int n = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= n; ++i) {
      const double t = static_cast<double>(i) / n;
      dot(static_cast<int>(x0 + t * (x1 - x0)), static_cast<int>(y0 + t * (y1 - y0)), c);
      dot(static_cast<int>(x0 + t * (x1 - x0)), static_cast<int>(y0 + t * (y1 - y0)) + 1, c);
    }
  }
  void text(int x, int y, const std::string& s, const uint8_t c[3], int scale = 2) {
    static char buf[60000];
    const int quads = stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buf, sizeof(buf));
    const float* v = reinterpret_cast<const float*>(buf);
    for (int q = 0; q < quads; ++q) {
      const float* p = v + q * 16;  // 4 vertices of x, y, z, colour
      const int qx0 = static_cast<int>(p[0]), qy0 = static_cast<int>(p[1]);
      const int qx1 = static_cast<int>(p[8]), qy1 = static_cast<int>(p[9]);
      for (int yy = qy0 * scale; yy < qy1 * scale; ++yy)
        for (int xx = qx0 * scale; xx < qx1 * scale; ++xx) dot(x + xx, y + yy, c);
    }
  }
};

void draw_panel(Canvas& cv, int x0, int y0, int w, int h, const std::string& title,
                const std::vector<std::pair<std::string, Series>>& series, bool percent) {
  const uint8_t axis[3] = {60, 60, 60}, grid[3] = {225, 225, 225};
  static const uint8_t colors[3][3] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}};
  double xmax = 1, ymin = 1e300, ymax = -1e300;
  for (const auto& [n, s] : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  if (ymin > ymax) { ymin = 0; ymax = 1; }
  if (ymax - ymin < 1e-9) { ymax += 0.5; ymin -= 0.5; }
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad;
  ymax += pad;
  const int L = x0 + 70, R = x0 + w - 15, T = y0 + 40, B = y0 + h - 40;
  for (int g = 0; g <= 4; ++g) {
    const double yy = B - (B - T) * g / 4.0;
    cv.line(L, yy, R, yy, grid);
    const double v = ymin + (ymax - ymin) * g / 4.0;
    std::ostringstream os;
    os << std::setprecision(3) << (percent ? 100 * v : v) << (percent ? "%" : "");
    cv.text(x0 + 4, static_cast<int>(yy) - 6, os.str(), axis);
  }
  cv.line(L, T, L, B, axis);
  cv.line(L, B, R, B, axis);
  cv.text(L, y0 + 10, title, axis);
  std::ostringstream xs;
  xs << "step (max " << static_cast<int64_t>(xmax) << ")";
  cv.text(R - 180, B + 14, xs.str(), axis);
  int legend = 0;
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k].second;
    const uint8_t* col = colors[k % 3];
    for (size_t i = 0; i + 1 < s.x.size(); ++i)
      cv.line(L + (R - L) * s.x[i] / xmax, B - (B - T) * (s.y[i] - ymin) / (ymax - ymin), L + (R - L) * s.x[i + 1] / xmax,
              B - (B - T) * (s.y[i + 1] - ymin) / (ymax - ymin), col);
    if (s.x.size() == 1)
      for (int d = -3; d <= 3; ++d) cv.line(L + (R - L) * s.x[0] / xmax + d, B - (B - T) * (s.y[0] - ymin) / (ymax - ymin) - 3,
                                            L + (R - L) * s.x[0] / xmax + d, B - (B - T) * (s.y[0] - ymin) / (ymax - ymin) + 3, col);
    cv.text(L + 200 + 170 * legend++, y0 + 10, series[k].first, col);
  }
}

}  // namespace

void plot_metrics(const std::string& metrics_path, const std::string& png_path) {
  std::ifstream in(metrics_path);
  DIMIX_CHECK(in.good(), "plot: cannot read ", metrics_path);
  Series train_loss, train_acc, eval_loss, eval_acc;
  std::string line;
  while (std::getline(in, line)) {
    bool ok1, ok2, ok3;
    const double step = field(line, "step", ok1), loss = field(line, "loss", ok2), acc = field(line, "acc", ok3);
    if (!ok1) continue;
    const bool is_eval = line.find("\"type\":\"eval\"") != std::string::npos;
    if (ok2) (is_eval ? eval_loss : train_loss).x.push_back(step), (is_eval ? eval_loss : train_loss).y.push_back(loss);
    if (ok3) (is_eval ? eval_acc : train_acc).x.push_back(step), (is_eval ? eval_acc : train_acc).y.push_back(acc);
  }
  DIMIX_CHECK(!train_loss.x.empty() || !eval_loss.x.empty(), "plot: no metrics in ", metrics_path);
  Canvas cv(1200, 450);
  draw_panel(cv, 0, 0, 600, 450, "loss", {{"train", train_loss}, {"eval", eval_loss}}, false);
  draw_panel(cv, 600, 0, 600, 450, "accuracy", {{"train", train_acc}, {"eval", eval_acc}}, true);
  write_png_rgb(png_path, cv.w, cv.h, cv.px);
}

}  // namespace dimix::app
