// Fake quantization, quantization to integer codes and back (SPEC "Notation"),
// over whole tensors: layout and threads on top of kernels/fake_quant.h.
// No Python here; the bindings validate every argument before calling in, so
// these functions trust their preconditions.
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
void fake_quantize(const float* x, float* y, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r);

// Returns false if x held a NaN (its code is the zero point).
bool quantize(const float* x, int8_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r);
bool quantize(const float* x, int16_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r);
void dequantize(const int8_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r);
void dequantize(const int16_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r);

}  // namespace qatcore
