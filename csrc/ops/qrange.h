// The integer grid of a bit width, and EPS: the one definition of both.
// Python reads them through _core.qrange and _core.EPS
// (bindings/python/register_fake_quant.cpp).
#pragma once
#include <cstdint>

namespace qatcore {

// Bit widths the kernels support: codes fit int8 up to 8 bits, int16 up to 16.
constexpr int kMinBits = 2;
constexpr int kMaxBits = 16;

// SPEC "Notation": EPS = 2^-23 (FLT_EPSILON), the smallest scale ARQ and ULQ produce.
constexpr float kEps = 1.1920928955078125e-7f;

// Signed codes: [qmin, qmax] = [-2^(b-1), 2^(b-1) - 1].
struct QRange {
  int32_t qmin;
  int32_t qmax;
};

// Precondition: kMinBits <= num_bits <= kMaxBits (core/checks.h).
constexpr QRange qrange(int num_bits) {
  const int32_t half = int32_t{1} << (num_bits - 1);
  return {-half, half - 1};
}

}  // namespace qatcore
