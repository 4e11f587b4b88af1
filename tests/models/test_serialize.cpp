// Module state dicts and checkpoints: round-trips through safetensors, the
// one-message report of every mismatch, non-strict loading, and resuming
// training from a checkpoint bit-identically.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "core/rng.h"
#include "models/schedule.h"
#include "models/serialize.h"

using namespace dimix;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string temp_file(const std::string& name) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("dimix_serialize_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  // Removes the directory when the test binary exits.
  static const struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  return (dir / name).string();
}

// A module assembled from the outside, so each test builds the layout it needs.
class Bag : public Module {
 public:
  Bag& param(const std::string& name, Tensor t) {
    register_parameter(name, std::move(t));
    return *this;
  }
  Bag& buffer(const std::string& name, Tensor t) {
    register_buffer(name, std::move(t));
    return *this;
  }
  std::shared_ptr<Bag> child(const std::string& name) { return register_module(name, std::make_shared<Bag>()); }
  std::string type_name() const override { return "Bag"; }
};

// fc.weight [4, 3], fc.bias [4], ln.weight [4], buffer steps (i64 [1]).
std::shared_ptr<Bag> small_net(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_shared<Bag>();
  net->child("fc")->param("weight", randn({4, 3}, DType::f32, &gen)).param("bias", randn({4}, DType::f32, &gen));
  net->child("ln")->param("weight", randn({4}, DType::f32, &gen));
  net->buffer("steps", from_vector<int64_t>({static_cast<int64_t>(seed)}, {1}));
  return net;
}

std::vector<std::vector<float>> values(const Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : module_state(m)) out.push_back(t.to_vector<float>());
  return out;
}

}  // namespace

TEST_CASE("serialize: save_module / load_module round-trip parameters and buffers", "[serialize]") {
  auto a = small_net(1), b = small_net(2);
  REQUIRE(values(*a) != values(*b));
  const std::string path = temp_file("module.safetensors");
  save_module(*a, path, {{"arch", "small"}});
  // The file holds the dotted names in module order.
  const auto raw = load_safetensors(path);
  std::vector<std::string> names;
  for (const auto& [n, t] : raw.tensors) names.push_back(n);
  CHECK(names == std::vector<std::string>{"fc.weight", "fc.bias", "ln.weight", "steps"});

  const Tensor b_weight = b->named_parameters()[0].second;  // held like an optimizer holds it
  const auto meta = load_module(*b, path);
  CHECK(meta.at("arch") == "small");
  CHECK(values(*b) == values(*a));
  CHECK(b_weight.to_vector<float>() == a->named_parameters()[0].second.to_vector<float>());  // copied in place
  CHECK(b->named_buffers()[0].second.to_vector<int64_t>() == std::vector<int64_t>{1});
  CHECK(b->named_parameters()[0].second.requires_grad());
}

TEST_CASE("serialize: every mismatch is reported in one message", "[serialize]") {
  auto saved = small_net(1);
  const std::string path = temp_file("mismatch.safetensors");
  save_module(*saved, path);

  // fc.weight transposed, fc.bias f64, no ln.weight, an extra head.weight.
  auto other = std::make_shared<Bag>();
  other->child("fc")->param("weight", zeros({3, 4})).param("bias", zeros({4}, DType::f64));
  other->child("head")->param("weight", zeros({2}));
  other->buffer("steps", from_vector<int64_t>({0}, {1}));
  const auto before = values(*other);
  try {
    load_module(*other, path);
    FAIL("load_module accepted a mismatched file");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Contains("load_module: " + path + " does not match the module (4 problems)"));
    CHECK_THAT(msg, Contains("missing keys [head.weight]"));
    CHECK_THAT(msg, Contains("unexpected keys [ln.weight]"));
    CHECK_THAT(msg, Contains("shape mismatch for 'fc.weight': " + path + " has [4, 3], module has [3, 4]"));
    CHECK_THAT(msg, Contains("dtype mismatch for 'fc.bias': " + path + " has f32, module has f64"));
    CHECK(msg.find('\n') == std::string::npos);  // one line, for the binaries' error output
  }
  CHECK(values(*other) == before);  // nothing was copied

  // Non-strict: missing and unexpected keys are ignored, shapes still checked.
  CHECK_THROWS_WITH(load_module(*other, path, /*strict=*/false),
                    Contains("(2 problems)") && Contains("shape mismatch") && !Contains("missing keys"));
  auto partial = std::make_shared<Bag>();
  partial->child("fc")->param("weight", zeros({4, 3}));
  partial->child("head")->param("weight", zeros({2}));
  load_module(*partial, path, /*strict=*/false);
  CHECK(partial->named_parameters()[0].second.to_vector<float>() ==
        saved->named_parameters()[0].second.to_vector<float>());
  CHECK(partial->named_parameters()[1].second.to_vector<float>() == std::vector<float>{0, 0});

  // In memory, with a caller-chosen source name.
  CHECK_THROWS_WITH(load_module_state(*partial, {{"fc.weight", zeros({4, 3})}, {"fc.weight", zeros({4, 3})}}, false,
                                      "my dict"),
                    Contains("my dict") && Contains("duplicate keys [fc.weight]"));
}

