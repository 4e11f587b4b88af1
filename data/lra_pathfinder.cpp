// The snakes2 Pathfinder generator (see lra_pathfinder.h). Names follow the
// authors' code (two_snakes, seed_snake, extend_snake, draw_line_n_mask,
// draw_circle) so the two can be read side by side. Coordinates are (row y,
// column x); angles in radians, 0 along +x, positive towards +y.
#include "data/lra_pathfinder.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/rng.h"
#include "data/png.h"

namespace dimix::lra {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxImageRestarts = 10000;  // two_snakes retries before giving up (the authors loop forever)

struct Coord {
  int y = 0, x = 0;
  bool operator==(const Coord& o) const { return y == o.y && x == o.x; }
};

// snakes.translate_coord: ceil of the displaced point.
Coord translate(Coord c, double theta, double dist) {
  return {static_cast<int>(std::ceil(c.y + dist * std::sin(theta))),
          static_cast<int>(std::ceil(c.x + dist * std::cos(theta)))};
}

double flip_by_pi(double o) { return o < 0 ? o + kPi : o - kPi; }

// Offsets of generate_dilation_struct(r): x^2 + y^2 <= r^2.
std::vector<Coord> disc_offsets(int r) {
  std::vector<Coord> d;
  for (int y = -r; y <= r; ++y)
    for (int x = -r; x <= r; ++x)
      if (x * x + y * y <= r * r) d.push_back({y, x});
  return d;
}

// ---- PIL's BOX resampling (Resample.c precompute_coeffs + two 8-bit passes) ----------
struct BoxCoeffs {
  std::vector<int> start, count;
  std::vector<double> weight;  // [out, ksize]
  int ksize = 0;
};

BoxCoeffs box_coeffs(int in, int out) {
  BoxCoeffs c;
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);
  const double support = 0.5 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.start.resize(static_cast<size_t>(out));
  c.count.resize(static_cast<size_t>(out));
  c.weight.assign(static_cast<size_t>(out) * c.ksize, 0.0);
  for (int xx = 0; xx < out; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in) xmax = in;
    xmax -= xmin;
    double* k = &c.weight[static_cast<size_t>(xx) * c.ksize];
    double total = 0;
    for (int x = 0; x < xmax; ++x) {
      const double arg = (x + xmin - center + 0.5) / filterscale;
      const double w = (arg > -0.5 && arg <= 0.5) ? 1.0 : 0.0;
      k[x] = w;
      total += w;
    }
    if (total != 0.0)
      for (int x = 0; x < xmax; ++x) k[x] /= total;
    c.start[static_cast<size_t>(xx)] = xmin;
    c.count[static_cast<size_t>(xx)] = xmax;
  }
  return c;
}

uint8_t clip8(double v) { return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0)); }

