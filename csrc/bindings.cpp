// The only file that includes pybind11. Every argument is validated here, with
// the GIL held, in terms of the public API's argument names; the GIL is then
// released around the kernel. The Python layer in python/qatcore/ converts and
// reshapes friendlier inputs, but _core itself must reject anything unsafe.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "parallel.h"

namespace py = pybind11;
using namespace qatcore;

namespace {

template <class T>
const char* dtype_name();
template <>
const char* dtype_name<float>() { return "float32"; }
template <>
const char* dtype_name<double>() { return "float64"; }
template <>
const char* dtype_name<int64_t>() { return "int64"; }
template <>
const char* dtype_name<int32_t>() { return "int32"; }
template <>
const char* dtype_name<int16_t>() { return "int16"; }
template <>
const char* dtype_name<int8_t>() { return "int8"; }

std::string describe(py::handle obj) {
  if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    return "an array of dtype " + std::string(py::str(a.dtype())) + " and shape " +
           std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(
               a.shape(), a.shape() + a.ndim())))));
  }
  return "an object of type " + std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}

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

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

void check_same_shape(const py::array& a, const char* a_name, const py::array& b,
                      const char* b_name) {
  if (shape_of(a) != shape_of(b)) {
    throw py::value_error(std::string(b_name) + ": expected the shape of " + a_name + ", got " +
                          describe(b) + " for " + a_name + " of " + describe(a));
  }
}

// Exact aliasing (the same buffer) is allowed; any other overlap is not.
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

