// bench_networks: per-network CPU figures of dimix, for comparison with
// PyTorch (scripts/bench_torch.py runs the same networks; scripts/
// bench_networks.sh runs both and prints the ratios).
//
// For each network and batch size: the median time of a training step
// (forward, cross-entropy, backward, Adam) and of a forward pass without
// gradient recording, on random CIFAR-shaped input, after warm-up steps.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "apps/app_common.h"
#include "autograd/node.h"
#include "core/parallel.h"
#include "models/init.h"
#include "models/networks.h"
#include "models/optim.h"
#include "ops/loss.h"

using namespace dimix;

namespace {

template <class F>
double median_ms(F&& fn, int reps, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

const std::vector<std::string> kDefault = {
    "butterfly-mixer-s", "t2-dense-h1", "t2-butterfly-linear-h1", "t2-butterfly-mlp-h1", "t2-dense-h2", "t2-butterfly-linear-h2",
    "t2-butterfly-mlp-h2", "vit-p4-l4-dense", "vit-p4-l4-butterfly", "vit-p4-l8-dense", "vit-p4-l8-butterfly",
    "vit-p2-l4-dense", "vit-p2-l4-butterfly", "vit-p1-l4-dense", "vit-p1-l4-butterfly", "mixer0-l7", "mixer1-l7",
    "patch-only-l7"};

}  // namespace

int main(int argc, char** argv) {
  return app::run_main([&] {
    app::Flags f("bench_networks", "Times a training step and a forward pass of the papers' networks on the CPU.");
    f.add("only", "", "comma-separated network names (default: the Table II, III and V networks)");
    f.add("batches", "32,128", "comma-separated batch sizes");
    f.add("reps", "10", "timed repetitions per figure (2 for the slow dense patch-1 ViT)");
    f.add("warmup", "3", "untimed repetitions first");
    f.add("threads", "2", "CPU threads");
    f.add("json", "", "also write the figures to this JSON file");
    f.add_bool("list", "print the networks it would time, one a line, and exit");
    if (!f.parse(argc, argv)) return 0;
    set_num_threads(static_cast<int>(f.integer("threads")));
    std::vector<std::string> names;
    {
      std::stringstream ss(f.str("only"));
      for (std::string n; std::getline(ss, n, ',');) if (!n.empty()) names.push_back(n);
      if (names.empty()) names = kDefault;
    }
    if (f.flag("list")) {
      for (const auto& n : names) std::cout << n << "\n";
      return 0;
    }
    std::vector<int64_t> batches;
    {
      std::stringstream ss(f.str("batches"));
      for (std::string n; std::getline(ss, n, ',');) batches.push_back(std::stoll(n));
    }
    std::ostringstream json;
    json << "{\"threads\": " << get_num_threads() << ", \"rows\": [";
    std::cout << "# dimix, " << get_num_threads() << " threads\n"
              << std::left << std::setw(26) << "network" << std::right << std::setw(6) << "batch" << std::setw(11)
              << "train ms" << std::setw(9) << "img/s" << std::setw(10) << "fwd ms" << std::setw(10) << "params\n";
    bool first = true;
    for (const auto& name : names) {
      for (int64_t B : batches) {
        init::seed(0);
        // The default model of the main job runs on Fashion-MNIST-shaped input.
        const bool fmnist = name == "butterfly-mixer-s";
        const NetworkInput in = fmnist ? NetworkInput{1, 28, 10} : NetworkInput{3, 32, 10};
        auto net = make_network(name, in);
        Generator g(1);
        const Tensor x = randn({B, in.channels, in.image, in.image}, DType::f32, &g);
        const Tensor y = randint(0, 10, {B}, DType::i64, &g);
        AdamOptions ao;
        ao.lr = 1e-4;
        Adam opt(net->parameters(), ao);
        const bool heavy = name == "vit-p1-l4-dense";
        const int reps = heavy ? 2 : static_cast<int>(f.integer("reps"));
        const int warm = heavy ? 1 : static_cast<int>(f.integer("warmup"));
        const double train_ms = median_ms(
            [&] {
              opt.zero_grad();
              backward(cross_entropy(net->forward(x), y));
              opt.step();
            },
            reps, warm);
        const double fwd_ms = median_ms(
            [&] {
              NoGradGuard ng;
              net->forward(x);
            },
            reps, warm);
        std::cout << std::left << std::setw(26) << name << std::right << std::setw(6) << B << std::fixed
                  << std::setprecision(1) << std::setw(11) << train_ms << std::setw(9) << B / train_ms * 1e3
                  << std::setw(10) << fwd_ms << std::setw(10) << net->num_parameters() << std::defaultfloat << std::endl;
        json << (first ? "" : ",") << "\n {\"name\": \"" << name << "\", \"batch\": " << B << ", \"train_ms\": " << train_ms
             << ", \"fwd_ms\": " << fwd_ms << ", \"params\": " << net->num_parameters() << "}";
        first = false;
      }
    }
    json << "\n]}\n";
    if (!f.str("json").empty()) {
      std::ofstream out(f.str("json"));
      DIMIX_CHECK(out.good(), "bench_networks: cannot write ", f.str("json"));
      out << json.str();
    }
    return 0;
  });
}