// Square n_in x n_in bytes -> n_out x n_out bytes: horizontal pass, then
// vertical, each rounded to bytes as PIL does.
std::vector<uint8_t> box_resize(const std::vector<uint8_t>& src, int n_in, int n_out, const BoxCoeffs& c) {
  std::vector<uint8_t> mid(static_cast<size_t>(n_in) * n_out), out(static_cast<size_t>(n_out) * n_out);
  for (int y = 0; y < n_in; ++y)
    for (int xx = 0; xx < n_out; ++xx) {
      const double* k = &c.weight[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* row = &src[static_cast<size_t>(y) * n_in + c.start[xx]];
      double s = 0;
      for (int i = 0; i < c.count[xx]; ++i) s += k[i] * row[i];
      mid[static_cast<size_t>(y) * n_out + xx] = clip8(s);
    }
  for (int yy = 0; yy < n_out; ++yy) {
    const double* k = &c.weight[static_cast<size_t>(yy) * c.ksize];
    for (int x = 0; x < n_out; ++x) {
      double s = 0;
      for (int i = 0; i < c.count[yy]; ++i) s += k[i] * mid[static_cast<size_t>(c.start[yy] + i) * n_out + x];
      out[static_cast<size_t>(yy) * n_out + x] = clip8(s);
    }
  }
  return out;
}

// ---- draw_line_n_mask ----------------------------------------------------------------
// A paddle rendered in its own (2R+1)^2 patch whose centre is the paddle's
// start point: `line` and `mask` bytes (value / 255 is what the authors keep).
struct Paddle {
  int radius = 0;  // R = L + ceil(T) + m
  std::vector<uint8_t> line, mask;
  int n() const { return 2 * radius + 1; }
};

// Sets pixel (y, x) of an s x s grid when inside.
inline void set_px(std::vector<uint8_t>& g, int s, int y, int x) {
  if (y >= 0 && x >= 0 && y < s && x < s) g[static_cast<size_t>(y) * s + x] = 255;
}

Paddle draw_line_n_mask(int length, double thickness, int margin, int aa, double orientation,
                        const std::vector<Coord>& large_disc) {
  Paddle p;
  p.radius = length + static_cast<int>(std::ceil(thickness)) + margin;
  const int s = p.n() * aa - (aa - 1);  // (2R) * aa + 1
  const int c = p.radius * aa;
  const Coord head = translate({c, c}, orientation, static_cast<double>(length) * aa);
  const int width = static_cast<int>(std::nearbyint(thickness * aa));
  std::vector<uint8_t> blown(static_cast<size_t>(s) * s, 0);
  const int dx = head.x - c, dy = head.y - c;
  if (width <= 1 || (dx == 0 && dy == 0)) {
    // Bresenham from (c, c) to head, both ends included (PIL's 1-px line).
    int x = c, y = c;
    const int adx = std::abs(dx), ady = std::abs(dy), sx = dx < 0 ? -1 : 1, sy = dy < 0 ? -1 : 1;
    int err = adx - ady;
    while (true) {
      set_px(blown, s, y, x);
      if (x == head.x && y == head.y) break;
      const int e2 = 2 * err;
      if (e2 > -ady) { err -= ady; x += sx; }
      if (e2 < adx) { err += adx; y += sy; }
    }
  } else {
    // PIL's wide line: the band from -floor-ish((w-1)/2) to +round((w-1)/2)
    // across the segment (ImagingDrawWideLine's ROUND_DOWN / ROUND_UP).
    const double half = (width - 1) / 2.0;
    const double lo = std::ceil(half - 0.5), hi = std::floor(half + 0.5);
    const double len = std::hypot(static_cast<double>(dx), static_cast<double>(dy));
    const double eps = 1e-9;
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) {
        const double px = x - c, py = y - c;
        const double along = (px * dx + py * dy) / len;
        const double across = (px * dy - py * dx) / len;  // along the normal (dy, -dx)
        if (along >= -eps && along <= len + eps && across >= -lo - eps && across <= hi + eps)
          blown[static_cast<size_t>(y) * s + x] = 255;
      }
  }
  // The mask: the line dilated by the disc of radius margin * aa (cv2.dilate).
  std::vector<uint8_t> dilated(static_cast<size_t>(s) * s, 0);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x)
      if (blown[static_cast<size_t>(y) * s + x])
        for (const Coord& d : large_disc) set_px(dilated, s, y + d.y, x + d.x);
  const BoxCoeffs coeffs = box_coeffs(s, p.n());
  p.line = box_resize(blown, s, p.n(), coeffs);
  p.mask = box_resize(dilated, s, p.n(), coeffs);
  return p;
}

// ---- the image being built ------------------------------------------------------------
struct Canvas {
  int W = 0;
  std::vector<float> image, mask;
};

// np.maximum of a placed patch into `grid` (values byte / 255 * scale).
void max_patch(std::vector<float>& grid, int W, const std::vector<uint8_t>& patch, int radius, Coord at, float scale) {
  const int n = 2 * radius + 1;
  for (int i = 0; i < n; ++i) {
    const int y = at.y - radius + i;
    if (y < 0 || y >= W) continue;
    for (int j = 0; j < n; ++j) {
      const int x = at.x - radius + j;
      if (x < 0 || x >= W) continue;
      const float v = patch[static_cast<size_t>(i) * n + j] / 255.0f * scale;
      float& g = grid[static_cast<size_t>(y) * W + x];
      g = std::max(g, v);
    }
  }
}

// max(mask + m_im) over the patch (outside it the sum is the mask, <= 1).
float max_sum(const std::vector<float>& mask, int W, const Paddle& p, Coord at) {
  const int n = p.n();
  float best = 0;
  for (int i = 0; i < n; ++i) {
    const int y = at.y - p.radius + i;
    if (y < 0 || y >= W) continue;
    for (int j = 0; j < n; ++j) {
      const int x = at.x - p.radius + j;
      if (x < 0 || x >= W) continue;
      best = std::max(best, mask[static_cast<size_t>(y) * W + x] + p.mask[static_cast<size_t>(i) * n + j] / 255.0f);
    }
  }
  return best;
}

// A paddle as placed in the image (its mask is committed one step later).
struct Placed {
  const Paddle* paddle = nullptr;  // owned by the paddle cache
  Coord at;
};

// Paddles and seed kernels are pure functions of (L, T, m, aa, orientation),
// and orientations come from a finite set (whole degrees for seeds, angles
// of integer offsets for continuations), so each thread keeps what it drew.
struct PaddleKey {
  int length, margin, aa;
  uint64_t thickness_bits, orientation_bits;
  bool operator==(const PaddleKey& o) const {
    return length == o.length && margin == o.margin && aa == o.aa && thickness_bits == o.thickness_bits &&
           orientation_bits == o.orientation_bits;
  }
};
struct PaddleKeyHash {
  size_t operator()(const PaddleKey& k) const {
    uint64_t h = k.orientation_bits * 0x9E3779B97F4A7C15ull;
    h ^= (k.thickness_bits + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2));
    h ^= static_cast<uint64_t>(k.length) * 1000003u + static_cast<uint64_t>(k.margin) * 10007u + static_cast<uint64_t>(k.aa);
    return static_cast<size_t>(h);
  }
};
struct PaddleCacheEntry {
  Paddle paddle;
  std::vector<Coord> kernel;  // the seed struct's solid offsets; filled on first use
  bool has_kernel = false;
};
PaddleCacheEntry& paddle_cache_entry(int length, double thickness, int margin, int aa, double orientation,
                                     const std::vector<Coord>& large_disc) {
  thread_local std::unordered_map<PaddleKey, std::unique_ptr<PaddleCacheEntry>, PaddleKeyHash> cache;
  const PaddleKey key{length, margin, aa, std::bit_cast<uint64_t>(thickness), std::bit_cast<uint64_t>(orientation)};
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (cache.size() > 200000) cache.clear();  // bound memory for unusual parameter sweeps
    auto entry = std::make_unique<PaddleCacheEntry>();
    entry->paddle = draw_line_n_mask(length, thickness, margin, aa, orientation, large_disc);
    it = cache.emplace(key, std::move(entry)).first;
  }
  return *it->second;
}

