// Argument checking shared by the registration files. The bindings are the one
// owner of every check on a kernel argument (dtype, layout, shape, axis, bit
// width, scale and zero point) and of its message, which starts with the
// argument's public name; python/qatcore/ only converts its inputs. Everything
// runs with the GIL held; the callers release it around the operation.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional and std::vector arguments and results

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore::bindings {

namespace py = pybind11;

template <class T>
const char* dtype_name();
template <>
inline const char* dtype_name<float>() { return "float32"; }
template <>
inline const char* dtype_name<double>() { return "float64"; }
template <>
inline const char* dtype_name<int64_t>() { return "int64"; }
template <>
inline const char* dtype_name<int32_t>() { return "int32"; }
template <>
inline const char* dtype_name<int16_t>() { return "int16"; }
template <>
inline const char* dtype_name<int8_t>() { return "int8"; }

// "an array of dtype float32 and shape (3, 4)" or "an object of type list".
std::string describe(py::handle obj);
// A shape as Python writes a tuple: "()", "(3,)", "(3, 4)".
std::string shape_str(const py::array& a);
// repr() of a float, as Python writes it ("nan", "-1.0").
std::string float_repr(double v);

// A C-contiguous, aligned array of exactly dtype T (writable if asked).
template <class T>
py::array checked_array(py::handle obj, const char* name, bool writable) {
  const std::string want =
      std::string("a C-contiguous ") + (writable ? "writable " : "") + dtype_name<T>() + " array";
  if (!py::isinstance<py::array_t<T>>(obj)) {
    throw py::type_error(std::string(name) + ": expected " + want + ", got " + describe(obj));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const bool aligned = reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) == 0;
  if (!(a.flags() & py::array::c_style) || !aligned || (writable && !a.writeable())) {
    throw py::value_error(std::string(name) + ": expected " + want +
                          ", got one that is not (non-contiguous, misaligned or read-only)");
  }
  return a;
}

template <class T>
const T* in_ptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <class T>
T* out_ptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

std::vector<int64_t> shape_of(const py::array& a);

// b has the shape of a: "b_name: expected the shape of a_name (3, 4), got (4, 3)".
void check_same_shape(const py::array& a, const char* a_name, const py::array& b,
                      const char* b_name);

// Exact aliasing (the same buffer) is allowed; any other overlap is not.
void check_no_partial_overlap(const py::array& in, const py::array& out, const char* in_name,
                              const char* out_name);

// An input and the output buffer written from it: exact dtypes, the same shape,
// and either the same memory or none shared.
template <class In, class Out>
std::pair<py::array, py::array> checked_in_out(py::handle in_obj, const char* in_name,
                                               py::handle out_obj) {
  py::array in = checked_array<In>(in_obj, in_name, false);
  py::array out = checked_array<Out>(out_obj, "out", true);
  check_same_shape(in, in_name, out, "out");
  check_no_partial_overlap(in, out, in_name, "out");
  return {in, out};
}

// A backward's float32 arrays: grad_output, the forward's input (`in_name`) and the
// output buffer, all of one shape; out may be either input or share nothing with them.
struct BackwardArrays {
  py::array g, in, out;
};
BackwardArrays checked_backward(py::handle g_obj, py::handle in_obj, const char* in_name,
                                py::handle out_obj);

// num_bits in [kMinBits, kMaxBits], and its grid.
QRange checked_range(int num_bits);

// The (outer, channels, inner) view of a tensor of this shape around axis
// (per tensor when axis is empty); axis may be negative.
Layout layout_of(const std::vector<int64_t>& shape, std::optional<int64_t> axis,
                 const char* tensor);

// Scale and zero point values that keep every kernel finite and every code in
// [qmin, qmax]: finite positive scales with a finite float32 reciprocal.
void check_scale_values(const float* s, int64_t n);
template <class Z>
void check_zero_point_values(const Z* z, int64_t n, int num_bits) {
  const QRange r = qrange(num_bits);
  for (int64_t c = 0; c < n; ++c) {
    if (z[c] < r.qmin || z[c] > r.qmax) {
      throw py::value_error("zero_point: expected values in [" + std::to_string(r.qmin) + ", " +
                            std::to_string(r.qmax) + "] for num_bits=" +
                            std::to_string(num_bits) + ", got " + std::to_string(z[c]) +
                            " at index " + std::to_string(c));
    }
  }
}

// Scale (float32) and zero point (int32) arrays of one entry per channel.
struct Params {
  py::array scale, zero_point;
};
Params checked_params(py::handle scale_obj, py::handle zp_obj, int64_t channels, int num_bits);

}  // namespace qatcore::bindings
