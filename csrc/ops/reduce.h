// Whole-tensor min and max (exact, so any split gives the same result).
#pragma once
#include <cstdint>

#include "exec/executor.h"
#include "kernels/reduce.h"

namespace qatcore {

// Min and max over the non-NaN values of x, and whether every value is finite
// (MinMax from kernels/reduce.h: {+inf, -inf, 1} for n == 0).
MinMax minmax(Executor& ex, const float* x, int64_t n);

}  // namespace qatcore
