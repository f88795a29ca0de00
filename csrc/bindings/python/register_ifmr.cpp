// IFMR and its histogram: min/max, binning, squared errors (ops/reduce.h, ops/ifmr.h).
#include "bindings/python/arrays.h"
#include "bindings/python/register.h"
#include "core/op_checks.h"
#include "ops/ifmr.h"
#include "ops/reduce.h"

namespace qatcore::bindings {
namespace {

py::tuple minmax_py(py::handle x_obj) {
  const ArrayView x = view_of(x_obj);
  check(check_minmax(x));
  MinMax r;
  {
    py::gil_scoped_release release;
    r = minmax(executor(), x.in<float>(), x.size());
  }
  return py::make_tuple(r.lo, r.hi, r.finite != 0);
}

void histogram_add_py(py::handle x_obj, py::handle counts_obj, double inv_width, double offset) {
  const ArrayView x = view_of(x_obj), counts = view_of(counts_obj);
  check(check_histogram_add(x, counts, inv_width, offset));
  py::gil_scoped_release release;
  histogram_add(executor(), x.in<float>(), x.size(), inv_width, offset, counts.out<int64_t>(),
                counts.dim(0));
}

py::array_t<double> data_sq_errors_py(py::handle x_obj, py::handle scale_obj, py::handle zp_obj,
                                      int num_bits) {
  const ArrayView x = view_of(x_obj), scale = view_of(scale_obj), zp = view_of(zp_obj);
  Checked c;
  check(check_data_sq_errors(x, scale, zp, num_bits, &c));
  py::array_t<double> out(scale.dim(0));
  py::gil_scoped_release release;
  data_sq_errors(executor(), x.in<float>(), x.size(), scale.in<float>(), zp.in<int32_t>(),
                 scale.dim(0), c.range, out.mutable_data());
  return out;
}

py::array_t<double> hist_sq_errors_py(py::handle lo_obj, py::handle hi_obj, py::handle count_obj,
                                      py::handle scale_obj, py::handle zp_obj, int num_bits) {
  const ArrayView lo = view_of(lo_obj), hi = view_of(hi_obj), count = view_of(count_obj);
  const ArrayView scale = view_of(scale_obj), zp = view_of(zp_obj);
  Checked c;
  check(check_hist_sq_errors(lo, hi, count, scale, zp, num_bits, &c));
  py::array_t<double> out(scale.dim(0));
  py::gil_scoped_release release;
  hist_sq_errors(executor(), lo.in<double>(), hi.in<double>(), count.in<double>(), lo.dim(0),
                 scale.in<float>(), zp.in<int32_t>(), scale.dim(0), c.range, out.mutable_data());
  return out;
}

}  // namespace

void register_ifmr(py::module_& m) {
  m.def("minmax", &minmax_py, py::arg("x"));
  m.def("histogram_add", &histogram_add_py, py::arg("x"), py::arg("counts"), py::arg("inv_width"),
        py::arg("offset"));
  m.def("data_sq_errors", &data_sq_errors_py, py::arg("x"), py::arg("scale"),
        py::arg("zero_point"), py::arg("num_bits"));
  m.def("hist_sq_errors", &hist_sq_errors_py, py::arg("lo"), py::arg("hi"), py::arg("count"),
        py::arg("scale"), py::arg("zero_point"), py::arg("num_bits"));
}

}  // namespace qatcore::bindings
