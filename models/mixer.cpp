// The mixer registry (see mixer.h).
#include "models/mixer.h"

#include <cmath>
#include <map>
#include <sstream>

#include "core/error.h"
#include "models/layers.h"
#include "ops/elementwise.h"

namespace dimix {
namespace {
struct Entry {
  std::string description;
  MixerFactory factory;
};
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
}  // namespace

Tensor Mixer::forward_residual(const Tensor& x, const LayerNorm& norm, const Tensor& key_mask) const {
  return x + forward(norm.forward(x), key_mask);
}

void register_mixer(const std::string& name, const std::string& description, MixerFactory factory) {
  table()[name] = Entry{description, std::move(factory)};
}

std::shared_ptr<Mixer> make_mixer(const std::string& name, const MixerSpec& spec) {
  auto it = table().find(name);
  if (it == table().end()) {
    std::ostringstream known;
    for (const auto& [n, e] : table()) known << (known.tellp() ? ", " : "") << n;
    DIMIX_FAIL("unknown mixer '", name, "' (known: ", known.str(), ")");
  }
  return it->second.factory(spec);
}

std::vector<std::pair<std::string, std::string>> mixer_names() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [n, e] : table()) out.emplace_back(n, e.description);
  return out;
}

int64_t default_block(int64_t n) {
  const int64_t r = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (r * r == n) return r;
  return int64_t(1) << static_cast<int64_t>(std::ceil(std::log2(std::sqrt(static_cast<double>(n)))));
}

}  // namespace dimix
