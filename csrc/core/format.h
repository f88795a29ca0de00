// How messages write values: as Python does, since every front end so far is
// reached from Python and users compare the message with what they passed.
#pragma once
#include <cstdint>
#include <string>

#include "core/array.h"

namespace qatcore {

// A shape as Python writes a tuple: "()", "(3,)", "(3, 4)".
std::string shape_str(const int64_t* shape, int ndim);
inline std::string shape_str(const ArrayView& a) { return shape_str(a.shape, a.ndim); }
// "an array of dtype float32 and shape (3, 4)", or the front end's description
// of something that is no array.
std::string describe(const ArrayView& a);
// repr() of a Python float: the shortest digits that read back the same, in
// Python's notation ("nan", "-inf", "-1.0", "1e-05", "1.5e+16").
std::string float_repr(double v);

}  // namespace qatcore