// ---- bit rows for the seed search -----------------------------------------------------
struct BitGrid {
  int W = 0, words = 0;
  std::vector<uint64_t> bits;  // [W, words], bit x of row y = pixel (y, x)
  explicit BitGrid(int w) : W(w), words((w + 63) / 64), bits(static_cast<size_t>(w) * ((w + 63) / 64), 0) {}
  uint64_t* row(int y) { return &bits[static_cast<size_t>(y) * words]; }
  const uint64_t* row(int y) const { return &bits[static_cast<size_t>(y) * words]; }
  void set(int y, int x) { row(y)[x >> 6] |= uint64_t(1) << (x & 63); }
};

// dst bit x |= src bit (x + dx), bits past the row end read as 0.
void or_shifted(uint64_t* dst, const uint64_t* src, int words, int dx) {
  if (dx >= 0) {
    const int q = dx >> 6, r = dx & 63;
    for (int i = 0; i + q < words; ++i) {
      uint64_t v = src[i + q] >> r;
      if (r && i + q + 1 < words) v |= src[i + q + 1] << (64 - r);
      dst[i] |= v;
    }
  } else {
    const int e = -dx, q = e >> 6, r = e & 63;
    for (int i = q; i < words; ++i) {
      uint64_t v = src[i - q] << r;
      if (r && i - q - 1 >= 0) v |= src[i - q - 1] >> (64 - r);
      dst[i] |= v;
    }
  }
}

// ---- one image ----------------------------------------------------------------------------
class ImageMaker {
 public:
  ImageMaker(const PathfinderParams& p, uint64_t seed, uint64_t index) : p_(p), gen_(seed), W_(p.window) {
    gen_.set_state(seed, index << 32);
  }

  PathfinderImage make(int force_label = -1) {
    PathfinderImage out;
    out.label = randint(0, 2);
    if (force_label >= 0) out.label = force_label;
    margin_ = p_.margins.size() > 1 ? p_.margins[static_cast<size_t>(randint(0, static_cast<int>(p_.margins.size())))]
                                    : p_.margins[0];
    out.margin = margin_;
    small_disc_ = disc_offsets(margin_);
    large_disc_ = disc_offsets(margin_ * p_.aa_scale);

    Canvas canvas;
    std::array<Coord, 2> origin{}, terminal{};
    int restarts = 0;
    while (!two_snakes(canvas, origin, terminal)) {
      DIMIX_CHECK(++restarts < kMaxImageRestarts, "pathfinder: could not place the two target snakes in ",
                  kMaxImageRestarts, " tries (window ", W_, ", contour length ", p_.contour_length, ", margin ", margin_,
                  "); the parameters leave too little room");
    }
    // Distractors: make_many_snakes(allow_incomplete, stop_with_availability=0.01).
    for (int i = 0; i < p_.num_distractors; ++i) {  // `i < K` also for fractional K, as the authors' while loop
      for (int attempt = 0; attempt <= p_.max_distractor_retrial; ++attempt)
        if (make_snake(canvas, p_.distractor_length)) break;
    }
    // Markers.
    const int origin_mark = randint(0, 2);
    const int terminal_mark = out.label == 0 ? 1 - origin_mark : origin_mark;
    draw_circle(canvas.image, origin[static_cast<size_t>(origin_mark)]);
    draw_circle(canvas.image, terminal[static_cast<size_t>(terminal_mark)]);
    out.pixels = bytescale(canvas.image);
    return out;
  }

 private:
  int randint(int lo, int hi) { return lo + static_cast<int>(gen_.randint(static_cast<uint64_t>(hi - lo))); }
  double uniform() { return gen_.uniform(); }
  double random_orientation() { return randint(-180, 180) * kPi / 180; }
  bool in_bounds(Coord c) const { return c.y >= 0 && c.y < W_ && c.x >= 0 && c.x < W_; }

  const Paddle* paddle(double orientation) {
    return &paddle_cache_entry(p_.paddle_length, p_.thickness, margin_, p_.aa_scale, orientation, large_disc_).paddle;
  }

