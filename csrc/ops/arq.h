// ARQ (SPEC "ARQ"): symmetric per-channel (or per-tensor) weight scales, and the
// weights fake-quantized with them. No front end here.
#pragma once
#include <cstdint>

#include "ops/layout.h"
#include "ops/qrange.h"

namespace qatcore {

// Writes one symmetric scale per channel to scales and, unless y is null, the
// fake-quantized weights to y (y may be w). Returns -1, or the flat index of the
// first NaN or infinity in w; then scales and y are unspecified, and w itself is
// intact even when y == w.
int64_t arq(Executor& ex, const float* w, float* y, const Layout& l, QRange r, float* scales);

}  // namespace qatcore
