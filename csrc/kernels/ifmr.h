// IFMR leaf kernels (SPEC "IFMR"): histogram binning and the squared error of
// candidate quantizers, on the data or on a histogram. Compiled once per ISA.
#pragma once
#include <cstdint>

#include "kernels/fake_quant.h"

namespace qatcore {

struct IfmrKernels {
  // counts[i] += 1 for every x, i = floor(x * inv_width) - offset, clamped to
  // [0, nbins). Callers choose inv_width (a power of two) and offset (an
  // integer) so that |x * inv_width| < 2^48 and i is in range for every x they
  // pass; then i is exact at every level. Out of range, i is clamped: -inf and
  // NaN count in bin 0, +inf in bin nbins - 1. scratch: null (count straight
  // into counts), or nbins 16-bit zeros for staging, zeros again on return.
  void (*histogram_add)(const float* x, int64_t n, double inv_width, double offset,
                        int64_t* counts, int64_t nbins, uint16_t* scratch);
  // Sum of (fq(x) - x)^2 over x[0..n), float64: eight lanes folded in a fixed order.
  double (*data_sq_error)(const float* x, int64_t n, QuantConst c);
  // Sum over m bins [lo, hi) holding count values each, spread uniformly, of the
  // squared error of fq(u) = scale * clamp(rint(u / scale), lo_code, hi_code):
  // count * scale^2 * mean over the bin of (code(t) - t)^2, t = u / scale.
  double (*hist_sq_error)(const double* lo, const double* hi, const double* count, int64_t m,
                          double scale, double lo_code, double hi_code);
};

}  // namespace qatcore
