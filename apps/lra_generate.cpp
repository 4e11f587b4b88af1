// lra_generate: writes Long Range Arena data in the release's on-disk formats
// (DATA.md sections 2 and 6), so the LRA loaders and train_lra run on
// machines without lra_release.gz.
//
//   lra_generate listops --out DIR --seed S [--train N --val N --test N]
//       -> DIR/basic_{train,val,test}.tsv
//   lra_generate pathfinder --size 32|64|128|256 --contour 6|9|14 --count N --out DIR --seed S --threads T
//       -> DIR/imgs/<k>/sample_<i>.png, DIR/metadata/<k>.npy
//   lra_generate pathfinder --variant nogap|0.0|0.75|1.25 ...   (Path-X curriculum, 128 px)
#include <iomanip>
#include <iostream>
#include <sstream>

#include "apps/app_common.h"
#include "core/error.h"
#include "data/lra_listops.h"
#include "data/lra_pathfinder.h"

using namespace dimix;

namespace {

std::vector<double> parse_reals(const std::string& flag, const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t pos = 0;
    double x = 0;
    try {
      x = std::stod(item, &pos);
    } catch (...) {
      pos = 0;
    }
    DIMIX_CHECK(pos == item.size() && !item.empty(), "lra_generate: --", flag,
                " expects comma-separated numbers, got '", text, "'");
    v.push_back(x);
  }
  DIMIX_CHECK(!v.empty(), "lra_generate: --", flag, " expects at least one number");
  return v;
}

void print_progress(const std::string& what, int64_t done, int64_t total) {
  const bool tty = app::stdout_is_terminal();
  std::cout << (tty ? "\r" : "") << what << " " << done << "/" << total << " (" << std::fixed << std::setprecision(1)
            << 100.0 * done / std::max<int64_t>(total, 1) << "%)" << std::defaultfloat << (tty ? "   " : "\n")
            << std::flush;
}

int run_listops(int argc, char** argv) {
  app::Flags f("lra_generate listops",
               "Generates LRA ListOps (DATA.md section 2): basic_{train,val,test}.tsv in --out.");
  f.add("out", "data/listops-1000", "output directory");
  f.add("seed", "0", "seed: the same seed and sizes give the same files");
  f.add("train", "96000", "training examples");
  f.add("val", "2000", "validation examples");
  f.add("test", "2000", "test examples");
  f.add("max-depth", "10", "maximum tree depth");
  f.add("max-args", "10", "maximum arguments per operator");
  f.add("min-length", "500", "keep trees longer than this (tokens without brackets)");
  f.add("max-length", "2000", "keep trees shorter than this");
  f.add("threads", "0", "threads (0: all cores)");
  f.add_bool("quiet", "no progress output");
  if (!f.parse(argc, argv)) return 0;
  lra::ListOpsOptions o;
  o.train = f.integer("train");
  o.val = f.integer("val");
  o.test = f.integer("test");
  o.max_depth = static_cast<int>(f.integer("max-depth"));
  o.max_args = static_cast<int>(f.integer("max-args"));
  o.min_length = static_cast<int>(f.integer("min-length"));
  o.max_length = static_cast<int>(f.integer("max-length"));
  o.seed = static_cast<uint64_t>(f.integer("seed"));
  o.threads = static_cast<int>(f.integer("threads"));
  const bool quiet = f.flag("quiet");
  lra::ListOpsProgress progress;
  if (!quiet) progress = [](int64_t d, int64_t t) { print_progress("listops: unique trees", d, t); };
  const auto paths = lra::generate_listops_files(f.str("out"), o, progress);
  if (!quiet) {
    if (app::stdout_is_terminal()) std::cout << "\n";
    for (const auto& p : paths) std::cout << "wrote " << p << "\n";
  }
  return 0;
}

