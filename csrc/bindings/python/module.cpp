// The _core extension module: qatcore's Python front end. Data flows
// bindings/python -> core checks -> ops -> kernels: the register_*.cpp files
// describe their NumPy arguments as ArrayViews, run the core's checks
// (core/op_checks.h) and raise what they return, then release the GIL and run the
// operation on the default executor; csrc/ops/ lays tensors out and cuts them
// into chunks, csrc/exec/ runs the chunks on threads, csrc/kernels/ holds the
// per-ISA loops. Only csrc/bindings/python/ includes pybind11.
#include <pybind11/pybind11.h>

#include "bindings/python/register.h"
#include "dispatch.h"
#include "exec/openmp.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "qatcore's native kernels. Private: use the qatcore package.";
  m.attr("__version__") = QATCORE_VERSION;
  qatcore::kernels();  // the instruction set is chosen here, at import, after CPU detection
  qatcore::note_load();
  qatcore::bindings::register_backend(m);
  qatcore::bindings::register_fake_quant(m);
  qatcore::bindings::register_arq(m);
  qatcore::bindings::register_ulq(m);
  qatcore::bindings::register_ifmr(m);
}
