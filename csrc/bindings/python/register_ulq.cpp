// ULQ and weight ULQ: parameters, forwards and backwards (ops/ulq.h).
#include <optional>
#include <utility>

#include "bindings/python/arrays.h"
#include "bindings/python/register.h"
#include "core/op_checks.h"
#include "ops/ulq.h"

namespace qatcore::bindings {
namespace {

using ScaleZp = std::pair<py::array_t<float>, py::array_t<int32_t>>;

ScaleZp ulq_params_py(py::handle clip_min, py::handle clip_max, bool fixed_min, int num_bits) {
  const ArrayView lo = view_of(clip_min), hi = view_of(clip_max);
  Checked c;
  check(check_ulq_params(lo, hi, num_bits, &c));
  const int64_t channels = c.layout.channels;
  py::array_t<float> scale(channels);
  py::array_t<int32_t> zp(channels);
  check(ulq_result(ulq_params(lo.in<float>(), hi.in<float>(), channels, fixed_min, c.range,
                              scale.mutable_data(), zp.mutable_data()),
                   lo, hi));
  return {scale, zp};
}

ScaleZp ulq_forward_py(py::handle x_obj, py::handle out_obj, py::handle clip_min,
                       py::handle clip_max, std::optional<int64_t> axis, bool fixed_min,
                       int num_bits) {
  const ArrayView x = view_of(x_obj), out = view_of(out_obj);
  const ArrayView lo = view_of(clip_min), hi = view_of(clip_max);
  Checked c;
  check(check_ulq_forward(x, out, lo, hi, axis, num_bits, &c));
  py::array_t<float> scale(c.layout.channels);
  py::array_t<int32_t> zp(c.layout.channels);
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = ulq_forward(executor(), x.in<float>(), out.out<float>(), c.layout, lo.in<float>(),
                      hi.in<float>(), fixed_min, c.range, scale.mutable_data(), zp.mutable_data());
  }
  check(ulq_result(bad, lo, hi));
  return {scale, zp};
}

std::pair<py::array_t<float>, py::array_t<float>> ulq_backward_py(
    py::handle g_obj, py::handle x_obj, py::handle out_obj, py::handle clip_min,
    py::handle clip_max, std::optional<int64_t> axis, bool fixed_min, int num_bits) {
  const ArrayView g = view_of(g_obj), x = view_of(x_obj), out = view_of(out_obj);
  const ArrayView lo = view_of(clip_min), hi = view_of(clip_max);
  Checked c;
  check(check_ulq_backward(g, x, out, lo, hi, axis, num_bits, &c));
  // Shaped like the clips, so that a framework hands them back as they are.
  py::array_t<float> grad_min(shape_of(lo)), grad_max(shape_of(hi));
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = ulq_backward(executor(), x.in<float>(), g.in<float>(), out.out<float>(), c.layout,
                       lo.in<float>(), hi.in<float>(), fixed_min, c.range,
                       grad_min.mutable_data(), grad_max.mutable_data());
  }
  check(ulq_result(bad, lo, hi));
  return {grad_min, grad_max};
}

void ulq_weight_forward_py(py::handle w_obj, py::handle out_obj, py::handle scale_obj,
                           std::optional<int64_t> axis, int num_bits) {
  const ArrayView w = view_of(w_obj), out = view_of(out_obj), scale = view_of(scale_obj);
  Checked c;
  check(check_ulq_weight_forward(w, out, scale, axis, num_bits, &c));
  py::gil_scoped_release release;
  ulq_weight_forward(executor(), w.in<float>(), out.out<float>(), c.layout, scale.in<float>(),
                     c.range);
}

py::array_t<float> ulq_weight_backward_py(py::handle g_obj, py::handle w_obj, py::handle out_obj,
                                          py::handle scale_obj, std::optional<int64_t> axis,
                                          int num_bits) {
  const ArrayView g = view_of(g_obj), w = view_of(w_obj), out = view_of(out_obj);
  const ArrayView scale = view_of(scale_obj);
  Checked c;
  check(check_ulq_weight_backward(g, w, out, scale, axis, num_bits, &c));
  py::array_t<float> grad_scale(c.layout.channels);
  {
    py::gil_scoped_release release;
    ulq_weight_backward(executor(), w.in<float>(), g.in<float>(), out.out<float>(), c.layout,
                        scale.in<float>(), c.range, grad_scale.mutable_data());
  }
  return grad_scale;
}

}  // namespace

void register_ulq(py::module_& m) {
  m.def("ulq_params", &ulq_params_py, py::arg("clip_min"), py::arg("clip_max"),
        py::arg("fixed_min"), py::arg("num_bits"));
  m.def("ulq_forward", &ulq_forward_py, py::arg("x"), py::arg("out"), py::arg("clip_min"),
        py::arg("clip_max"), py::arg("axis"), py::arg("fixed_min"), py::arg("num_bits"));
  m.def("ulq_backward", &ulq_backward_py, py::arg("grad_output"), py::arg("x"), py::arg("out"),
        py::arg("clip_min"), py::arg("clip_max"), py::arg("axis"), py::arg("fixed_min"),
        py::arg("num_bits"));
  m.def("ulq_weight_forward", &ulq_weight_forward_py, py::arg("w"), py::arg("out"),
        py::arg("scale"), py::arg("axis"), py::arg("num_bits"));
  m.def("ulq_weight_backward", &ulq_weight_backward_py, py::arg("grad_output"), py::arg("w"),
        py::arg("out"), py::arg("scale"), py::arg("axis"), py::arg("num_bits"));
}

}  // namespace qatcore::bindings
