#include "ops/reduce.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "ops/layout.h"

namespace qatcore {

MinMax minmax(Executor& ex, const float* x, int64_t n) {
  const ReduceKernels& k = *kernels().reduce;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  // Min and max are exact: one part per thread, combined in any order.
  const Parts parts = per_thread_parts(ex, n);
  const int64_t per_part = parts.size;
  std::vector<MinMax> part(static_cast<size_t>(parts.count), MinMax{kInf, -kInf, 1});
  parallel_ranges(ex, n, per_part, [&](int64_t a, int64_t b) {
    k.minmax(x + a, b - a, &part[static_cast<size_t>(a / per_part)]);
  });
  MinMax r{kInf, -kInf, 1};
  for (const MinMax& m : part) {
    r.lo = std::min(r.lo, m.lo);
    r.hi = std::max(r.hi, m.hi);
    r.finite = r.finite && m.finite;
  }
  return r;
}

}  // namespace qatcore
