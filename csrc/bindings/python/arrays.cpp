#include "bindings/python/arrays.h"

#include <atomic>
#include <string>

#include "exec/default.h"

namespace qatcore::bindings {
namespace {

// NumPy's native fixed-size types by kind and size: the types the array_t<T> of
// each DType accepts (int64 is both 'l' and 'q').
DType dtype_of(const py::dtype& d) {
  const char order = d.byteorder();
  if (order != '=' && order != '|') return DType::other;
  const py::ssize_t size = d.itemsize();
  switch (d.kind()) {
    case 'f':
      return size == 4 ? DType::float32 : size == 8 ? DType::float64 : DType::other;
    case 'i':
      return size == 1   ? DType::int8
             : size == 2 ? DType::int16
             : size == 4 ? DType::int32
             : size == 8 ? DType::int64
                         : DType::other;
    default:
      return DType::other;
  }
}

std::atomic<bool> g_serial{false};

}  // namespace

Executor& executor() {
  static SerialExecutor serial;
  return g_serial.load() ? serial : default_executor();
}
const char* executor_name() { return g_serial.load() ? "serial" : "default"; }
void use_serial_executor(bool serial) { g_serial.store(serial); }

ArrayView view_of(py::handle obj) {
  ArrayView v;
  if (!py::isinstance<py::array>(obj)) {
    v.not_array =
        "an object of type " + std::string(py::str(py::type::handle_of(obj).attr("__name__")));
    return v;
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  static_assert(sizeof(py::ssize_t) == sizeof(int64_t), "NumPy's dimensions are int64_t");
  const py::dtype d = a.dtype();
  v.data = const_cast<void*>(a.data());
  v.dtype = dtype_of(d);
  if (v.dtype == DType::other) v.other_dtype = std::string(py::str(d));
  v.ndim = static_cast<int>(a.ndim());
  v.shape = reinterpret_cast<const int64_t*>(a.shape());
  v.nbytes = static_cast<int64_t>(a.nbytes());
  v.c_contiguous = (a.flags() & py::array::c_style) != 0;
  v.writable = a.writeable();
  return v;
}

void raise(const Error& e) {
  if (e.kind == Error::Kind::type) throw py::type_error(e.message);
  throw py::value_error(e.message);
}

}  // namespace qatcore::bindings