  // Tails where a paddle of `orientation` fits: pixels x with no occupied
  // pixel (mask > 0.3, or within `border` of the edge) under the paddle's
  // solid mask placed at x (the authors' "head-centric struct" dilation).
  // Returns the chosen tail through `tail`; false when none is free.
  bool sample_tail(const std::vector<float>& mask, int border, double orientation, Coord& tail) {
    const int L = p_.paddle_length, m = margin_;
    const int k = 2 * (L + m) + 1, anchor = L + m;
    // The struct: the paddle's mask drawn at (L+m+1, L+m+1) in a k x k image;
    // its kernel is where it is exactly 1 (astype(uint8)).
    PaddleCacheEntry& entry =
        paddle_cache_entry(p_.paddle_length, p_.thickness, margin_, p_.aa_scale, orientation, large_disc_);
    if (!entry.has_kernel) {
      const Paddle& s = entry.paddle;
      for (int i = 0; i < s.n(); ++i)
        for (int j = 0; j < s.n(); ++j) {
          const int y = anchor + 1 - s.radius + i, x = anchor + 1 - s.radius + j;
          if (y < 0 || x < 0 || y >= k || x >= k) continue;
          if (s.mask[static_cast<size_t>(i) * s.n() + j] == 255) entry.kernel.push_back({y - anchor, x - anchor});
        }
      if (entry.kernel.empty()) entry.kernel.push_back({0, 0});
      entry.has_kernel = true;
    }
    const std::vector<Coord>& kernel = entry.kernel;
    BitGrid occupied(W_), blocked(W_);
    for (int y = 0; y < W_; ++y)
      for (int x = 0; x < W_; ++x) {
        const bool edge = y < border || x < border || y >= W_ - border || x >= W_ - border;
        if (edge || mask[static_cast<size_t>(y) * W_ + x] > 0.3f) occupied.set(y, x);
      }
    for (const Coord& d : kernel)
      for (int y = 0; y < W_; ++y) {
        const int sy = y + d.y;
        if (sy < 0 || sy >= W_) continue;
        or_shifted(blocked.row(y), occupied.row(sy), blocked.words, d.x);
      }
    const int tail_bits = W_ & 63;
    const uint64_t last_word = tail_bits ? (uint64_t(1) << tail_bits) - 1 : ~uint64_t(0);
    auto free_bits = [&](int y, int w) {
      uint64_t v = ~blocked.row(y)[w];
      if (w == blocked.words - 1) v &= last_word;
      return v;
    };
    int64_t available = 0;
    for (int y = 0; y < W_; ++y)
      for (int w = 0; w < blocked.words; ++w) available += std::popcount(free_bits(y, w));
    if (available == 0) return false;
    int64_t pick = randint(0, static_cast<int>(available));  // row-major, as np.nonzero
    for (int y = 0; y < W_; ++y)
      for (int w = 0; w < blocked.words; ++w) {
        uint64_t v = free_bits(y, w);
        const int c = std::popcount(v);
        if (pick >= c) {
          pick -= c;
          continue;
        }
        for (; pick > 0; --pick) v &= v - 1;
        tail = {y, w * 64 + std::countr_zero(v)};
        return true;
      }
    return false;
  }

  struct Snake {
    Coord pivot;
    double orientation = 0;
    Placed segment;  // the last paddle, whose mask is committed at the next step
    Coord tip;       // the newest head
  };

  // seed_snake / the first seed of initialize_two_seeds. `border`: blocked
  // edge width; stop_with_availability: the 1% free-area stop (distractors).
  bool seed(const std::vector<float>& mask, int border, bool stop_with_availability, Coord& tail, double& orientation,
            Coord& pivot) {
    const int L = p_.paddle_length, m = margin_;
    for (int trial = 0; trial <= p_.max_paddle_retrial;) {
      orientation = random_orientation();
      if (stop_with_availability) {
        int64_t raw = 0;
        for (float v : mask) raw += v <= 0.3f;
        if (static_cast<double>(raw) / (static_cast<double>(W_) * W_) < 0.01) return false;
      }
      if (!sample_tail(mask, border, orientation, tail)) return false;
      const Coord head = translate(tail, orientation, L);
      pivot = translate(head, flip_by_pi(orientation), L + m);
      if (!in_bounds(head) || !in_bounds(pivot)) {
        ++trial;
        continue;
      }
      return true;
    }
    return false;
  }

