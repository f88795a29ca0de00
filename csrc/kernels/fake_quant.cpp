// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/fake_quant.h"

namespace qatcore {
namespace QATCORE_ISA_NS {
namespace {

#include "kernels/simd.h"

void fq_row(const float* x, float* y, int64_t n, QuantConst c) {
  const float s = c.scale, inv = c.inv_scale, lo = c.lo, hi = c.hi;
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) y[i] = rint_small(clamp_nan(x[i] * inv, lo, hi)) * s;
}

void fq_cols(const float* x, float* y, int64_t n, QuantConstArrays c) {
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) {
    y[i] = rint_small(clamp_nan(x[i] * c.inv_scale[i], c.lo[i], c.hi[i])) * c.scale[i];
  }
}

// r is an integer-valued float in [lo, hi] or NaN; NaN is written as code z and
// reported. The select keeps NaN away from the float-to-int conversion.
template <class T>
inline T to_code(float r, int32_t z) {
  const float safe = r == r ? r : 0.0f;
  return static_cast<T>(static_cast<int32_t>(safe) + z);
}

template <class T>
int quant_row(const float* x, T* q, int64_t n, QuantConst c) {
  const float inv = c.inv_scale, lo = c.lo, hi = c.hi;
  const int32_t z = c.zero_point;
  int nan = 0;
  QATCORE_SIMD_REDUCE(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const float r = rint_small(clamp_nan(x[i] * inv, lo, hi));
    nan |= r != r;
    q[i] = to_code<T>(r, z);
  }
  return nan;
}

template <class T>
int quant_cols(const float* x, T* q, int64_t n, QuantConstArrays c) {
  int nan = 0;
  QATCORE_SIMD_REDUCE(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const float r = rint_small(clamp_nan(x[i] * c.inv_scale[i], c.lo[i], c.hi[i]));
    nan |= r != r;
    q[i] = to_code<T>(r, c.zero_point[i]);
  }
  return nan;
}

// q - z is exact in int32 and in float (|q - z| < 2^17), so this is bit-identical
// to fq_row on the values the codes came from.
template <class T>
void dequant_row(const T* q, float* y, int64_t n, QuantConst c) {
  const float s = c.scale;
  const int32_t z = c.zero_point;
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(q[i]) - z) * s;
}

template <class T>
void dequant_cols(const T* q, float* y, int64_t n, QuantConstArrays c) {
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(static_cast<int32_t>(q[i]) - c.zero_point[i]) * c.scale[i];
  }
}

}  // namespace

extern const FakeQuantKernels kFakeQuant = {
    fq_row,
    fq_cols,
    quant_row<int8_t>,
    quant_cols<int8_t>,
    quant_row<int16_t>,
    quant_cols<int16_t>,
    dequant_row<int8_t>,
    dequant_cols<int8_t>,
    dequant_row<int16_t>,
    dequant_cols<int16_t>,
};

}  // namespace QATCORE_ISA_NS
}  // namespace qatcore
