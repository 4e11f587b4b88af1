// CPU parallelism: one OpenMP runtime for our kernels and for OpenBLAS (its
// OpenMP flavour), so two thread pools never fight over the cores.
//
// parallel_for(begin, end, grain, fn) calls fn(b, e) on disjoint chunks that
// cover [begin, end); it runs serially when the range is below `grain` items
// or when already inside a parallel region.
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dimix {

int get_num_threads();
void set_num_threads(int n);  // also sets OpenBLAS's thread count

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
#ifdef _OPENMP
  const int nt = omp_get_max_threads();
  if (n > grain && nt > 1 && !omp_in_parallel()) {
    const int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / std::max<int64_t>(grain, 1));
#pragma omp parallel num_threads(static_cast<int>(chunks))
    {
      const int64_t t = omp_get_thread_num();
      const int64_t c = omp_get_num_threads();
      const int64_t per = (n + c - 1) / c;
      const int64_t b = begin + t * per;
      const int64_t e = std::min(end, b + per);
      if (b < e) fn(b, e);
    }
    return;
  }
#endif
  fn(begin, end);
}

}  // namespace dimix