TEST_CASE("serialize: checkpoint with optimizer and extras resumes bit-identically", "[serialize]") {
  auto run_steps = [](Module& net, AdamW& opt, int from, int to) {
    CosineAnnealingLR sched(0.01, 8);
    for (int s = from; s < to; ++s) {
      sched.apply(opt, s);
      Generator gen(500 + s);
      for (const Tensor& p : net.parameters()) p.set_grad(randn(p.sizes(), p.dtype(), &gen));
      clip_grad_norm_(net.parameters(), 1.0);
      opt.step();
    }
  };
  auto make_opt = [](const Module& net) {
    return std::make_unique<AdamW>(param_groups_no_decay_1d(net.named_parameters(), 0.05), AdamWOptions{.lr = 0.01});
  };

  auto ref = small_net(3);
  auto ref_opt = make_opt(*ref);
  run_steps(*ref, *ref_opt, 0, 8);

  auto first = small_net(3);
  auto first_opt = make_opt(*first);
  run_steps(*first, *first_opt, 0, 4);
  const std::string path = temp_file("checkpoint.safetensors");
  CheckpointExtras extras;
  extras.tensors.emplace_back("rng", from_vector<int64_t>({1234, 56}, {2}));
  extras.metadata["epoch"] = "2";
  save_checkpoint(path, *first, first_opt.get(), extras);
  const auto raw = load_safetensors(path);
  CHECK(raw.contains("model.fc.weight"));
  CHECK(raw.contains("optim.state.0.0.exp_avg"));
  CHECK(raw.contains("extra.rng"));
  CHECK(raw.metadata.at("optim.type") == "AdamW");
  CHECK(raw.metadata.at("optim.step_count") == "4");
  CHECK(raw.metadata.at("extra.epoch") == "2");

  auto resumed = small_net(99);  // different start: the checkpoint must overwrite it
  auto resumed_opt = make_opt(*resumed);
  const CheckpointExtras got = load_checkpoint(path, *resumed, resumed_opt.get());
  CHECK(resumed_opt->step_count() == 4);
  REQUIRE(got.tensors.size() == 1);
  CHECK(got.tensors[0].first == "rng");
  CHECK(got.tensors[0].second.to_vector<int64_t>() == std::vector<int64_t>{1234, 56});
  CHECK(got.metadata == std::map<std::string, std::string>{{"epoch", "2"}});
  run_steps(*resumed, *resumed_opt, 4, 8);
  CHECK(values(*resumed) == values(*ref));

  // A checkpoint without optimizer state cannot restore one; a wrong
  // optimizer type is named with the file.
  const std::string model_only = temp_file("model_only.safetensors");
  save_checkpoint(model_only, *first, nullptr);
  auto net = small_net(5);
  auto opt = make_opt(*net);
  CHECK_THROWS_WITH(load_checkpoint(model_only, *net, opt.get()), Contains("holds no optimizer state"));
  CHECK_NOTHROW(load_checkpoint(model_only, *net, nullptr));
  CHECK(values(*net) == values(*first));
  auto untouched = small_net(6);
  SGD sgd6(untouched->parameters(), SGDOptions{});
  const auto before = values(*untouched);
  CHECK_THROWS_WITH(load_checkpoint(path, *untouched, &sgd6), Contains(path) && Contains("AdamW optimizer"));
  CHECK(values(*untouched) == before);  // the model is not touched when the optimizer fails
}
