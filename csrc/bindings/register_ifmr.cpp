// IFMR and its histogram: min/max, binning, squared errors (ops/reduce.h, ops/ifmr.h).
#include <cmath>
#include <string>

#include "bindings/checks.h"
#include "bindings/register.h"
#include "ops/ifmr.h"
#include "ops/reduce.h"

namespace qatcore::bindings {
namespace {

py::tuple minmax_py(py::handle x_obj) {
  py::array x = checked_array<float>(x_obj, "x", false);
  MinMax r;
  {
    py::gil_scoped_release release;
    r = minmax(in_ptr<float>(x), x.size());
  }
  return py::make_tuple(r.lo, r.hi, r.finite != 0);
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
Params checked_candidates(py::handle scales, py::handle zero_points, int num_bits) {
  py::array s = checked_array<float>(scales, "scale", false);
  if (s.ndim() != 1) {
    throw py::value_error("scale: expected a 1-d array of candidates, got " + describe(s));
  }
  return checked_params(scales, zero_points, s.shape(0), num_bits);
}

py::array_t<double> data_sq_errors_py(py::handle x_obj, py::handle scales, py::handle zps,
                                      int num_bits) {
  const QRange r = checked_range(num_bits);
  py::array x = checked_array<float>(x_obj, "x", false);
  const Params p = checked_candidates(scales, zps, num_bits);
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
  const Params p = checked_candidates(scales, zps, num_bits);
  py::array_t<double> out(p.scale.shape(0));
  py::gil_scoped_release release;
  hist_sq_errors(in_ptr<double>(lo), in_ptr<double>(hi), in_ptr<double>(count), lo.shape(0),
                 in_ptr<float>(p.scale), in_ptr<int32_t>(p.zero_point), p.scale.shape(0), r,
                 out.mutable_data());
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
