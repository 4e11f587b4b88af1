// Philox4x32-10, the counter-based RNG of Salmon et al. (SC'11), used by
// PyTorch and cuRAND. Counter-based means element i of a draw is a pure
// function of (seed, offset + i): the CPU and a CUDA kernel produce the same
// numbers, any thread can produce any element, and a run is reproducible from
// (seed, offset) alone, which is what a checkpoint stores.
//
// Draw rule (shared with cuda/): element i of a draw that starts at `offset`
// takes the 4 words philox(counter = offset + i, key = seed); uniforms use
// word 0 (f32: top 24 bits, f64: words 0 and 1 for 53 bits), normals use
// Box-Muller on words 0/1 (f32) or 0..3 (f64).
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace dimix {

#if defined(__CUDACC__)
#define DIMIX_HOST_DEVICE __host__ __device__
#else
#define DIMIX_HOST_DEVICE
#endif

struct Philox4x32 {
  static DIMIX_HOST_DEVICE inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    const uint64_t p = static_cast<uint64_t>(a) * b;
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
  }
  // Returns 4 random words for a 64-bit counter and 64-bit key.
  static DIMIX_HOST_DEVICE inline void generate(uint64_t counter, uint64_t key, uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int r = 0; r < 10; ++r) {
      uint32_t hi0, lo0, hi1, lo1;
      mulhilo(0xD2511F53u, c0, hi0, lo0);
      mulhilo(0xCD9E8D57u, c2, hi1, lo1);
      const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  }
};

// Uniform in [0, 1) from one or two words.
DIMIX_HOST_DEVICE inline float philox_uniform_f32(uint32_t w) { return (w >> 8) * (1.0f / 16777216.0f); }
DIMIX_HOST_DEVICE inline double philox_uniform_f64(uint32_t w0, uint32_t w1) {
  const uint64_t bits = (static_cast<uint64_t>(w0) << 21) ^ (w1 >> 11);
  return (bits & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// The uniform and normal samples for element `i` of a draw at (seed, offset).
template <class T>
DIMIX_HOST_DEVICE inline T philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  uint32_t w[4];
  Philox4x32::generate(offset + i, seed, w);
  if constexpr (sizeof(T) == 4) return static_cast<T>(philox_uniform_f32(w[0]));
  else return static_cast<T>(philox_uniform_f64(w[0], w[1]));
}
template <class T>
DIMIX_HOST_DEVICE inline T philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  uint32_t w[4];
  Philox4x32::generate(offset + i, seed, w);
  double u1, u2;
  if constexpr (sizeof(T) == 4) { u1 = philox_uniform_f32(w[0]); u2 = philox_uniform_f32(w[1]); }
  else { u1 = philox_uniform_f64(w[0], w[1]); u2 = philox_uniform_f64(w[2], w[3]); }
  u1 = 1.0 - u1;  // (0, 1]: log is finite
  return static_cast<T>(::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2));
}

// A seeded stream: every draw of n elements uses offsets [offset, offset+n)
// and advances the offset. Not thread-safe; use one per thread or lock.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  void manual_seed(uint64_t seed) { seed_ = seed; offset_ = 0; }
  // Reserves n elements, returning the offset at which they start.
  uint64_t reserve(uint64_t n) { const uint64_t o = offset_; offset_ += n; return o; }
  // Convenience scalar draws (host logic: shuffles, augmentation choices).
  double uniform() { return philox_uniform<double>(seed_, reserve(1), 0); }
  // Uniform integer in [0, n).
  uint64_t randint(uint64_t n) {
    uint32_t w[4];
    Philox4x32::generate(reserve(1), seed_, w);
    const uint64_t bits = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    return n ? bits % n : 0;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The generator that factories and ops (dropout) draw from when given none:
// the calling thread's innermost GeneratorScope, else the process-wide one.
Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the process-wide one

// Makes `g` the calling thread's default generator while the scope lives
// (scopes nest). Data-parallel ranks that are threads of one process each
// draw their dropout masks from their own shard's stream this way, instead
// of racing on the process-wide generator.
class GeneratorScope {
 public:
  explicit GeneratorScope(Generator& g);
  ~GeneratorScope();
  GeneratorScope(const GeneratorScope&) = delete;
  GeneratorScope& operator=(const GeneratorScope&) = delete;

 private:
  Generator* previous_;
};

}  // namespace dimix
