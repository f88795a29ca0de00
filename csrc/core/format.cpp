#include "core/format.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qatcore {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::int8:
      return "int8";
    case DType::int16:
      return "int16";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    default:
      return "other";
  }
}

std::string shape_str(const int64_t* shape, int ndim) {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (ndim == 1 ? ",)" : ")");
}

std::string describe(const ArrayView& a) {
  if (!a.is_array()) return a.not_array;
  const std::string dtype = a.dtype == DType::other ? a.other_dtype : dtype_name(a.dtype);
  return "an array of dtype " + dtype + " and shape " + shape_str(a);
}

// Python's float_repr_style 'short': repr(x) is format(x, 'r'), the shortest
// round-tripping digits, positional for decimal exponents in [-4, 16), else
// scientific with at least two exponent digits (which is also what to_chars writes).
std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const auto sci = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string s(buf, sci.ptr);  // "-d.ddde+XX"
  const size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  if (exp < -4 || exp >= 16) return s;
  const bool neg = s[0] == '-';
  std::string digits;
  for (size_t i = neg ? 1 : 0; i < e; ++i) {
    if (s[i] != '.') digits += s[i];
  }
  std::string out;
  if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    const auto int_digits = static_cast<size_t>(exp) + 1;
    if (digits.size() <= int_digits) {
      out = digits + std::string(int_digits - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_digits) + "." + digits.substr(int_digits);
    }
  }
  return neg ? "-" + out : out;
}

}  // namespace qatcore
