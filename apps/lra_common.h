// Pieces of train_lra kept in the app library so tests can reach them: the
// per-task training defaults (PAPERS.md 1.6 table, 1.7 curriculum) and the
// Path-X curriculum's initialisation from a smaller stage, whose learned
// position table [P, D] is upsampled 2x2 (nearest neighbour) when the new
// table has 4P rows (get_resized_pos_emb: the square grid of side s becomes
// 2s, each position copied to its 2x2 block). Also the options of its data
// loaders for a rank of a data-parallel run (apps/data_parallel_common.h).
#pragma once
#include <cstdint>
#include <string>

#include "data/loader.h"
#include "models/networks.h"

namespace dimix::app {

struct LRATaskDefaults {
  int64_t batch, warmup, steps, eval_every, eval_batches, radix;
  std::string data_dir;
};

// listops, text, retrieval, image, pathfinder32 (Nystromformer / DM), and
// pathfinder64, pathfinder128 (the curriculum: batch 64, warm-up 500, 25k
// steps, radix = image width). Error for other names.
LRATaskDefaults lra_task_defaults(const std::string& task);

// [s*s, D] -> [4*s*s, D]: row (2y+a) * 2s + (2x+b) of the result is row
// y * s + x of `table`. Error when the rows are not a square number.
Tensor upsample_position_table(const Tensor& table);

// Copies the model held in `path` into `model`, non-strictly: a training
// checkpoint ("model." tensors; optimizer state ignored) or a module file
// (best.safetensors). A position table with a quarter of the model's rows is
// upsampled first; any other shape mismatch is an Error naming the file.
// Returns true when the position table was upsampled.
bool init_lra_from(LRATransformer& model, const std::string& path);

// The options of train_lra's loaders on `rank` of `world_size` ranks:
// shuffled, drop_last and seeded for training, in file order otherwise. Every
// loader, evaluation included, has the global batch `global_batch` (each
// rank reading global_batch / world_size of it), so --eval-batches counts
// the same validation examples at any world size, and W ranks see the
// shards of one process with W micro-batches. Error unless world_size
// divides global_batch.
DataLoaderOptions lra_loader_options(int64_t global_batch, bool train, uint64_t seed, int workers, int rank,
                                     int world_size);

}  // namespace dimix::app