  // extend_snake: false on a dead end or when every redraw collides.
  bool extend(Snake& s, Canvas& canvas, float contrast) {
    const int L = p_.paddle_length, m = margin_;
    const Coord new_pivot = translate(s.pivot, s.orientation, L + 2 * m);
    // get_coords_cmf: points every ~1 px on the circle of radius L+m.
    const double r = L + m;
    const double step_deg = 360.0 / (2 * r * kPi);
    std::vector<Coord> coords;
    const int64_t samples = static_cast<int64_t>(std::ceil(360.0 / step_deg));
    for (int64_t i = 0; i < samples; ++i) {
      const double rad = (static_cast<double>(i) * step_deg) * kPi / 180;
      const double y = new_pivot.y + r * std::sin(rad), x = new_pivot.x + r * std::cos(rad);
      if (y >= W_ || y < 0 || x >= W_ || x < 0) continue;
      coords.push_back({static_cast<int>(y), static_cast<int>(x)});
    }
    if (coords.empty()) return false;
    std::sort(coords.begin(), coords.end(), [](Coord a, Coord b) { return a.y != b.y ? a.y < b.y : a.x < b.x; });
    coords.erase(std::unique(coords.begin(), coords.end()), coords.end());
    std::vector<double> orientations(coords.size()), cmf(coords.size());
    double total = 0;
    for (size_t i = 0; i < coords.size(); ++i) {
      const Coord c = coords[i];
      orientations[i] = std::atan2(static_cast<double>(c.y - new_pivot.y), static_cast<double>(c.x - new_pivot.x));
      const double diff = std::abs(orientations[i] - s.orientation);
      const double delta = std::min(std::min(diff, 2 * kPi - diff) * p_.continuity, 0.5 * kPi);
      const double w = std::pow(std::max(std::cos(delta), 0.0), 2);
      // 1 - dilate(mask, disc(m)) at c
      float dil = 0;
      for (const Coord& d : small_disc_) {
        const int y = c.y + d.y, x = c.x + d.x;
        if (y >= 0 && x >= 0 && y < W_ && x < W_) dil = std::max(dil, canvas.mask[static_cast<size_t>(y) * W_ + x]);
      }
      total += (1.0 - dil) * w;
      cmf[i] = total;
    }
    if (total < 1e-4) return false;
    for (double& v : cmf) v /= total;
    for (int trial = 0; trial <= p_.max_paddle_retrial; ++trial) {
      const double u = uniform();
      size_t k = 0;  // np.argmax(cmf - u > 0): the first index above u, 0 if none
      while (k < cmf.size() && !(cmf[k] - u > 0)) ++k;
      if (k == cmf.size()) k = 0;
      const Paddle* pad = paddle(flip_by_pi(orientations[k]));
      if (max_sum(canvas.mask, W_, *pad, coords[k]) < 1.8f) {
        max_patch(canvas.image, W_, pad->line, pad->radius, coords[k], contrast);
        max_patch(canvas.mask, W_, s.segment.paddle->mask, s.segment.paddle->radius, s.segment.at, 1.0f);
        s.segment = {pad, coords[k]};
        s.pivot = new_pivot;
        s.orientation = orientations[k];
        s.tip = coords[k];
        return true;
      }
    }
    return false;
  }

  double paddle_contrast() {
    const size_t n = p_.paddle_contrasts.size();
    return p_.paddle_contrasts[n > 1 ? static_cast<size_t>(randint(0, static_cast<int>(n))) : 0];
  }

  // two_snakes (with initialize_two_seeds); on success the canvas holds both
  // snakes and the occupancy mask.
  bool two_snakes(Canvas& canvas, std::array<Coord, 2>& origin, std::array<Coord, 2>& terminal) {
    const int L = p_.paddle_length, m = margin_, pad = p_.padding;
    canvas.W = W_;
    canvas.image.assign(static_cast<size_t>(W_) * W_, 0.0f);
    canvas.mask.assign(static_cast<size_t>(W_) * W_, 0.0f);
    for (int y = 0; y < W_; ++y)
      for (int x = 0; x < W_; ++x)
        if (y < pad || x < pad || y >= W_ - pad || x >= W_ - pad) canvas.mask[static_cast<size_t>(y) * W_ + x] = 1.0f;
    // Contrast centres: shuffle(snake_contrasts * 2)[:2].
    std::vector<double> mu = p_.snake_contrasts;
    mu.insert(mu.end(), p_.snake_contrasts.begin(), p_.snake_contrasts.end());
    for (size_t i = mu.size(); i > 1; --i) std::swap(mu[i - 1], mu[static_cast<size_t>(randint(0, static_cast<int>(i)))]);

    std::array<Snake, 2> snakes;
    // Seed 1: kept 2 * seed_distance from the border.
    const double contrast1 = paddle_contrast() * mu[0];
    Coord tail1;
    if (!seed(canvas.mask, std::max(pad, 2 * p_.seed_distance), false, tail1, snakes[0].orientation, snakes[0].pivot))
      return false;
    snakes[0].segment = {paddle(snakes[0].orientation), tail1};
    // Seed 2: seed_distance from seed 1, only bounds-checked.
    const double contrast2 = paddle_contrast() * mu[1];
    Coord tail2;
    bool placed = false;
    for (int trial = 0; trial <= p_.max_paddle_retrial && !placed;) {
      snakes[1].orientation = random_orientation();
      const double angle = randint(0, 360) * kPi / 180;
      tail2 = {static_cast<int>(std::nearbyint(tail1.y + p_.seed_distance * std::sin(angle))),
               static_cast<int>(std::nearbyint(tail1.x + p_.seed_distance * std::cos(angle)))};
      const Coord head = translate(tail2, snakes[1].orientation, L);
      snakes[1].pivot = translate(head, flip_by_pi(snakes[1].orientation), L + m);
      if (!in_bounds(head) || !in_bounds(snakes[1].pivot)) ++trial;
      else placed = true;
    }
    if (!placed) return false;
    snakes[1].segment = {paddle(snakes[1].orientation), tail2};
    max_patch(canvas.image, W_, snakes[0].segment.paddle->line, snakes[0].segment.paddle->radius, tail1,
              static_cast<float>(contrast1));
    max_patch(canvas.image, W_, snakes[1].segment.paddle->line, snakes[1].segment.paddle->radius, tail2,
              static_cast<float>(contrast2));
    origin = {tail1, tail2};
    for (int segment = 0; segment < p_.contour_length - 1; ++segment) {
      const double contrast = paddle_contrast();
      for (int i = 0; i < 2; ++i)
        if (!extend(snakes[static_cast<size_t>(i)], canvas, static_cast<float>(contrast * mu[static_cast<size_t>(i)])))
          return false;
    }
    // Only the last snake's final paddle is committed (the authors' code).
    max_patch(canvas.mask, W_, snakes[1].segment.paddle->mask, snakes[1].segment.paddle->radius, snakes[1].segment.at, 1.0f);
    for (int i = 0; i < 2; ++i)
      terminal[static_cast<size_t>(i)] = p_.contour_length > 1 ? snakes[static_cast<size_t>(i)].tip : Coord{0, 0};
    return true;
  }

