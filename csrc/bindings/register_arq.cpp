// ARQ (ops/arq.h).
#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/register.h"
#include "ops/arq.h"

namespace qatcore::bindings {
namespace {

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
                          float_repr(static_cast<double>(v)) + " at index (" + where + ")");
  }
  return scales;
}

}  // namespace

void register_arq(py::module_& m) {
  m.def("arq", &arq_py, py::arg("w"), py::arg("out"), py::arg("axis"), py::arg("num_bits"));
}

}  // namespace qatcore::bindings
