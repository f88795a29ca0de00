#include "core/checks.h"

#include <cmath>
#include <utility>

namespace qatcore {

namespace {

size_t alignment(DType t) {
  switch (t) {
    case DType::float32:
      return alignof(float);
    case DType::float64:
      return alignof(double);
    case DType::int8:
      return alignof(int8_t);
    case DType::int16:
      return alignof(int16_t);
    case DType::int32:
      return alignof(int32_t);
    case DType::int64:
      return alignof(int64_t);
    default:
      return 1;
  }
}

bool same_shape(const ArrayView& a, const ArrayView& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i) {
    if (a.shape[i] != b.shape[i]) return false;
  }
  return true;
}

}  // namespace

Error check_array(const ArrayView& a, DType want, const char* name, bool writable) {
  if (!a.is_array() || a.dtype != want) {
    return Error::type(std::string(name) + ": expected a C-contiguous " +
                       (writable ? "writable " : "") + dtype_name(want) + " array, got " +
                       describe(a));
  }
  const bool aligned = reinterpret_cast<std::uintptr_t>(a.data) % alignment(want) == 0;
  if (!a.c_contiguous || !aligned || (writable && !a.writable)) {
    return Error::value(std::string(name) + ": expected a C-contiguous " +
                        (writable ? "writable " : "") + dtype_name(want) +
                        " array, got one that is not (non-contiguous, misaligned or read-only)");
  }
  return {};
}

Error check_same_shape(const ArrayView& a, const char* a_name, const ArrayView& b,
                       const char* b_name) {
  if (same_shape(a, b)) return {};
  return Error::value(std::string(b_name) + ": expected the shape of " + a_name + " " +
                      shape_str(a) + ", got " + shape_str(b));
}

Error check_no_partial_overlap(const ArrayView& in, const ArrayView& out, const char* in_name,
                               const char* out_name) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(in.data);
  const auto b0 = reinterpret_cast<std::uintptr_t>(out.data);
  const auto a1 = a0 + static_cast<std::uintptr_t>(in.nbytes);
  const auto b1 = b0 + static_cast<std::uintptr_t>(out.nbytes);
  if (a0 != b0 && a0 < b1 && b0 < a1) {
    return Error::value(std::string(out_name) + ": expected either " + in_name +
                        " itself or memory that does not overlap it, got a partial overlap");
  }
  return {};
}

Error check_in_out(const ArrayView& in, DType in_dtype, const char* in_name, const ArrayView& out,
                   DType out_dtype) {
  if (Error e = check_array(in, in_dtype, in_name, false)) return e;
  if (Error e = check_array(out, out_dtype, "out", true)) return e;
  if (Error e = check_same_shape(in, in_name, out, "out")) return e;
  return check_no_partial_overlap(in, out, in_name, "out");
}

Error check_backward(const ArrayView& g, const ArrayView& in, const char* in_name,
                     const ArrayView& out) {
  if (Error e = check_array(g, DType::float32, "grad_output", false)) return e;
  if (Error e = check_array(in, DType::float32, in_name, false)) return e;
  if (Error e = check_array(out, DType::float32, "out", true)) return e;
  if (Error e = check_same_shape(in, in_name, g, "grad_output")) return e;
  if (Error e = check_same_shape(in, in_name, out, "out")) return e;
  if (Error e = check_no_partial_overlap(in, out, in_name, "out")) return e;
  return check_no_partial_overlap(g, out, "grad_output", "out");
}

Error check_range(int num_bits, QRange* r) {
  if (num_bits < kMinBits || num_bits > kMaxBits) {
    return Error::value("num_bits: expected an integer in [" + std::to_string(kMinBits) + ", " +
                        std::to_string(kMaxBits) + "], got " + std::to_string(num_bits));
  }
  *r = qrange(num_bits);
  return {};
}

Error check_layout(const int64_t* shape, int ndim_, std::optional<int64_t> axis,
                   const char* tensor, Layout* l) {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape[i];
  if (!axis) {
    *l = {1, 1, n};
    return {};
  }
  const auto ndim = static_cast<int64_t>(ndim_);
  int64_t ax = *axis;
  if (ax < -ndim || ax >= ndim) {
    return Error::value("axis: expected an integer in [" + std::to_string(-ndim) + ", " +
                        std::to_string(ndim) + ") for " + tensor + " with " +
                        std::to_string(ndim) + " dimensions, got " + std::to_string(ax));
  }
  if (ax < 0) ax += ndim;
  *l = {1, shape[ax], 1};
  for (int64_t i = 0; i < ax; ++i) l->outer *= shape[i];
  for (int64_t i = ax + 1; i < ndim; ++i) l->inner *= shape[i];
  return {};
}

Error check_scale_values(const float* s, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    if (!(std::isfinite(s[c]) && s[c] > 0.0f && std::isfinite(1.0f / s[c]))) {
      return Error::value(
          "scale: expected finite positive values with a finite reciprocal, got " +
          float_repr(static_cast<double>(s[c])) + " at index " + std::to_string(c));
    }
  }
  return {};
}

Error check_per_channel(const ArrayView& a, const char* name, int64_t channels) {
  if (a.ndim == 1 && a.shape[0] == channels) return {};
  return Error::value(std::string(name) + ": expected a 1-d array of length " +
                      std::to_string(channels) + " (one per channel), got " + describe(a));
}

Error check_params(const ArrayView& scale, const ArrayView& zero_point, int64_t channels,
                   int num_bits) {
  if (Error e = check_array(scale, DType::float32, "scale", false)) return e;
  if (Error e = check_array(zero_point, DType::int32, "zero_point", false)) return e;
  if (Error e = check_per_channel(scale, "scale", channels)) return e;
  if (Error e = check_per_channel(zero_point, "zero_point", channels)) return e;
  if (Error e = check_scale_values(scale.in<float>(), channels)) return e;
  return check_zero_point_values(zero_point.in<int32_t>(), channels, num_bits);
}

}  // namespace qatcore
