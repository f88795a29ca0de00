// The Python binding's side of the core's checks (core/op_checks.h): NumPy arrays
// described as ArrayViews, core Errors raised as TypeError/ValueError, and the
// executor the operations run on. Everything here runs with the GIL held; the
// register_*.cpp files release it around the operation.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional and std::vector arguments and results

#include <vector>

#include "core/array.h"
#include "core/error.h"
#include "exec/executor.h"

namespace qatcore::bindings {

namespace py = pybind11;

// obj as the core sees it. obj must outlive the view (the caller's argument does).
ArrayView view_of(py::handle obj);

// The one translator from the core's errors to Python's exceptions.
[[noreturn]] void raise(const Error& e);
inline void check(const Error& e) {
  if (e) raise(e);
}

// A view's shape, for results shaped like an argument.
inline std::vector<py::ssize_t> shape_of(const ArrayView& a) {
  return std::vector<py::ssize_t>(a.shape, a.shape + a.ndim);
}

// What the operations run on: the default executor (exec/default.h), or for tests
// the serial one (_core.set_executor).
Executor& executor();
const char* executor_name();  // "default" or "serial"
void use_serial_executor(bool serial);

}  // namespace qatcore::bindings