QRange checked_range(int num_bits) {
  if (num_bits < 2 || num_bits > 16) {
    throw py::value_error("num_bits: expected an integer in [2, 16], got " +
                          std::to_string(num_bits));
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

// Scale and zero point: one entry per channel, values that keep every kernel
// finite and every code inside [qmin, qmax].
struct Params {
  py::array scale, zero_point;
};

Params checked_params(py::handle scale_obj, py::handle zp_obj, const Layout& l, QRange r) {
  Params p{checked_array<float>(scale_obj, "scale", false),
           checked_array<int32_t>(zp_obj, "zero_point", false)};
  for (const auto& [arr, name] : {std::pair{&p.scale, "scale"}, {&p.zero_point, "zero_point"}}) {
    if (arr->ndim() != 1 || arr->shape(0) != l.channels) {
      throw py::value_error(std::string(name) + ": expected a 1-d array of length " +
                            std::to_string(l.channels) + " (one per channel), got " +
                            describe(*arr));
    }
  }
  const float* s = in_ptr<float>(p.scale);
  const int32_t* z = in_ptr<int32_t>(p.zero_point);
  for (int64_t c = 0; c < l.channels; ++c) {
    if (!(std::isfinite(s[c]) && s[c] > 0.0f && std::isfinite(1.0f / s[c]))) {
      throw py::value_error("scale: expected finite positive values with a finite reciprocal, got " +
                            std::string(py::repr(py::float_(s[c]))) + " at index " +
                            std::to_string(c));
    }
    if (z[c] < r.qmin || z[c] > r.qmax) {
      throw py::value_error("zero_point: expected values in [" + std::to_string(r.qmin) + ", " +
                            std::to_string(r.qmax) + "], got " + std::to_string(z[c]) +
                            " at index " + std::to_string(c));
    }
  }
  return p;
}

void fake_quantize_py(py::handle x_obj, py::handle out_obj, py::handle scale, py::handle zp,
                      std::optional<int64_t> axis, int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [x, out] = checked_in_out<float, float>(x_obj, "x", out_obj);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Params p = checked_params(scale, zp, l, r);
  py::gil_scoped_release release;
  fake_quantize(in_ptr<float>(x), out_ptr<float>(out), l, in_ptr<float>(p.scale),
                in_ptr<int32_t>(p.zero_point), r);
}

template <class T>
void quantize_typed(py::handle x_obj, py::handle out_obj, const Params& p, const Layout& l,
                    QRange r) {
  auto [x, out] = checked_in_out<float, T>(x_obj, "x", out_obj);
  bool ok;
  {
    py::gil_scoped_release release;
    ok = quantize(in_ptr<float>(x), out_ptr<T>(out), l, in_ptr<float>(p.scale),
                  in_ptr<int32_t>(p.zero_point), r);
  }
  if (!ok) throw py::value_error("x: expected values that are not NaN (NaN has no integer code)");
}

void quantize_py(py::handle x_obj, py::handle out_obj, py::handle scale, py::handle zp,
                 std::optional<int64_t> axis, int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array x = checked_array<float>(x_obj, "x", false);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Params p = checked_params(scale, zp, l, r);
  if (num_bits <= 8) {
    quantize_typed<int8_t>(x_obj, out_obj, p, l, r);
  } else {
    quantize_typed<int16_t>(x_obj, out_obj, p, l, r);
  }
}

template <class T>
void dequantize_typed(py::handle q_obj, py::handle out_obj, py::handle scale, py::handle zp,
                      std::optional<int64_t> axis, QRange r) {
  auto [q, out] = checked_in_out<T, float>(q_obj, "q", out_obj);
  const Layout l = layout_of(shape_of(q), axis, "q");
  const Params p = checked_params(scale, zp, l, r);
  py::gil_scoped_release release;
  dequantize(in_ptr<T>(q), out_ptr<float>(out), l, in_ptr<float>(p.scale),
             in_ptr<int32_t>(p.zero_point), r);
}

void dequantize_py(py::handle q, py::handle out, py::handle scale, py::handle zp,
                   std::optional<int64_t> axis, int num_bits) {
  const QRange r = checked_range(num_bits);
  if (num_bits <= 8) {
    dequantize_typed<int8_t>(q, out, scale, zp, axis, r);
  } else {
    dequantize_typed<int16_t>(q, out, scale, zp, axis, r);
  }
}

py::array arq_py(py::handle w_obj, py::handle out_obj, std::optional<int64_t> axis,
                 int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array w = checked_array<float>(w_obj, "w", false);
  const std::vector<int64_t> shape = shape_of(w);
  const Layout l = layout_of(shape, axis, "w");
  float* y = nullptr;
  py::array out;
  if (!out_obj.is_none()) {
    out = checked_array<float>(out_obj, "out", true);
    check_same_shape(w, "w", out, "out");
    check_no_partial_overlap(w, out, "w", "out");
    y = out_ptr<float>(out);
  }
  py::array_t<float> scales(l.channels);
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = arq(in_ptr<float>(w), y, l, r, scales.mutable_data());
  }
  if (bad >= 0) {
    // Name the element as an index tuple, which is what a user can look up.
    std::string where;
    int64_t rest = bad;
    for (size_t d = shape.size(); d-- > 0;) {
      where = std::to_string(rest % shape[d]) + (where.empty() ? "" : ", ") + where;
      rest /= shape[d];
    }
    const float v = in_ptr<float>(w)[bad];
    throw py::value_error("w: expected finite values (ARQ chooses scales from the data), got " +
                          std::string(py::repr(py::float_(v))) + " at index (" + where + ")");
  }
  return scales;
}

// clip_min/clip_max: finite float32 arrays of `channels` entries.
struct Clips {
  py::array lo, hi;
};

Clips checked_clips(py::handle clip_min, py::handle clip_max, int64_t channels) {
  Clips c{checked_array<float>(clip_min, "clip_min", false),
          checked_array<float>(clip_max, "clip_max", false)};
  for (const auto& [arr, name] : {std::pair{&c.lo, "clip_min"}, {&c.hi, "clip_max"}}) {
    if (arr->ndim() != 1 || arr->shape(0) != channels) {
      throw py::value_error(std::string(name) + ": expected a 1-d array of length " +
                            std::to_string(channels) + " (one per channel), got " +
                            describe(*arr));
    }
    const float* v = in_ptr<float>(*arr);
    for (int64_t i = 0; i < channels; ++i) {
      if (!std::isfinite(v[i])) {
        throw py::value_error(std::string(name) + ": expected finite values, got " +
                              std::string(py::repr(py::float_(v[i]))) + " at index " +
                              std::to_string(i));
      }
    }
  }
  return c;
}

// SPEC "ULQ" scale and zero point per channel; rejects ranges that overflow.
std::pair<py::array_t<float>, py::array_t<int32_t>> ulq_params_checked(const Clips& c,
                                                                       int64_t channels,
                                                                       bool fixed_min, QRange r) {
  py::array_t<float> scale(channels);
  py::array_t<int32_t> zp(channels);
  const int64_t bad = ulq_params(in_ptr<float>(c.lo), in_ptr<float>(c.hi), channels, fixed_min, r,
                                 scale.mutable_data(), zp.mutable_data());
  if (bad >= 0) {
    throw py::value_error("clip_max: expected clip_max - clip_min to be finite in float32, got " +
                          std::string(py::repr(py::float_(in_ptr<float>(c.hi)[bad]))) + " - " +
                          std::string(py::repr(py::float_(in_ptr<float>(c.lo)[bad]))) +
                          " at index " + std::to_string(bad));
  }
  return {scale, zp};
}

std::pair<py::array_t<float>, py::array_t<int32_t>> ulq_params_py(py::handle clip_min,
                                                                  py::handle clip_max,
                                                                  bool fixed_min, int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array lo = checked_array<float>(clip_min, "clip_min", false);
  if (lo.ndim() != 1) {
    throw py::value_error("clip_min: expected a 1-d array (one entry per channel), got " +
                          describe(lo));
  }
  const Clips c = checked_clips(clip_min, clip_max, lo.shape(0));
  return ulq_params_checked(c, lo.shape(0), fixed_min, r);
}

std::pair<py::array_t<float>, py::array_t<int32_t>> ulq_forward_py(
    py::handle x_obj, py::handle out_obj, py::handle clip_min, py::handle clip_max,
    std::optional<int64_t> axis, bool fixed_min, int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [x, out] = checked_in_out<float, float>(x_obj, "x", out_obj);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Clips c = checked_clips(clip_min, clip_max, l.channels);
  auto params = ulq_params_checked(c, l.channels, fixed_min, r);
  {
    py::gil_scoped_release release;
    fake_quantize(in_ptr<float>(x), out_ptr<float>(out), l, params.first.data(),
                  params.second.data(), r);
  }
  return params;
}

std::pair<py::array_t<float>, py::array_t<float>> ulq_backward_py(
    py::handle g_obj, py::handle x_obj, py::handle out_obj, py::handle clip_min,
    py::handle clip_max, std::optional<int64_t> axis, bool fixed_min, int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array g = checked_array<float>(g_obj, "grad_output", false);
  py::array x = checked_array<float>(x_obj, "x", false);
  py::array out = checked_array<float>(out_obj, "out", true);
  check_same_shape(x, "x", g, "grad_output");
  check_same_shape(x, "x", out, "out");
  check_no_partial_overlap(x, out, "x", "out");
  check_no_partial_overlap(g, out, "grad_output", "out");
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Clips c = checked_clips(clip_min, clip_max, l.channels);
  ulq_params_checked(c, l.channels, fixed_min, r);  // rejects overflowing ranges
  py::array_t<float> grad_min(l.channels), grad_max(l.channels);
  {
    py::gil_scoped_release release;
    ulq_backward(in_ptr<float>(x), in_ptr<float>(g), out_ptr<float>(out), l, in_ptr<float>(c.lo),
                 in_ptr<float>(c.hi), fixed_min, r, grad_min.mutable_data(),
                 grad_max.mutable_data());
  }
  return {grad_min, grad_max};
}

py::tuple minmax_py(py::handle x_obj) {
  py::array x = checked_array<float>(x_obj, "x", false);
  Range r;
  {
    py::gil_scoped_release release;
    r = minmax(in_ptr<float>(x), x.size());
  }
  return py::make_tuple(r.lo, r.hi, r.finite);
}

void histogram_add_py(py::handle x_obj, py::handle counts_obj, double inv_width, double offset) {
  py::array x = checked_array<float>(x_obj, "x", false);
  py::array counts = checked_array<int64_t>(counts_obj, "counts", true);
  if (counts.ndim() != 1 || counts.shape(0) < 1 || counts.shape(0) > (int64_t{1} << 30)) {
    throw py::value_error("counts: expected a 1-d array of 1 to 2**30 bins, got " +
                          describe(counts));
  }
  if (!(std::isfinite(inv_width) && inv_width > 0.0 && std::isfinite(offset))) {
    throw py::value_error("inv_width, offset: expected a finite positive width and finite offset");
  }
  const int64_t nbins = counts.shape(0);
  py::gil_scoped_release release;
  histogram_add(in_ptr<float>(x), x.size(), inv_width, offset, out_ptr<int64_t>(counts), nbins);
}

// Candidates: one scale and zero point each, validated like quantization params.
Params checked_candidates(py::handle scales, py::handle zero_points, QRange r) {
  py::array s = checked_array<float>(scales, "scale", false);
  if (s.ndim() != 1) {
    throw py::value_error("scale: expected a 1-d array of candidates, got " + describe(s));
  }
  return checked_params(scales, zero_points, Layout{1, s.shape(0), 1}, r);
}

py::array_t<double> data_sq_errors_py(py::handle x_obj, py::handle scales, py::handle zps,
                                      int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array x = checked_array<float>(x_obj, "x", false);
  const Params p = checked_candidates(scales, zps, r);
  py::array_t<double> out(p.scale.shape(0));
  py::gil_scoped_release release;
  data_sq_errors(in_ptr<float>(x), x.size(), in_ptr<float>(p.scale), in_ptr<int32_t>(p.zero_point),
                 p.scale.shape(0), r, out.mutable_data());
  return out;
}

py::array_t<double> hist_sq_errors_py(py::handle lo_obj, py::handle hi_obj, py::handle count_obj,
                                      py::handle scales, py::handle zps, int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array lo = checked_array<double>(lo_obj, "lo", false);
  py::array hi = checked_array<double>(hi_obj, "hi", false);
  py::array count = checked_array<double>(count_obj, "count", false);
  if (lo.ndim() != 1) throw py::value_error("lo: expected a 1-d array, got " + describe(lo));
  check_same_shape(lo, "lo", hi, "hi");
  check_same_shape(lo, "lo", count, "count");
  const Params p = checked_candidates(scales, zps, r);
  py::array_t<double> out(p.scale.shape(0));
  py::gil_scoped_release release;
  hist_sq_errors(in_ptr<double>(lo), in_ptr<double>(hi), in_ptr<double>(count), lo.shape(0),
                 in_ptr<float>(p.scale), in_ptr<int32_t>(p.zero_point), p.scale.shape(0), r,
                 out.mutable_data());
  return out;
}

std::string set_isa_py(const std::string& name) {
  Isa isa;
  if (!parse_isa(name.c_str(), &isa)) {
    throw py::value_error("isa: expected one of 'scalar', 'avx2', 'avx512', got '" + name + "'");
  }
  if (!isa_available(isa)) {
    throw py::value_error("isa: '" + name + "' is not available on this CPU (best: '" +
                          isa_name(best_isa()) + "')");
  }
  std::string previous = isa_name(kernels().isa);
  set_isa(isa);
  return previous;
}

std::vector<std::string> available_isas_py() {
  std::vector<std::string> names;
  for (int i = 0; i < kIsaCount; ++i) {
    if (isa_available(static_cast<Isa>(i))) names.emplace_back(isa_name(static_cast<Isa>(i)));
  }
  return names;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "qatcore's native kernels. Private: use the qatcore package.";
  m.attr("__version__") = QATCORE_VERSION;

  m.def("isa", [] { return std::string(isa_name(kernels().isa)); });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("available_isas", &available_isas_py);
  m.def("set_isa", &set_isa_py, py::arg("isa"));
  m.def("get_num_threads", &num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n: expected an integer >= 1, got " + std::to_string(n));
        set_num_threads(n);
      },
      py::arg("n"));
  m.def("get_grain", &grain);
  m.def(
      "set_grain",
      [](int64_t n) {
        if (n < 1) throw py::value_error("n: expected an integer >= 1, got " + std::to_string(n));
        set_grain(n);
      },
      py::arg("n"));

  m.def("fake_quantize", &fake_quantize_py, py::arg("x"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
  m.def("quantize", &quantize_py, py::arg("x"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
  m.def("dequantize", &dequantize_py, py::arg("q"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
  m.def("ulq_params", &ulq_params_py, py::arg("clip_min"), py::arg("clip_max"),
        py::arg("fixed_min"), py::arg("num_bits"));
  m.def("ulq_forward", &ulq_forward_py, py::arg("x"), py::arg("out"), py::arg("clip_min"),
        py::arg("clip_max"), py::arg("axis"), py::arg("fixed_min"), py::arg("num_bits"));
  m.def("ulq_backward", &ulq_backward_py, py::arg("grad_output"), py::arg("x"), py::arg("out"),
        py::arg("clip_min"), py::arg("clip_max"), py::arg("axis"), py::arg("fixed_min"),
        py::arg("num_bits"));
  m.def("minmax", &minmax_py, py::arg("x"));
  m.def("histogram_add", &histogram_add_py, py::arg("x"), py::arg("counts"), py::arg("inv_width"),
        py::arg("offset"));
  m.def("data_sq_errors", &data_sq_errors_py, py::arg("x"), py::arg("scale"),
        py::arg("zero_point"), py::arg("num_bits"));
  m.def("hist_sq_errors", &hist_sq_errors_py, py::arg("lo"), py::arg("hi"), py::arg("count"),
        py::arg("scale"), py::arg("zero_point"), py::arg("num_bits"));
  m.def("arq", &arq_py, py::arg("w"), py::arg("out"), py::arg("axis"), py::arg("num_bits"));
}