  // make_snake for a distractor: all or nothing.
  bool make_snake(Canvas& canvas, int segments) {
    const size_t nc = p_.snake_contrasts.size();
    auto contrast = [&] { return p_.snake_contrasts[nc > 1 ? static_cast<size_t>(randint(0, static_cast<int>(nc))) : 0]; };
    double c = contrast();
    Snake s;
    Coord tail;
    if (!seed(canvas.mask, 1, true, tail, s.orientation, s.pivot)) return false;
    s.segment = {paddle(s.orientation), tail};
    Canvas trial = canvas;
    max_patch(trial.image, W_, s.segment.paddle->line, s.segment.paddle->radius, tail, static_cast<float>(c));
    for (int i = 0; i < segments - 1; ++i) {
      c = contrast();
      if (!extend(s, trial, static_cast<float>(c))) return false;
    }
    max_patch(trial.mask, W_, s.segment.paddle->mask, s.segment.paddle->radius, s.segment.at, 1.0f);
    canvas = std::move(trial);
    return true;
  }

  // draw_circle: a disc of marker_radius * aa at aa x, box-reduced by aa.
  void draw_circle(std::vector<float>& image, Coord at) {
    const int aa = p_.aa_scale;
    const double r = p_.marker_radius * aa;
    const int reach = static_cast<int>(std::ceil(p_.marker_radius)) + 2;
    for (int y = std::max(0, at.y - reach); y <= std::min(W_ - 1, at.y + reach); ++y)
      for (int x = std::max(0, at.x - reach); x <= std::min(W_ - 1, at.x + reach); ++x) {
        int inside = 0;
        for (int sy = 0; sy < aa; ++sy)
          for (int sx = 0; sx < aa; ++sx) {
            const double dy = y * aa + sy - at.y * aa, dx = x * aa + sx - at.x * aa;
            inside += dx * dx + dy * dy <= r * r;
          }
        const float v = clip8(255.0 * inside / (aa * aa)) / 255.0f;
        float& g = image[static_cast<size_t>(y) * W_ + x];
        g = std::max(g, v);
      }
  }

  // scipy.misc.imsave's bytescale.
  static std::vector<uint8_t> bytescale(const std::vector<float>& image) {
    const auto [lo_it, hi_it] = std::minmax_element(image.begin(), image.end());
    const double lo = *lo_it;
    double range = *hi_it - lo;
    if (range == 0) range = 1;
    std::vector<uint8_t> px(image.size());
    for (size_t i = 0; i < image.size(); ++i)
      px[i] = static_cast<uint8_t>(std::clamp((image[i] - lo) * 255.0 / range, 0.0, 255.0) + 0.5);
    return px;
  }

  const PathfinderParams& p_;
  Generator gen_;
  int W_;
  int margin_ = 1;
  std::vector<Coord> small_disc_, large_disc_;
};

// Python 2's str(float): 12 significant digits, integral values as "x.0".
std::string py_float(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.12g", v);
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

int py2_int_div(int a, int b) { return a / b; }  // operands are positive here

}  // namespace

