// Fake quantization, quantization to integer codes and back (SPEC "Notation"),
// over whole tensors: layout and threads on top of kernels/fake_quant.h.
// No front end here; every front end runs core/op_checks.h before calling in, so
// these functions trust their preconditions. Every operation in csrc/ops/ runs
// its chunks on the executor it is given (exec/executor.h); its results are the
// same bits on any executor.
#pragma once
#include <cstdint>

#include "kernels/fake_quant.h"
#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore {

// The leaf kernels' constants of one (scale, zero point) pair.
inline QuantConst quant_const(float scale, int32_t z, QRange r) {
  return {scale, 1.0f / scale, static_cast<float>(r.qmin - z), static_cast<float>(r.qmax - z), z};
}

// scale/zero_point have `channels` entries: finite, positive scales with a
// finite reciprocal; zero points in [qmin, qmax]. y may be x, but no other overlap.
void fake_quantize(Executor& ex, const float* x, float* y, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r);

// Returns false if x held a NaN (its code is the zero point).
bool quantize(Executor& ex, const float* x, int8_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r);
bool quantize(Executor& ex, const float* x, int16_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r);
void dequantize(Executor& ex, const int8_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r);
void dequantize(Executor& ex, const int16_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r);

}  // namespace qatcore
