// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/reduce.h"

namespace qatcore {
namespace QATCORE_ISA_NS {
namespace {

#include "kernels/simd.h"

// v - v is 0 for every finite v and NaN for NaN and +-inf.
inline int not_finite(float v) { return !(v - v == 0.0f); }

void minmax(const float* x, int64_t n, MinMax* acc) {
  float lo = acc->lo, hi = acc->hi;
  int bad = 0;
  QATCORE_PRAGMA(omp simd reduction(min : lo) reduction(max : hi) reduction(| : bad))
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    bad |= not_finite(v);
  }
  acc->lo = lo;
  acc->hi = hi;
  if (bad) acc->finite = 0;
}

int minmax_cols(const float* x, int64_t n, float* lo, float* hi) {
  int bad = 0;
  QATCORE_SIMD_REDUCE(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    lo[i] = v < lo[i] ? v : lo[i];
    hi[i] = v > hi[i] ? v : hi[i];
    bad |= not_finite(v);
  }
  return !bad;
}

}  // namespace

extern const ReduceKernels kReduce = {minmax, minmax_cols};

}  // namespace QATCORE_ISA_NS
}  // namespace qatcore
