// ULQ and weight ULQ: parameters, forwards and backwards (ops/ulq.h).
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "bindings/checks.h"
#include "bindings/register.h"
#include "ops/ulq.h"

namespace qatcore::bindings {
namespace {

// clip_min/clip_max: finite float32 arrays of `channels` entries, 1-d, or 0-d for one
// channel (a tensor's clips as a framework holds them).
struct Clips {
  py::array lo, hi;
};

Clips checked_clips(py::handle clip_min, py::handle clip_max, int64_t channels) {
  Clips c{checked_array<float>(clip_min, "clip_min", false),
          checked_array<float>(clip_max, "clip_max", false)};
  for (const auto& [arr, name] : {std::pair{&c.lo, "clip_min"}, {&c.hi, "clip_max"}}) {
    const bool scalar = arr->ndim() == 0 && channels == 1;
    if (!scalar && (arr->ndim() != 1 || arr->shape(0) != channels)) {
      throw py::value_error(std::string(name) + ": expected a 1-d array of length " +
                            std::to_string(channels) + " (one per channel), got " +
                            describe(*arr));
    }
    const float* v = in_ptr<float>(*arr);
    for (int64_t i = 0; i < channels; ++i) {
      if (!std::isfinite(v[i])) {
        throw py::value_error(std::string(name) + ": expected finite values, got " +
                              float_repr(static_cast<double>(v[i])) + " at index " +
                              std::to_string(i));
      }
    }
  }
  return c;
}

// The operations return the first channel whose clip range overflows float32.
void check_ulq_range(int64_t bad, const Clips& c) {
  if (bad < 0) return;
  throw py::value_error("clip_max: expected clip_max - clip_min to be finite in float32, got " +
                        float_repr(static_cast<double>(in_ptr<float>(c.hi)[bad])) + " - " +
                        float_repr(static_cast<double>(in_ptr<float>(c.lo)[bad])) +
                        " at index " + std::to_string(bad));
}

using ScaleZp = std::pair<py::array_t<float>, py::array_t<int32_t>>;

ScaleZp ulq_params_py(py::handle clip_min, py::handle clip_max, bool fixed_min, int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array lo = checked_array<float>(clip_min, "clip_min", false);
  if (lo.ndim() > 1) {
    throw py::value_error("clip_min: expected a 1-d array (one entry per channel), got " +
                          describe(lo));
  }
  const int64_t channels = lo.ndim() == 0 ? 1 : lo.shape(0);
  const Clips c = checked_clips(clip_min, clip_max, channels);
  py::array_t<float> scale(channels);
  py::array_t<int32_t> zp(channels);
  check_ulq_range(ulq_params(in_ptr<float>(c.lo), in_ptr<float>(c.hi), channels, fixed_min, r,
                             scale.mutable_data(), zp.mutable_data()),
                  c);
  return {scale, zp};
}

ScaleZp ulq_forward_py(py::handle x_obj, py::handle out_obj, py::handle clip_min,
                       py::handle clip_max, std::optional<int64_t> axis, bool fixed_min,
                       int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [x, out] = checked_in_out<float, float>(x_obj, "x", out_obj);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Clips c = checked_clips(clip_min, clip_max, l.channels);
  py::array_t<float> scale(l.channels);
  py::array_t<int32_t> zp(l.channels);
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = ulq_forward(in_ptr<float>(x), out_ptr<float>(out), l, in_ptr<float>(c.lo),
                      in_ptr<float>(c.hi), fixed_min, r, scale.mutable_data(), zp.mutable_data());
  }
  check_ulq_range(bad, c);
  return {scale, zp};
}

std::pair<py::array_t<float>, py::array_t<float>> ulq_backward_py(
    py::handle g_obj, py::handle x_obj, py::handle out_obj, py::handle clip_min,
    py::handle clip_max, std::optional<int64_t> axis, bool fixed_min, int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [g, x, out] = checked_backward(g_obj, x_obj, "x", out_obj);
  const Layout l = layout_of(shape_of(x), axis, "x");
  const Clips c = checked_clips(clip_min, clip_max, l.channels);
  // Shaped like the clips, so that a framework hands them back as they are.
  py::array_t<float> grad_min(shape_of(c.lo)), grad_max(shape_of(c.hi));
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = ulq_backward(in_ptr<float>(x), in_ptr<float>(g), out_ptr<float>(out), l,
                       in_ptr<float>(c.lo), in_ptr<float>(c.hi), fixed_min, r,
                       grad_min.mutable_data(), grad_max.mutable_data());
  }
  check_ulq_range(bad, c);
  return {grad_min, grad_max};
}

// Weight ULQ's scale: one finite positive float32 per channel with a finite reciprocal.
py::array checked_scale(py::handle scale_obj, int64_t channels) {
  py::array scale = checked_array<float>(scale_obj, "scale", false);
  if (scale.ndim() != 1 || scale.shape(0) != channels) {
    throw py::value_error("scale: expected a 1-d array of length " + std::to_string(channels) +
                          " (one per channel), got " + describe(scale));
  }
  check_scale_values(in_ptr<float>(scale), channels);
  return scale;
}

void ulq_weight_forward_py(py::handle w_obj, py::handle out_obj, py::handle scale_obj,
                           std::optional<int64_t> axis, int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [w, out] = checked_in_out<float, float>(w_obj, "w", out_obj);
  const Layout l = layout_of(shape_of(w), axis, "w");
  const py::array scale = checked_scale(scale_obj, l.channels);
  py::gil_scoped_release release;
  ulq_weight_forward(in_ptr<float>(w), out_ptr<float>(out), l, in_ptr<float>(scale), r);
}

py::array_t<float> ulq_weight_backward_py(py::handle g_obj, py::handle w_obj, py::handle out_obj,
                                          py::handle scale_obj, std::optional<int64_t> axis,
                                          int num_bits) {
  const QRange r = checked_range(num_bits);
  auto [g, w, out] = checked_backward(g_obj, w_obj, "w", out_obj);
  const Layout l = layout_of(shape_of(w), axis, "w");
  const py::array scale = checked_scale(scale_obj, l.channels);
  py::array_t<float> grad_scale(l.channels);
  {
    py::gil_scoped_release release;
    ulq_weight_backward(in_ptr<float>(w), in_ptr<float>(g), out_ptr<float>(out), l,
                        in_ptr<float>(scale), r, grad_scale.mutable_data());
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
