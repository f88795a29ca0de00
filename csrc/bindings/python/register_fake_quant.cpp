// The integer grid (qrange, EPS), quantization parameters, fake quantization
// and integer codes (ops/fake_quant.h).
#include <optional>

#include "bindings/python/arrays.h"
#include "bindings/python/register.h"
#include "core/checks.h"
#include "core/op_checks.h"
#include "ops/fake_quant.h"

namespace qatcore::bindings {
namespace {

py::tuple qrange_py(int num_bits) {
  QRange r;
  check(check_range(num_bits, &r));
  return py::make_tuple(r.qmin, r.qmax);
}

void check_params_py(py::handle scale, py::handle zp, int num_bits, std::optional<int64_t> axis) {
  check(check_quant_params(view_of(scale), view_of(zp), num_bits, axis));
}

void fake_quantize_py(py::handle x_obj, py::handle out_obj, py::handle scale_obj,
                      py::handle zp_obj, std::optional<int64_t> axis, int num_bits) {
  const ArrayView x = view_of(x_obj), out = view_of(out_obj);
  const ArrayView scale = view_of(scale_obj), zp = view_of(zp_obj);
  Checked c;
  check(check_fake_quantize(x, out, scale, zp, axis, num_bits, &c));
  py::gil_scoped_release release;
  fake_quantize(executor(), x.in<float>(), out.out<float>(), c.layout, scale.in<float>(),
                zp.in<int32_t>(), c.range);
}

void quantize_py(py::handle x_obj, py::handle out_obj, py::handle scale_obj, py::handle zp_obj,
                 std::optional<int64_t> axis, int num_bits) {
  const ArrayView x = view_of(x_obj), out = view_of(out_obj);
  const ArrayView scale = view_of(scale_obj), zp = view_of(zp_obj);
  Checked c;
  check(check_quantize(x, out, scale, zp, axis, num_bits, &c));
  bool ok;
  {
    py::gil_scoped_release release;
    ok = num_bits <= 8 ? quantize(executor(), x.in<float>(), out.out<int8_t>(), c.layout,
                                  scale.in<float>(), zp.in<int32_t>(), c.range)
                       : quantize(executor(), x.in<float>(), out.out<int16_t>(), c.layout,
                                  scale.in<float>(), zp.in<int32_t>(), c.range);
  }
  check(quantize_result(ok));
}

void dequantize_py(py::handle q_obj, py::handle out_obj, py::handle scale_obj, py::handle zp_obj,
                   std::optional<int64_t> axis, int num_bits) {
  const ArrayView q = view_of(q_obj), out = view_of(out_obj);
  const ArrayView scale = view_of(scale_obj), zp = view_of(zp_obj);
  Checked c;
  check(check_dequantize(q, out, scale, zp, axis, num_bits, &c));
  py::gil_scoped_release release;
  if (num_bits <= 8) {
    dequantize(executor(), q.in<int8_t>(), out.out<float>(), c.layout, scale.in<float>(),
               zp.in<int32_t>(), c.range);
  } else {
    dequantize(executor(), q.in<int16_t>(), out.out<float>(), c.layout, scale.in<float>(),
               zp.in<int32_t>(), c.range);
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
