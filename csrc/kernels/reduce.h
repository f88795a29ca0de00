// Reduction leaf kernels (min, max, finiteness), compiled once per instruction set.
#pragma once
#include <cstdint>

namespace qatcore {

// lo/hi fold the non-NaN values; finite drops to 0 at the first NaN or infinity.
// Start from {+inf, -inf, 1}. Min and max are exact, so any split of the data
// into runs, folded in any order, gives the same result.
struct MinMax {
  float lo;
  float hi;
  int finite;
};

struct ReduceKernels {
  // Folds x[0..n) into *acc.
  void (*minmax)(const float* x, int64_t n, MinMax* acc);
  // Folds x[c] into lo[c], hi[c] for c < n; returns 0 if a NaN or infinity was met.
  int (*minmax_cols)(const float* x, int64_t n, float* lo, float* hi);
};

}  // namespace qatcore