void validate(const PathfinderParams& p) {
  auto fail_if = [](bool bad, const std::string& what) { DIMIX_CHECK(!bad, "pathfinder: ", what); };
  fail_if(p.window < 8, "window must be at least 8 pixels, got " + std::to_string(p.window));
  fail_if(p.aa_scale < 1, "aa_scale must be positive, got " + std::to_string(p.aa_scale));
  fail_if(p.paddle_length < 1, "paddle_length must be positive, got " + std::to_string(p.paddle_length));
  fail_if(!(p.thickness > 0) || std::abs(p.thickness * p.aa_scale - std::nearbyint(p.thickness * p.aa_scale)) > 1e-9,
          "thickness * aa_scale must be a positive integer (thickness does not break even), got thickness " +
              py_float(p.thickness) + " at aa_scale " + std::to_string(p.aa_scale));
  fail_if(p.margins.empty(), "margins must not be empty");
  for (int m : p.margins) fail_if(m < 0, "margins must be non-negative, got " + std::to_string(m));
  fail_if(p.padding < 0 || 2 * p.padding >= p.window, "padding " + std::to_string(p.padding) + " leaves no room in a " +
                                                          std::to_string(p.window) + "-pixel window");
  fail_if(p.seed_distance < 0, "seed_distance must be non-negative");
  fail_if(4 * p.seed_distance >= p.window, "seed_distance " + std::to_string(p.seed_distance) +
                                               " keeps the first seed 2x that from every border: no room in a " +
                                               std::to_string(p.window) + "-pixel window");
  fail_if(p.contour_length < 1 || p.distractor_length < 1, "contour and distractor lengths must be positive");
  fail_if(p.num_distractors < 0, "num_distractors must be non-negative");
  fail_if(p.snake_contrasts.empty(), "snake_contrasts must not be empty");
  fail_if(p.paddle_contrasts.empty(), "paddle_contrasts must not be empty");
  fail_if(p.marker_radius <= 0, "marker_radius must be positive");
  fail_if(p.max_paddle_retrial < 0 || p.max_distractor_retrial < 0, "retrial counts must be non-negative");
}

PathfinderParams pathfinder_params(int window, int contour_length) {
  DIMIX_CHECK(contour_length == 6 || contour_length == 9 || contour_length == 14,
              "pathfinder: contour length must be 6 (curv_baseline), 9 or 14 (curv_contour_length_*), got ",
              contour_length);
  PathfinderParams p;
  int budget = 0;  // K, the distractor paddle budget
  switch (window) {
    case 32:
      p.padding = 1; p.aa_scale = 2; p.paddle_length = 2; p.thickness = 0.5; p.margins = {1};
      p.seed_distance = 7; p.marker_radius = 1.5; p.continuity = 1.0; budget = 20;
      p.snake_contrasts = {2.0}; p.paddle_contrasts = {0.75};
      break;
    case 64:
      p.padding = 1; p.aa_scale = 2; p.paddle_length = 5; p.thickness = 1; p.thickness_is_int = true; p.margins = {1};
      p.seed_distance = 12; p.marker_radius = 2.5; p.continuity = 1.8; budget = 22;
      p.snake_contrasts = {0.8}; p.paddle_contrasts = {1.0};
      break;
    case 128:
      p.padding = 1; p.aa_scale = 2; p.paddle_length = 5; p.thickness = 1.5; p.margins = {2, 3};
      p.seed_distance = 20; p.marker_radius = 3; p.continuity = 1.8; budget = 35;
      p.snake_contrasts = {0.9}; p.paddle_contrasts = {1.0};
      break;
    case 256:
      p.padding = 22; p.aa_scale = 2; p.paddle_length = 5; p.thickness = 2; p.thickness_is_int = true; p.margins = {3};
      p.seed_distance = 27; p.marker_radius = 5; p.continuity = 1.8; budget = 30;
      p.snake_contrasts = {1.0}; p.paddle_contrasts = {1.0};
      break;
    default:
      DIMIX_FAIL("pathfinder: window must be 32, 64, 128 or 256 (LRA's sizes), got ", window);
  }
  p.window = window;
  p.contour_length = contour_length;
  p.distractor_length = py2_int_div(contour_length, 3);
  p.num_distractors = py2_int_div(budget, p.distractor_length);
  return p;
}

PathfinderParams pathx_curriculum_params(const std::string& variant) {
  // get_pf64u_cl14_nogap_args
  PathfinderParams nogap = pathfinder_params(128, 14);
  nogap.margins = {1};
  nogap.num_distractors = py2_int_div(22, nogap.distractor_length);
  nogap.snake_contrasts = {0.9};
  if (variant == "nogap") return nogap;
  double alpha = 0;
  try {
    size_t pos = 0;
    alpha = std::stod(variant, &pos);
    DIMIX_CHECK(pos == variant.size(), "");
  } catch (...) {
    DIMIX_FAIL("pathfinder: Path-X curriculum variant must be 'nogap' or an interpolation weight such as 0.75, got '",
               variant, "'");
  }
  // get_merge_cl14_args(with_gap, pathx, alpha)
  PathfinderParams with_gap = nogap;
  with_gap.margins = {2, 2};
  PathfinderParams pathx = nogap;
  pathx.snake_contrasts = {0.76666666666};
  pathx.margins = {2, 3};
  pathx.num_distractors = py2_int_div(35 * 2, pathx.distractor_length);
  const double a = 1 - alpha, b = alpha;
  PathfinderParams p = nogap;
  p.padding = static_cast<int>(std::nearbyint(a * with_gap.padding + b * pathx.padding));
  p.aa_scale = static_cast<int>(std::nearbyint(a * with_gap.aa_scale + b * pathx.aa_scale));
  const int m0 = static_cast<int>(std::nearbyint(a * with_gap.margins[0] + b * pathx.margins[0]));
  const int m1 = static_cast<int>(std::nearbyint(a * with_gap.margins[1] + b * pathx.margins[1]));
  p.margins.clear();
  for (int m = std::min(m0, m1); m <= std::max(m0, m1); ++m) p.margins.push_back(m);
  p.seed_distance = static_cast<int>(a * with_gap.seed_distance + b * pathx.seed_distance);
  p.marker_radius = a * with_gap.marker_radius + b * pathx.marker_radius;
  p.thickness = a * with_gap.thickness + b * pathx.thickness;
  p.thickness = std::nearbyint(p.thickness * p.aa_scale) / p.aa_scale;
  p.thickness_is_int = false;
  p.continuity = a * with_gap.continuity + b * pathx.continuity;
  p.contour_length = 14;
  p.distractor_length = 14 / 3;
  p.num_distractors = a * with_gap.num_distractors + b * pathx.num_distractors;
  p.snake_contrasts = {a * with_gap.snake_contrasts[0] + b * pathx.snake_contrasts[0]};
  return p;
}

