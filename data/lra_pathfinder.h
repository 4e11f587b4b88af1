// Pathfinder / Path-X images (Long Range Arena, DATA.md section 6): the
// "snakes2" generator of drewlinsley/pathfinder (snakes2.py, snakes.py) as LRA
// ran it, and the Path-X curriculum variants of bhattarailab/pathfinder-
// generator (LRA_pathfinder.py; PAPERS.md 1.7).
//
// One image [W, W] (row, col coordinates):
//   1. label = randint(0, 2); margin m drawn from `margins`.
//   2. Two target snakes grown in lockstep from two seeds `seed_distance`
//      apart (the first seed kept 2*seed_distance from the border), each
//      `contour_length` paddles of length L, thickness T, consecutive paddles
//      ~2m apart, each continuation drawn on a circle of radius L+m around
//      the next pivot with weight (1 - dilated mask) * max(cos(min(d*c,
//      pi/2)), 0)^2 (d = turn angle, c = continuity) and accepted when
//      max(mask + paddle mask) < 1.8. A failed draw restarts both snakes.
//   3. `num_distractors` distractor snakes of `distractor_length` paddles,
//      5 tries each, skipped when they fail; seeding stops below 1% free area.
//   4. Markers (discs of `marker_radius`) on one end of each of two snakes:
//      the origin end of snake o = randint(0, 2) and the terminal end of
//      snake o (label 1) or 1 - o (label 0). Positives and negatives differ
//      only in marker placement.
//   5. Composition by max, then byte-scaling as scipy's imsave:
//      px = uint8(clip((v - min) * 255 / (max - min)) + 0.5).
// Rendering: a paddle is rasterised at aa_scale x (a 1-px Bresenham line for
// width round(T*aa) = 1, else PIL's wide-line band), its mask is that line
// dilated by a disc of radius m*aa; both are reduced to (2(L+ceil(T)+m)+1)^2
// with PIL's BOX filter (the allowed stand-in for the authors' Lanczos) and
// quantised to bytes, as the authors' imresize does. Markers likewise.
// Faithful quirks kept: the second seed is only bounds-checked, not checked
// against the first snake; only the last snake's final paddle mask is
// committed to the occupancy mask before the distractors are drawn.
//
// Randomness: image `index` of a run draws everything from Philox (core/rng.h)
// key `seed` at counter index * 2^32, so images are independent of the thread
// that made them and of each other.
//
// On disk (what the LRA release holds and the loaders read):
//   <dir>/imgs/<k>/sample_<i>.png      8-bit grayscale PNG, W x W
//   <dir>/metadata/<k>.npy             text despite the name, one line a sample:
//   "imgs/<k> sample_<i>.png <i> <label> <continuity> <contour_length>
//    <distractor_length> <paddle_length> <thickness> <margin> <#paddle contrasts>"
// with k = index / per_batch and i = index % per_batch.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dimix::lra {

struct PathfinderParams {
  int window = 32;              // W: images are W x W
  int padding = 1;              // border the snakes may not enter
  int aa_scale = 2;             // rendering supersampling; thickness * aa_scale must be an integer
  int paddle_length = 2;        // L
  double thickness = 0.5;       // T
  bool thickness_is_int = false;  // metadata prints "1" (the authors' int) rather than "1.0"
  std::vector<int> margins = {1};  // m, one drawn per image; the gap between paddles is ~2m
  int seed_distance = 7;
  double marker_radius = 1.5;
  double continuity = 1.0;
  int contour_length = 14;
  int distractor_length = 4;
  double num_distractors = 5;   // may be fractional (curriculum): snakes are drawn while count < this
  std::vector<double> snake_contrasts = {2.0};   // per snake; distractors use it alone
  std::vector<double> paddle_contrasts = {0.75}; // per target paddle, times the snake's contrast
  int max_paddle_retrial = 2;
  int max_distractor_retrial = 4;
};

// LRA's parameters (DATA.md section 6 table) for window 32, 64, 128 or 256
// and contour length 6 (curv_baseline), 9 or 14 (curv_contour_length_*):
// distractor_length = cl / 3, num_distractors = K / distractor_length.
PathfinderParams pathfinder_params(int window, int contour_length);
// The Path-X curriculum of PAPERS.md 1.7 (bhattarailab/pathfinder-generator):
// "nogap" (pf64-like margin 1 at 128 px) or an interpolation weight alpha
// between "with gap" (margin 2, contrast 0.9, 5 distractors) and the Path-X
// end point (margins 2-3, contrast 0.7667, 17 distractors), e.g. 0.0, 0.75,
// 1.25 (extrapolation allowed, as the authors did).
PathfinderParams pathx_curriculum_params(const std::string& variant);
// Error naming the field when parameters are inconsistent.
void validate(const PathfinderParams& p);

struct PathfinderImage {
  std::vector<uint8_t> pixels;  // [W, W]
  int label = 0;
  int margin = 0;
};

// Image `index` of the run keyed by `seed`. `force_label` 0 or 1 replaces the
// drawn label and changes nothing else (every other draw is the same), which
// shows that a positive and a negative differ only in the terminal marker.
PathfinderImage generate_pathfinder_image(const PathfinderParams& params, uint64_t seed, uint64_t index,
                                          int force_label = -1);

// The metadata line of one sample (no newline).
std::string pathfinder_metadata_line(const PathfinderParams& params, int64_t batch, int64_t index_in_batch,
                                     int label, int margin);

struct PathfinderRunOptions {
  PathfinderParams params;
  int64_t count = 1000;      // images in total
  int64_t per_batch = 1000;  // images per imgs/<k> folder and metadata/<k>.npy file
  uint64_t seed = 0;
  int threads = 0;           // 0: all cores
};

// progress(done, total), called from one thread at a time, about once a second
// and at the end.
using PathfinderProgress = std::function<void(int64_t done, int64_t total)>;
// Writes the images and metadata under `dir` (created). Returns the number of
// positive labels.
int64_t generate_pathfinder(const std::string& dir, const PathfinderRunOptions& options,
                            const PathfinderProgress& progress = {});

}  // namespace dimix::lra
