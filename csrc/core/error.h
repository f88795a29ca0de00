// What a failed check returns: which kind of error and its message, which starts
// with the argument's public name. Each front end raises it as its own exception
// (the Python binding: TypeError or ValueError, in one place).
#pragma once
#include <string>
#include <utility>

namespace qatcore {

struct Error {
  enum class Kind { none, type, value };
  Kind kind = Kind::none;
  std::string message;

  static Error type(std::string m) { return {Kind::type, std::move(m)}; }
  static Error value(std::string m) { return {Kind::value, std::move(m)}; }
  explicit operator bool() const { return kind != Kind::none; }
};

}  // namespace qatcore
