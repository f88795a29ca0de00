#include "bindings/checks.h"

#include <cmath>

namespace qatcore::bindings {

std::string shape_str(const py::array& a) {
  return std::string(
      py::str(py::tuple(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim())))));
}

std::string describe(py::handle obj) {
  if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    return "an array of dtype " + std::string(py::str(a.dtype())) + " and shape " + shape_str(a);
  }
  return "an object of type " + std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}

std::string float_repr(double v) { return std::string(py::repr(py::float_(v))); }

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

void check_same_shape(const py::array& a, const char* a_name, const py::array& b,
                      const char* b_name) {
  if (shape_of(a) != shape_of(b)) {
    throw py::value_error(std::string(b_name) + ": expected the shape of " + a_name + " " +
                          shape_str(a) + ", got " + shape_str(b));
  }
}

void check_no_partial_overlap(const py::array& in, const py::array& out, const char* in_name,
                              const char* out_name) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(in.data());
  const auto b0 = reinterpret_cast<std::uintptr_t>(out.data());
  const auto a1 = a0 + static_cast<std::uintptr_t>(in.nbytes());
  const auto b1 = b0 + static_cast<std::uintptr_t>(out.nbytes());
  if (a0 != b0 && a0 < b1 && b0 < a1) {
    throw py::value_error(std::string(out_name) + ": expected either " + in_name +
                          " itself or memory that does not overlap it, got a partial overlap");
  }
}

QRange checked_range(int num_bits) {
  if (num_bits < kMinBits || num_bits > kMaxBits) {
    throw py::value_error("num_bits: expected an integer in [" + std::to_string(kMinBits) + ", " +
                          std::to_string(kMaxBits) + "], got " + std::to_string(num_bits));
  }
  return qrange(num_bits);
}

Layout layout_of(const std::vector<int64_t>& shape, std::optional<int64_t> axis,
                 const char* tensor) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (!axis) return {1, 1, n};
  const auto ndim = static_cast<int64_t>(shape.size());
  int64_t ax = *axis;
  if (ax < -ndim || ax >= ndim) {
    throw py::value_error("axis: expected an integer in [" + std::to_string(-ndim) + ", " +
                          std::to_string(ndim) + ") for " + tensor + " with " +
                          std::to_string(ndim) + " dimensions, got " + std::to_string(ax));
  }
  if (ax < 0) ax += ndim;
  Layout l{1, shape[static_cast<size_t>(ax)], 1};
  for (int64_t i = 0; i < ax; ++i) l.outer *= shape[static_cast<size_t>(i)];
  for (int64_t i = ax + 1; i < ndim; ++i) l.inner *= shape[static_cast<size_t>(i)];
  return l;
}

void check_scale_values(const float* s, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    if (!(std::isfinite(s[c]) && s[c] > 0.0f && std::isfinite(1.0f / s[c]))) {
      throw py::value_error(
          "scale: expected finite positive values with a finite reciprocal, got " +
          float_repr(static_cast<double>(s[c])) + " at index " + std::to_string(c));
    }
  }
}

Params checked_params(py::handle scale_obj, py::handle zp_obj, int64_t channels, int num_bits) {
  Params p{checked_array<float>(scale_obj, "scale", false),
           checked_array<int32_t>(zp_obj, "zero_point", false)};
  for (const auto& [arr, name] : {std::pair{&p.scale, "scale"}, {&p.zero_point, "zero_point"}}) {
    if (arr->ndim() != 1 || arr->shape(0) != channels) {
      throw py::value_error(std::string(name) + ": expected a 1-d array of length " +
                            std::to_string(channels) + " (one per channel), got " +
                            describe(*arr));
    }
  }
  check_scale_values(in_ptr<float>(p.scale), channels);
  check_zero_point_values(in_ptr<int32_t>(p.zero_point), channels, num_bits);
  return p;
}

BackwardArrays checked_backward(py::handle g_obj, py::handle in_obj, const char* in_name,
                                py::handle out_obj) {
  BackwardArrays a{checked_array<float>(g_obj, "grad_output", false),
                   checked_array<float>(in_obj, in_name, false),
                   checked_array<float>(out_obj, "out", true)};
  check_same_shape(a.in, in_name, a.g, "grad_output");
  check_same_shape(a.in, in_name, a.out, "out");
  check_no_partial_overlap(a.in, a.out, in_name, "out");
  check_no_partial_overlap(a.g, a.out, "grad_output", "out");
  return a;
}

}  // namespace qatcore::bindings
