// ULQ (SPEC "ULQ"): learnable clips. The scale and zero point the clips imply,
// the forward (fake quantization with them) and the fused backward. No Python here.
#pragma once
#include <cstdint>

#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore {

// clip_min/clip_max hold one finite value per channel. Each function below
// returns -1, or the first channel whose clip range overflows float32; then it
// has written nothing.

// The effective scale and zero point of each channel's clips.
int64_t ulq_params(const float* clip_min, const float* clip_max, int64_t channels, bool fixed_min,
                   QRange r, float* scale, int32_t* zero_point);

// ulq_params, then fake quantization of x into y with them (y may be x).
int64_t ulq_forward(const float* x, float* y, const Layout& l, const float* clip_min,
                    const float* clip_max, bool fixed_min, QRange r, float* scale,
                    int32_t* zero_point);

// The backward in one pass: grad_input into gx (which may be g or x) and the
// clip gradients, one per channel, summed in float64 over pieces fixed by the
// layout alone, so the result is bit-identical for every thread count and ISA.
int64_t ulq_backward(const float* x, const float* g, float* gx, const Layout& l,
                     const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                     float* grad_clip_min, float* grad_clip_max);

}  // namespace qatcore
