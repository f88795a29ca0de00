// Whole-tensor operations: layouts, threads and the SPEC's per-channel math on
// top of the leaf kernels. No Python here; bindings.cpp validates every
// argument before calling in, so these functions trust their preconditions.
#pragma once
#include <cstdint>

namespace qatcore {

// A C-contiguous tensor seen as (outer, channels, inner) around the quantization
// axis. Per tensor is {1, 1, n}.
struct Layout {
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int64_t size() const { return outer * channels * inner; }
};

struct QRange {
  int32_t qmin;
  int32_t qmax;
};
QRange qrange(int num_bits);  // num_bits in [2, 16]

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

// ARQ (SPEC "ARQ"): writes one symmetric scale per channel to scales and, unless
// y is null, the fake-quantized weights to y (y may be w). Returns -1, or the
// flat index of the first NaN or infinity in w; then scales and y are
// unspecified, and w itself is intact even when y == w.
int64_t arq(const float* w, float* y, const Layout& l, QRange r, float* scales);

// ULQ (SPEC "ULQ"): the effective scale and zero point of each channel's clips.
// Returns -1, or the first channel whose clip range overflows float32 (then
// nothing is written).
int64_t ulq_params(const float* clip_min, const float* clip_max, int64_t channels, bool fixed_min,
                   QRange r, float* scale, int32_t* zero_point);

// ULQ backward in one pass: grad_input into gx (which may be g or x) and the
// clip gradients, one per channel, summed in float64 over pieces fixed by the
// layout alone, so the result is bit-identical for every thread count and ISA.
// Preconditions: ulq_params succeeds for these clips.
void ulq_backward(const float* x, const float* g, float* gx, const Layout& l,
                  const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                  float* grad_clip_min, float* grad_clip_max);

// Min, max (over non-NaN values) and whether every value is finite.
struct Range {
  float lo;
  float hi;
  bool finite;
};
Range minmax(const float* x, int64_t n);

// counts[floor(x * inv_width) - offset] += 1 over x; see IfmrKernels::histogram_add
// for the preconditions. Integer counts: the same for any split and thread count.
void histogram_add(const float* x, int64_t n, double inv_width, double offset, int64_t* counts,
                   int64_t nbins);

// out[c] = sum over x of (fq_c(x) - x)^2 for each candidate c (scale, zero point):
// the data is read once, in fixed blocks scored against every candidate.
void data_sq_errors(const float* x, int64_t n, const float* scales, const int32_t* zero_points,
                    int64_t candidates, QRange r, double* out);

// The same sums estimated from histogram bins [lo, hi) holding count values each.
void hist_sq_errors(const double* lo, const double* hi, const double* count, int64_t bins,
                    const float* scales, const int32_t* zero_points, int64_t candidates, QRange r,
                    double* out);

}  // namespace qatcore
