// IFMR (SPEC "IFMR") on whole tensors: histogram binning for Histogram.observe,
// and the squared error of candidate quantizers on the data or on a histogram.
// The search itself (start points, candidates, the choice) is python/qatcore/ifmr.py.
// No front end here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "exec/executor.h"
#include "ops/qrange.h"

namespace qatcore {

// Scratch memory of one histogram_add call, in bytes, whatever the thread count:
// the private counts of the parts after the first, and 16-bit staging counters.
constexpr size_t kHistogramScratchBytes = size_t{32} << 20;

// counts[floor(x * inv_width) - offset] += 1 over x; see IfmrKernels::histogram_add
// for the preconditions. Integer counts: the same for any split and thread count.
// Uses at most kHistogramScratchBytes of scratch, kept between calls.
void histogram_add(Executor& ex, const float* x, int64_t n, double inv_width, double offset,
                   int64_t* counts, int64_t nbins);

// out[c] = sum over x of (fq_c(x) - x)^2 for each candidate c (scale, zero point):
// the data is read once, in fixed blocks scored against every candidate.
void data_sq_errors(Executor& ex, const float* x, int64_t n, const float* scales,
                    const int32_t* zero_points, int64_t candidates, QRange r, double* out);

// The same sums estimated from histogram bins [lo, hi) holding count values each.
void hist_sq_errors(Executor& ex, const double* lo, const double* hi, const double* count,
                    int64_t bins, const float* scales, const int32_t* zero_points,
                    int64_t candidates, QRange r, double* out);

}  // namespace qatcore
