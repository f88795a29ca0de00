// Fake-quantization leaf kernels: one family, compiled once per instruction set.
//
// Every function here is serial and works on one contiguous run of elements;
// csrc/ops/ splits tensors into runs and runs them on threads. The scalar build
// defines the semantics; the AVX2 and AVX-512 builds must agree bit for bit.
#pragma once
#include <cstdint>

namespace qatcore {

// The constants of one (scale, zero point) pair, derived once per channel:
//   y = rint(clamp(x * inv_scale, lo, hi)) * scale,  lo = qmin - z, hi = qmax - z.
// Because rint is monotone and lo/hi are integers, this equals the SPEC's
// clamp(rint(x * inv_scale) + z, qmin, qmax) - z, times scale.
struct QuantConst {
  float scale;
  float inv_scale;  // float32(1) / scale, as PyTorch computes it
  float lo;
  float hi;
  int32_t zero_point;
};

// The same constants as arrays, for runs along the channel axis (inner == 1):
// element c of the run uses index c of every array.
struct QuantConstArrays {
  const float* scale;
  const float* inv_scale;
  const float* lo;
  const float* hi;
  const int32_t* zero_point;
};

// x and y may be the same pointer; partial overlap is not allowed.
// quant_* return nonzero when a NaN was met (its code is written as the zero point).
struct FakeQuantKernels {
  void (*fq_row)(const float* x, float* y, int64_t n, QuantConst c);
  void (*fq_cols)(const float* x, float* y, int64_t n, QuantConstArrays c);
  int (*quant_row_i8)(const float* x, int8_t* q, int64_t n, QuantConst c);
  int (*quant_cols_i8)(const float* x, int8_t* q, int64_t n, QuantConstArrays c);
  int (*quant_row_i16)(const float* x, int16_t* q, int64_t n, QuantConst c);
  int (*quant_cols_i16)(const float* x, int16_t* q, int64_t n, QuantConstArrays c);
  void (*dequant_row_i8)(const int8_t* q, float* y, int64_t n, QuantConst c);
  void (*dequant_cols_i8)(const int8_t* q, float* y, int64_t n, QuantConstArrays c);
  void (*dequant_row_i16)(const int16_t* q, float* y, int64_t n, QuantConst c);
  void (*dequant_cols_i16)(const int16_t* q, float* y, int64_t n, QuantConstArrays c);
};

}  // namespace qatcore
