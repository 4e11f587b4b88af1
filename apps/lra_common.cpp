// train_lra's defaults, curriculum initialisation and loader options (see
// lra_common.h).
#include "apps/lra_common.h"

#include <cmath>
#include <cstring>

#include "core/safetensors.h"
#include "models/serialize.h"

namespace dimix::app {

LRATaskDefaults lra_task_defaults(const std::string& task) {
  if (task == "listops") return {32, 1000, 5000, 50, 62, 64, "data/lra/listops-1000"};
  if (task == "text") return {32, 8000, 20000, 500, 781, 256, "data/lra/imdb"};
  if (task == "retrieval") return {32, 800, 30000, 300, 565, 128, "data/lra/tsv_data"};
  if (task == "image") return {256, 175, 35000, 175, 20, 32, "data/cifar-10-batches-bin"};
  if (task == "pathfinder32") return {256, 312, 62400, 312, 312, 128, "data/lra/pathfinder32/curv_contour_length_14"};
  if (task == "pathfinder64") return {64, 500, 25000, 500, 100, 64, "data/lra/pathfinder64/curv_contour_length_9"};
  if (task == "pathfinder128") return {64, 500, 25000, 500, 100, 128, "data/lra/pathfinder128/curv_contour_length_14"};
  DIMIX_FAIL("train_lra: task '", task, "' has no defaults; expected listops, text, retrieval, image, pathfinder32, ",
             "pathfinder64 or pathfinder128 (pathx)");
}

Tensor upsample_position_table(const Tensor& table) {
  DIMIX_CHECK(table.dim() == 2, "upsample_position_table: expected a table [P, D], got ", table.shape_str());
  const int64_t P = table.size(0), D = table.size(1);
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(P))));
  DIMIX_CHECK(side * side == P, "upsample_position_table: ", P, " positions are not a square image grid");
  const Tensor src = table.contiguous_raw();
  Tensor up = empty({4 * P, D}, table.dtype());
  const size_t row = static_cast<size_t>(D) * dtype_size(table.dtype());
  const auto* in = static_cast<const char*>(src.raw_data());
  auto* out = static_cast<char*>(up.raw_data());
  for (int64_t Y = 0; Y < 2 * side; ++Y)
    for (int64_t X = 0; X < 2 * side; ++X)
      std::memcpy(out + static_cast<size_t>(Y * 2 * side + X) * row, in + static_cast<size_t>((Y / 2) * side + X / 2) * row,
                  row);
  return up;
}

bool init_lra_from(LRATransformer& model, const std::string& path) {
  SafetensorsContents file = load_safetensors(path);
  bool checkpoint = false;
  for (const auto& entry : file.tensors) checkpoint = checkpoint || entry.first.rfind("model.", 0) == 0;
  NamedTensors state;
  for (auto& [name, t] : file.tensors) {
    if (checkpoint && name.rfind("model.", 0) != 0) continue;  // optimizer state, extras
    state.emplace_back(checkpoint ? name.substr(6) : name, t);
  }
  const Tensor& ours = model.position->weight;
  bool upsampled = false;
  for (auto& [name, t] : state) {
    if (name != "position.weight" || t.sizes() == ours.sizes()) continue;
    DIMIX_CHECK(t.dim() == 2 && t.size(1) == ours.size(1) && 4 * t.size(0) == ours.size(0), "train_lra: --init-from ",
                path, ": position table ", t.shape_str(), " cannot initialise ", ours.shape_str(),
                " (only a square grid half as wide, 4x fewer positions, is upsampled)");
    t = upsample_position_table(t);
    upsampled = true;
  }
  int64_t known = 0;
  const NamedTensors ours_all = module_state(model);
  for (const auto& [name, t] : state)
    for (const auto& mine : ours_all) known += mine.first == name;
  DIMIX_CHECK(known > 0, "train_lra: --init-from ", path, " holds none of this model's tensors (",
              state.size(), " tensors, e.g. '", state.empty() ? std::string() : state.front().first, "')");
  load_module_state(model, state, /*strict=*/false, path);
  return upsampled;
}

DataLoaderOptions lra_loader_options(int64_t global_batch, bool train, uint64_t seed, int workers, int rank,
                                     int world_size) {
  DIMIX_CHECK(world_size >= 1 && 0 <= rank && rank < world_size, "train_lra: rank ", rank, " of ", world_size,
              " is not a rank of a world");
  DIMIX_CHECK(global_batch > 0 && global_batch % world_size == 0, "train_lra: --batch-size ", global_batch,
              " is the global batch, shared by the ", world_size, " ranks: it must be a positive multiple of ",
              world_size);
  DataLoaderOptions o;
  o.batch_size = global_batch / world_size;
  o.rank = rank;
  o.world_size = world_size;
  o.shuffle = train;
  o.drop_last = train;
  o.seed = seed;
  o.num_workers = workers;
  return o;
}

}  // namespace dimix::app
