// The integer grid (qrange, EPS), quantization parameters, fake quantization
// and integer codes (ops/fake_quant.h).
#include <optional>
#include <string>

#include "bindings/checks.h"
#include "bindings/register.h"
#include "ops/fake_quant.h"

namespace qatcore::bindings {
namespace {

py::tuple qrange_py(int num_bits) {
  const QRange r = checked_range(num_bits);
  return py::make_tuple(r.qmin, r.qmax);
}

// What QuantParams holds: scale (float32) and zero point (int32 or int64) of
// shape () per tensor or (C,) per channel, with valid values.
void check_params_py(py::handle scale_obj, py::handle zp_obj, int num_bits,
                     std::optional<int64_t> axis) {
  checked_range(num_bits);
  py::array scale = checked_array<float>(scale_obj, "scale", false);
  const int want = axis ? 1 : 0;
  if (scale.ndim() != want) {
    const std::string where =
        axis ? "per channel (axis=" + std::to_string(*axis) + ")" : "per tensor (axis=None)";
    throw py::value_error("scale: expected " + std::to_string(want) + " dimensions " + where +
                          ", got shape " + shape_str(scale));
  }
  const bool narrow = py::isinstance<py::array_t<int32_t>>(zp_obj);
  if (!narrow && !py::isinstance<py::array_t<int64_t>>(zp_obj)) {
    throw py::type_error("zero_point: expected an int32 or int64 array, got " + describe(zp_obj));
  }
  py::array zp = narrow ? checked_array<int32_t>(zp_obj, "zero_point", false)
                        : checked_array<int64_t>(zp_obj, "zero_point", false);
  check_same_shape(scale, "scale", zp, "zero_point");
  check_scale_values(in_ptr<float>(scale), scale.size());
  if (narrow) {
    check_zero_point_values(in_ptr<int32_t>(zp), zp.size(), num_bits);
  } else {
    check_zero_point_values(in_ptr<int64_t>(zp), zp.size(), num_bits);
  }
}

void fake_quantize_py(py::handle x_obj, py::handle out_obj, py::handle scale, py::handle zp,
                      std::optional<int64_t> axis, int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [x, out] = checked_in_out<float, float>(x_obj, "x", out_obj);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Params p = checked_params(scale, zp, l.channels, num_bits);
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
  const Params p = checked_params(scale, zp, l.channels, num_bits);
  if (num_bits <= 8) {
    quantize_typed<int8_t>(x_obj, out_obj, p, l, r);
  } else {
    quantize_typed<int16_t>(x_obj, out_obj, p, l, r);
  }
}

template <class T>
void dequantize_typed(py::handle q_obj, py::handle out_obj, py::handle scale, py::handle zp,
                      std::optional<int64_t> axis, int num_bits) {
  const QRange r = qrange(num_bits);
  auto [q, out] = checked_in_out<T, float>(q_obj, "q", out_obj);
  const Layout l = layout_of(shape_of(q), axis, "q");
  const Params p = checked_params(scale, zp, l.channels, num_bits);
  py::gil_scoped_release release;
  dequantize(in_ptr<T>(q), out_ptr<float>(out), l, in_ptr<float>(p.scale),
             in_ptr<int32_t>(p.zero_point), r);
}

void dequantize_py(py::handle q, py::handle out, py::handle scale, py::handle zp,
                   std::optional<int64_t> axis, int num_bits) {
  checked_range(num_bits);
  if (num_bits <= 8) {
    dequantize_typed<int8_t>(q, out, scale, zp, axis, num_bits);
  } else {
    dequantize_typed<int16_t>(q, out, scale, zp, axis, num_bits);
  }
}

}  // namespace

void register_fake_quant(py::module_& m) {
  m.attr("EPS") = static_cast<double>(kEps);
  m.def("qrange", &qrange_py, py::arg("num_bits"));
  m.def("check_params", &check_params_py, py::arg("scale"), py::arg("zero_point"),
        py::arg("num_bits"), py::arg("axis"));
  m.def("fake_quantize", &fake_quantize_py, py::arg("x"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
  m.def("quantize", &quantize_py, py::arg("x"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
  m.def("dequantize", &dequantize_py, py::arg("q"), py::arg("out"), py::arg("scale"),
        py::arg("zero_point"), py::arg("axis"), py::arg("num_bits"));
}

}  // namespace qatcore::bindings
