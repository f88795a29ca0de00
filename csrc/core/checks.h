// The checks every operation's arguments go through (core/op_checks.h combines
// them per operation). Each returns an empty Error, or one whose message starts
// with the argument's public name and says what was expected and what came.
// No front end here: the arrays are ArrayViews.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/array.h"
#include "core/error.h"
#include "core/format.h"
#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore {

// A C-contiguous, aligned array of exactly `want` (writable if asked).
Error check_array(const ArrayView& a, DType want, const char* name, bool writable);

// b has the shape of a: "b_name: expected the shape of a_name (3, 4), got (4, 3)".
Error check_same_shape(const ArrayView& a, const char* a_name, const ArrayView& b,
                       const char* b_name);

// Exact aliasing (the same buffer) is allowed; any other overlap is not.
Error check_no_partial_overlap(const ArrayView& in, const ArrayView& out, const char* in_name,
                               const char* out_name);

// An input and the output buffer ("out") written from it: exact dtypes, the same
// shape, and either the same memory or none shared.
Error check_in_out(const ArrayView& in, DType in_dtype, const char* in_name, const ArrayView& out,
                   DType out_dtype);

// A backward's float32 arrays: grad_output, the forward's input (`in_name`) and the
// output buffer, all of one shape; out may be either input or share nothing with them.
Error check_backward(const ArrayView& g, const ArrayView& in, const char* in_name,
                     const ArrayView& out);

// num_bits in [kMinBits, kMaxBits]; *r its grid.
Error check_range(int num_bits, QRange* r);

// The (outer, channels, inner) view of a tensor of this shape around axis (per
// tensor when axis is empty); axis may be negative.
Error check_layout(const int64_t* shape, int ndim, std::optional<int64_t> axis,
                   const char* tensor, Layout* l);

// Scale and zero point values that keep every kernel finite and every code in
// [qmin, qmax]: finite positive scales with a finite float32 reciprocal.
Error check_scale_values(const float* s, int64_t n);
template <class Z>
Error check_zero_point_values(const Z* z, int64_t n, int num_bits) {
  const QRange r = qrange(num_bits);
  for (int64_t c = 0; c < n; ++c) {
    if (z[c] < r.qmin || z[c] > r.qmax) {
      return Error::value("zero_point: expected values in [" + std::to_string(r.qmin) + ", " +
                          std::to_string(r.qmax) + "] for num_bits=" + std::to_string(num_bits) +
                          ", got " + std::to_string(z[c]) + " at index " + std::to_string(c));
    }
  }
  return {};
}

// "name: expected a 1-d array of length 3 (one per channel), got ..." unless a has
// that shape.
Error check_per_channel(const ArrayView& a, const char* name, int64_t channels);

// Scale (float32) and zero point (int32) arrays of one entry per channel.
Error check_params(const ArrayView& scale, const ArrayView& zero_point, int64_t channels,
                   int num_bits);

}  // namespace qatcore
