// ULQ (SPEC "ULQ"): learnable clips. The scale and zero point the clips imply,
// the forward (fake quantization with them) and the fused backward. Weight ULQ
// (SPEC "Weight ULQ"): a learnable symmetric scale, zero point 0. No front end here.
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
int64_t ulq_forward(Executor& ex, const float* x, float* y, const Layout& l, const float* clip_min,
                    const float* clip_max, bool fixed_min, QRange r, float* scale,
                    int32_t* zero_point);

// The backward in one pass: grad_input into gx (which may be g or x) and the
// clip gradients, one per channel, summed in float64 over pieces fixed by the
// layout alone, so the result is bit-identical for every thread count and ISA.
int64_t ulq_backward(Executor& ex, const float* x, const float* g, float* gx, const Layout& l,
                     const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                     float* grad_clip_min, float* grad_clip_max);

// Weight ULQ. scale holds one value per channel: finite, positive, with a finite
// reciprocal (core/op_checks.h). The forward is fake quantization with
// zero point 0 (y may be w): bit-identical to ARQ's output for the same scales.
void ulq_weight_forward(Executor& ex, const float* w, float* y, const Layout& l, const float* scale,
                        QRange r);

// The weight backward in one pass: grad_weight = g into gw (straight-through,
// unmasked; nothing is written when gw is g) and one scale gradient per channel,
// sum(g * d) / sqrt(N * qmax) summed in float64 over the same fixed pieces as
// ulq_backward (0 for a channel of no elements).
void ulq_weight_backward(Executor& ex, const float* w, const float* g, float* gw, const Layout& l,
                         const float* scale, QRange r, float* grad_scale);

}  // namespace qatcore
