// The _core extension module. Data flows bindings -> ops -> kernels: the
// register_*.cpp files check arguments and release the GIL, csrc/ops/ lays
// tensors out and runs them on threads, csrc/kernels/ holds the per-ISA loops.
// Only csrc/bindings/ includes pybind11.
#include <pybind11/pybind11.h>

#include "bindings/register.h"
#include "dispatch.h"
#include "parallel.h"

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
