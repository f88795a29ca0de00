// What a check needs to know about an array argument, filled by each front end
// from its own array type (a NumPy array in the Python binding, an XLA FFI buffer
// in a JAX handler). A non-owning view: the front end keeps the array alive for
// the call.
#pragma once
#include <cstdint>
#include <string>

namespace qatcore {

// The element types the operations take; anything else is `other`.
enum class DType : uint8_t { float32, float64, int8, int16, int32, int64, other };

// NumPy's name of a dtype ("float32"), which the messages use.
const char* dtype_name(DType t);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::float32; }
template <>
constexpr DType dtype_of<double>() { return DType::float64; }
template <>
constexpr DType dtype_of<int8_t>() { return DType::int8; }
template <>
constexpr DType dtype_of<int16_t>() { return DType::int16; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::int32; }
template <>
constexpr DType dtype_of<int64_t>() { return DType::int64; }

struct ArrayView {
  void* data = nullptr;  // the first element; written only when `writable`
  DType dtype = DType::other;
  int ndim = 0;
  const int64_t* shape = nullptr;  // ndim entries
  int64_t nbytes = 0;  // the bytes from data on that the array covers: for overlap checks
  bool c_contiguous = false;
  bool writable = false;
  // How the front end writes a dtype that is `other` (NumPy: ">f4", "uint8").
  std::string other_dtype;
  // Non-empty when the argument is no array at all: how the front end describes
  // what it got ("an object of type list").
  std::string not_array;

  bool is_array() const { return not_array.empty(); }
  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t dim(int i) const { return shape[i]; }
  template <class T>
  const T* in() const {
    return static_cast<const T*>(data);
  }
  template <class T>
  T* out() const {
    return static_cast<T*>(data);
  }
};

}  // namespace qatcore