PathfinderImage generate_pathfinder_image(const PathfinderParams& params, uint64_t seed, uint64_t index,
                                          int force_label) {
  validate(params);
  DIMIX_CHECK(force_label >= -1 && force_label <= 1, "pathfinder: force_label must be -1, 0 or 1, got ", force_label);
  return ImageMaker(params, seed, index).make(force_label);
}

std::string pathfinder_metadata_line(const PathfinderParams& p, int64_t batch, int64_t i, int label, int margin) {
  std::ostringstream os;
  os << "imgs/" << batch << " sample_" << i << ".png " << i << " " << label << " " << py_float(p.continuity) << " "
     << p.contour_length << " " << p.distractor_length << " " << p.paddle_length << " "
     << (p.thickness_is_int ? std::to_string(static_cast<int>(p.thickness)) : py_float(p.thickness)) << " " << margin
     << " " << p.paddle_contrasts.size();
  return os.str();
}

int64_t generate_pathfinder(const std::string& dir, const PathfinderRunOptions& o, const PathfinderProgress& progress) {
  validate(o.params);
  DIMIX_CHECK(o.count > 0, "pathfinder: count must be positive, got ", o.count);
  DIMIX_CHECK(o.per_batch > 0, "pathfinder: per_batch must be positive, got ", o.per_batch);
  namespace fs = std::filesystem;
  const int64_t batches = (o.count + o.per_batch - 1) / o.per_batch;
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "metadata", ec);
  DIMIX_CHECK(!ec, "pathfinder: cannot create directory '", (fs::path(dir) / "metadata").string(), "': ", ec.message());
  for (int64_t k = 0; k < batches; ++k) {
    fs::create_directories(fs::path(dir) / "imgs" / std::to_string(k), ec);
    DIMIX_CHECK(!ec, "pathfinder: cannot create directory '", (fs::path(dir) / "imgs" / std::to_string(k)).string(),
                "': ", ec.message());
  }
  std::vector<int8_t> labels(static_cast<size_t>(o.count)), margins(static_cast<size_t>(o.count));
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, o.count));
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mu;
  using Clock = std::chrono::steady_clock;
  auto last_report = Clock::now();
  auto work = [&] {
    try {
      for (int64_t i; !failed && (i = next.fetch_add(1)) < o.count;) {
        const PathfinderImage img = ImageMaker(o.params, o.seed, static_cast<uint64_t>(i)).make();
        const std::string path = (fs::path(dir) / "imgs" / std::to_string(i / o.per_batch) /
                                  ("sample_" + std::to_string(i % o.per_batch) + ".png"))
                                     .string();
        data::write_png_gray(path, o.params.window, o.params.window, img.pixels.data());
        labels[static_cast<size_t>(i)] = static_cast<int8_t>(img.label);
        margins[static_cast<size_t>(i)] = static_cast<int8_t>(img.margin);
        const int64_t d = done.fetch_add(1) + 1;
        if (progress) {
          std::unique_lock<std::mutex> lock(mu, std::try_to_lock);
          if (lock.owns_lock() && Clock::now() - last_report > std::chrono::seconds(1)) {
            last_report = Clock::now();
            progress(d, o.count);
          }
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  if (progress) progress(o.count, o.count);

  int64_t positives = 0;
  for (int64_t k = 0; k < batches; ++k) {
    std::string text;
    for (int64_t i = k * o.per_batch; i < std::min(o.count, (k + 1) * o.per_batch); ++i) {
      text += pathfinder_metadata_line(o.params, k, i - k * o.per_batch, labels[static_cast<size_t>(i)],
                                       margins[static_cast<size_t>(i)]);
      text += "\n";
      positives += labels[static_cast<size_t>(i)];
    }
    data::write_file_bytes((fs::path(dir) / "metadata" / (std::to_string(k) + ".npy")).string(), text.data(),
                           text.size());
  }
  return positives;
}

}  // namespace dimix::lra
