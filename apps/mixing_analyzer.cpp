// mixing_analyzer: does a stack of butterfly select/mix levels mix every
// input into every output? Prints the verdict and draws each level's groups
// (tokens on a square grid, one colour per group, like the paper's Fig. 4)
// and the final input -> output reach matrix (like Fig. 3a).
//
//   mixing_analyzer --n 64 --levels 8x1,8x8 --png out/mix
//   mixing_analyzer --fig4 cd
//   mixing_analyzer --network vit-p4-l4-butterfly
#include <cmath>
#include <filesystem>
#include <iostream>

#include "apps/app_common.h"
#include "models/mixing.h"
#include "models/networks.h"
#include "ops/block_linear.h"

using namespace dimix;

namespace {

// Token-axis levels of a named network (its attention / token mixing layers).
std::pair<int64_t, std::vector<MixingLevel>> network_levels(const std::string& name) {
  auto net = make_network(name, NetworkInput{3, 32, 10});
  if (auto* vit = dynamic_cast<ViT*>(net.get())) {
    const int64_t n = vit->tokens;
    std::vector<MixingLevel> levels;
    if (vit->config.mixer == "butterfly-attention") {
      const int64_t b = vit->config.block > 0 ? vit->config.block : default_block(n);
      const auto strides = butterfly_strides(n, b, true);
      for (int64_t i = 0; i < vit->config.layers; ++i) levels.push_back({b, strides[i % strides.size()]});
    } else {
      for (int64_t i = 0; i < vit->config.layers; ++i) levels.push_back({n, 1});
    }
    return {n, levels};
  }
  if (auto* mixer = dynamic_cast<MlpMixer*>(net.get())) {
    const int64_t n = mixer->tokens;
    std::vector<MixingLevel> levels;
    const std::string& m = mixer->config.token_mixer;
    for (int64_t i = 0; i < mixer->config.layers; ++i) {
      if (m == "butterfly-mlp" || m == "butterfly-linear") {
        const int64_t b = default_block(n);
        for (int64_t s : butterfly_strides(n, b, mixer->config.capped_strides)) levels.push_back({b, s});
      } else {
        levels.push_back({n, 1});
      }
    }
    return {n, levels};
  }
  DIMIX_FAIL("mixing_analyzer: network '", name, "' has no token-mixing levels to analyse");
}

void draw_level(const std::string& path, int64_t n, const MixingLevel& l) {
  const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  const bool square = side * side == n;
  const int64_t cols = square ? side : n, rows = square ? side : 1;
  const int cell = static_cast<int>(std::max<int64_t>(2, 512 / std::max(cols, rows)));
  const int W = static_cast<int>(cols * cell), H = static_cast<int>(rows * cell);
  std::vector<uint8_t> img(static_cast<size_t>(W) * H * 3, 255);
  for (int64_t t = 0; t < n; ++t) {
    uint8_t rgb[3];
    app::palette(mixing_group(t, n, l), rgb);
    const int64_t r = t / cols, c = t % cols;
    for (int y = 1; y < cell; ++y)
      for (int x = 1; x < cell; ++x) {
        const size_t o = (static_cast<size_t>(r * cell + y) * W + c * cell + x) * 3;
        img[o] = rgb[0];
        img[o + 1] = rgb[1];
        img[o + 2] = rgb[2];
      }
  }
  app::write_png_rgb(path, W, H, img);
}

void draw_reach(const std::string& path, int64_t n, const std::vector<MixingLevel>& levels) {
  // reach matrix row t = outputs, col u = inputs, recomputed per input column
  const int64_t cap = std::min<int64_t>(n, 1024);
  std::vector<uint8_t> img(static_cast<size_t>(cap) * cap * 3, 255);
  for (int64_t u = 0; u < cap; ++u) {
    std::vector<char> live(n, 0);
    live[u] = 1;
    for (const MixingLevel& l : levels) {
      std::vector<char> group(n / l.block, 0), next(n, 0);
      for (int64_t t = 0; t < n; ++t) if (live[t]) group[mixing_group(t, n, l)] = 1;
      for (int64_t t = 0; t < n; ++t) next[t] = group[mixing_group(t, n, l)];
      live.swap(next);
    }
    for (int64_t t = 0; t < cap; ++t)
      if (live[t]) {
        const size_t o = (static_cast<size_t>(t) * cap + u) * 3;
        img[o] = 30;
        img[o + 1] = 60;
        img[o + 2] = 140;
      }
  }
  app::write_png_rgb(path, static_cast<int>(cap), static_cast<int>(cap), img);
}

}  // namespace

int main(int argc, char** argv) {
  return app::run_main([&] {
    app::Flags flags("mixing_analyzer",
                     "Decides whether a stack of select/mix levels mixes every input into every output, and draws it.");
    flags.add("n", "64", "number of positions (tokens or features)");
    flags.add("levels", "", "levels as BLOCKxSTRIDE, comma separated, e.g. 8x1,8x8");
    flags.add("fig4", "", "two panel letters of the paper's Fig. 4 (a..f), e.g. cd (n = 64)");
    flags.add("network", "", "a named network (see train_image --list-models) to read levels from");
    flags.add("png", "", "output prefix for PNG drawings (PREFIX_level<i>.png, PREFIX_reach.png); empty: none");
    if (!flags.parse(argc, argv)) return 0;
    int64_t n = flags.integer("n");
    std::vector<MixingLevel> levels;
    std::string what;
    if (!flags.str("fig4").empty()) {
      n = 64;
      for (char c : flags.str("fig4")) levels.push_back(fig4_panel(c));
      what = "Fig. 4 (" + flags.str("fig4") + ")";
    } else if (!flags.str("network").empty()) {
      std::tie(n, levels) = network_levels(flags.str("network"));
      what = flags.str("network");
    } else {
      DIMIX_CHECK(!flags.str("levels").empty(), "mixing_analyzer: give --levels, --fig4 or --network (see --help)");
      levels = parse_levels(flags.str("levels"));
      what = flags.str("levels");
    }
    const MixingReport r = analyze_mixing(n, levels);
    std::cout << what << ": n = " << n << ", " << levels.size() << " level(s):";
    for (const auto& l : levels) std::cout << " " << l.block << "x" << l.stride;
    std::cout << "\n  each output depends on " << r.min_reach << ".." << r.max_reach << " of " << n << " inputs\n"
              << "  verdict: " << (r.complete ? "COMPLETE mixing" : "INCOMPLETE mixing") << "\n";
    const std::string png = flags.str("png");
    if (!png.empty()) {
      const auto dir = std::filesystem::path(png).parent_path();
      if (!dir.empty()) std::filesystem::create_directories(dir);
      for (size_t i = 0; i < levels.size(); ++i) draw_level(png + "_level" + std::to_string(i) + ".png", n, levels[i]);
      draw_reach(png + "_reach.png", n, levels);
      std::cout << "  drawings: " << png << "_level*.png, " << png << "_reach.png\n";
    }
    return 0;
  });
}
