// One registration function per area, called by module.cpp (the way
// boost-histogram registers its parts). Each lives in register_<area>.cpp and
// binds the operations of ops/<area>.h.
#pragma once
#include <pybind11/pybind11.h>

namespace qatcore::bindings {

void register_backend(pybind11::module_& m);     // ISA dispatch, threads, executors, grains
void register_fake_quant(pybind11::module_& m);  // grid, params, fake quantize, codes
void register_arq(pybind11::module_& m);
void register_ulq(pybind11::module_& m);
void register_ifmr(pybind11::module_& m);  // min/max, histogram binning, squared errors

}  // namespace qatcore::bindings
