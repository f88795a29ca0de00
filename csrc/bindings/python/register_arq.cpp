// ARQ (ops/arq.h).
#include <optional>

#include "bindings/python/arrays.h"
#include "bindings/python/register.h"
#include "core/op_checks.h"
#include "ops/arq.h"

namespace qatcore::bindings {
namespace {

py::array arq_py(py::handle w_obj, py::handle out_obj, std::optional<int64_t> axis,
                 int num_bits) {
  const ArrayView w = view_of(w_obj);
  const bool has_out = !out_obj.is_none();
  const ArrayView out = has_out ? view_of(out_obj) : ArrayView{};
  Checked c;
  check(check_arq(w, has_out ? &out : nullptr, axis, num_bits, &c));
  py::array_t<float> scales(c.layout.channels);
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = arq(executor(), w.in<float>(), has_out ? out.out<float>() : nullptr, c.layout, c.range,
              scales.mutable_data());
  }
  check(arq_result(bad, w));
  return scales;
}

}  // namespace

void register_arq(py::module_& m) {
  m.def("arq", &arq_py, py::arg("w"), py::arg("out"), py::arg("axis"), py::arg("num_bits"));
}

}  // namespace qatcore::bindings
