// Pieces the communicator backends share (not part of the public API): the
// rank-ordered sum that makes CPU reductions deterministic, chunk bounds,
// and the wait-with-deadline loop.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"

namespace dimix::dist::detail {

// out[i] = ((src[0][i] + src[1][i]) + src[2][i]) + ... in dtype's own
// arithmetic, for i in [0, n). `out` may alias any src (each element is
// read before it is written: the sum goes through a small block buffer).
void sum_in_rank_order(DType dtype, void* out, const std::vector<const void*>& srcs, int64_t n);

// Chunk q of n elements split into `parts` for the all-reduce's internal
// reduce-scatter: as even as possible, the first n % parts chunks one longer.
inline int64_t chunk_begin(int64_t n, int parts, int q) {
  return q * (n / parts) + std::min<int64_t>(q, n % parts);
}

// "rank 1", "ranks 1, 3".
std::string rank_list(const std::vector<int>& ranks);

// Seconds in the environment's DIMIX_DIST_TIMEOUT, or `fallback`.
double env_timeout(double fallback);

using Clock = std::chrono::steady_clock;

// Polls a completion test until it holds or `seconds` pass; spins briefly,
// then sleeps in growing steps (up to 1 ms) so a waiting rank leaves the
// cores to the ranks still computing. Returns false on timeout.
template <class Done>
bool wait_until(Done&& done, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int spin = 0; spin < 200; ++spin)
    if (done()) return true;
  int64_t sleep_us = 10;
  while (!done()) {
    if (Clock::now() > deadline) return done();
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min<int64_t>(sleep_us * 2, 1000);
  }
  return true;
}

}  // namespace dimix::dist::detail