int run_pathfinder(int argc, char** argv) {
  app::Flags f("lra_generate pathfinder",
               "Generates LRA Pathfinder / Path-X images (DATA.md section 6, snakes2): imgs/<k>/sample_<i>.png and "
               "metadata/<k>.npy in --out.");
  f.add("size", "32", "image size: 32, 64, 128 (Path-X) or 256, with LRA's parameters for that size");
  f.add("contour", "14", "target contour length: 6 (curv_baseline), 9 or 14 (curv_contour_length_*)");
  f.add("variant", "", "Path-X curriculum variant instead of --size/--contour: nogap, or an alpha such as 0.0, 0.75, 1.25");
  f.add("count", "1000", "images");
  f.add("per-batch", "1000", "images per imgs/<k> folder and metadata file");
  f.add("out", "data/pathfinder32/curv_contour_length_14", "output directory");
  f.add("seed", "0", "seed: the same seed gives the same images");
  f.add("threads", "0", "threads (0: all cores)");
  f.add("margins", "", "override: paddle margins (gap ~ 2 x margin), one drawn per image, e.g. 2,3");
  f.add("gap", "", "override: paddle gap in pixels, i.e. margins = gap / 2");
  f.add("contrast", "", "override: snake contrast(s), e.g. 0.9 (distractors use it alone, targets times the paddle contrast)");
  f.add("paddle-contrast", "", "override: paddle contrast(s) of the target snakes");
  f.add("distractors", "", "override: number of distractor snakes");
  f.add("continuity", "", "override: continuity (higher: straighter)");
  f.add_bool("quiet", "no progress output");
  if (!f.parse(argc, argv)) return 0;

  lra::PathfinderParams p;
  if (!f.str("variant").empty()) {
    DIMIX_CHECK(!f.given("size") || f.integer("size") == 128, "lra_generate: --variant is a 128-pixel Path-X variant; ",
                "--size ", f.integer("size"), " contradicts it");
    p = lra::pathx_curriculum_params(f.str("variant"));
  } else {
    p = lra::pathfinder_params(static_cast<int>(f.integer("size")), static_cast<int>(f.integer("contour")));
  }
  DIMIX_CHECK(!(f.given("margins") && f.given("gap")), "lra_generate: give --margins or --gap, not both");
  if (f.given("margins")) {
    p.margins.clear();
    for (double m : parse_reals("margins", f.str("margins"))) {
      DIMIX_CHECK(m >= 0 && m == static_cast<int>(m), "lra_generate: --margins expects whole numbers, got ", m);
      p.margins.push_back(static_cast<int>(m));
    }
  }
  if (f.given("gap")) {
    const int64_t gap = f.integer("gap");
    DIMIX_CHECK(gap >= 0 && gap % 2 == 0, "lra_generate: --gap must be an even number of pixels (2 x margin), got ", gap);
    p.margins = {static_cast<int>(gap / 2)};
  }
  if (f.given("contrast")) p.snake_contrasts = parse_reals("contrast", f.str("contrast"));
  if (f.given("paddle-contrast")) p.paddle_contrasts = parse_reals("paddle-contrast", f.str("paddle-contrast"));
  if (f.given("distractors")) p.num_distractors = f.real("distractors");
  if (f.given("continuity")) p.continuity = f.real("continuity");
  lra::validate(p);

  lra::PathfinderRunOptions o;
  o.params = p;
  o.count = f.integer("count");
  o.per_batch = f.integer("per-batch");
  o.seed = static_cast<uint64_t>(f.integer("seed"));
  o.threads = static_cast<int>(f.integer("threads"));
  const bool quiet = f.flag("quiet");
  if (!quiet) {
    std::cout << "pathfinder " << p.window << "x" << p.window << ": contour " << p.contour_length << ", "
              << p.num_distractors << " distractors of " << p.distractor_length << ", margins";
    for (int m : p.margins) std::cout << " " << m;
    std::cout << ", snake contrast " << p.snake_contrasts[0] << ", " << o.count << " images -> " << f.str("out") << "\n";
  }
  lra::PathfinderProgress progress;
  if (!quiet) progress = [](int64_t d, int64_t t) { print_progress("pathfinder: images", d, t); };
  const int64_t positives = lra::generate_pathfinder(f.str("out"), o, progress);
  if (!quiet) {
    if (app::stdout_is_terminal()) std::cout << "\n";
    std::cout << "wrote " << o.count << " images (" << positives << " positive) and "
              << (o.count + o.per_batch - 1) / o.per_batch << " metadata file(s) under " << f.str("out") << "\n";
  }
  return 0;
}

const char* kUsage =
    "usage: lra_generate listops [flags] | lra_generate pathfinder [flags]\n"
    "Generates Long Range Arena data in the release's on-disk formats.\n"
    "  listops      basic_{train,val,test}.tsv (see lra_generate listops --help)\n"
    "  pathfinder   imgs/<k>/sample_<i>.png + metadata/<k>.npy (see lra_generate pathfinder --help)\n";

}  // namespace

int main(int argc, char** argv) {
  std::cout << std::unitbuf;  // progress lines reach a log file as they happen
  return app::run_main([&] {
    const std::string task = argc > 1 ? argv[1] : "";
    if (task == "--help" || task == "-h" || task == "help") {
      std::cout << kUsage;
      return 0;
    }
    if (task == "listops") return run_listops(argc - 1, argv + 1);
    if (task == "pathfinder") return run_pathfinder(argc - 1, argv + 1);
    DIMIX_FAIL("lra_generate: expected a task, listops or pathfinder, as the first argument",
               task.empty() ? std::string() : ", got '" + task + "'", " (see --help)");
  });
}
