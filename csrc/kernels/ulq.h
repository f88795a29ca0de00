// ULQ backward leaf kernels (SPEC "ULQ"), compiled once per instruction set.
// The forward is plain fake quantization (kernels/fake_quant.h) with ULQ's
// scale and zero point.
#pragma once
#include <cstdint>

namespace qatcore {

// One channel's ULQ constants, all float32 as the SPEC computes them.
struct UlqConst {
  float inv_scale;
  float lo_e;  // s * n_lo: effective lower bound
  float hi_e;  // s * (n_lo + L): effective upper bound
  float cmin;  // effective clip_min (0 under fixed_min)
  float cmax;  // effective clip_max
};

struct UlqConstArrays {
  const float* inv_scale;
  const float* lo_e;
  const float* hi_e;
  const float* cmin;
  const float* cmax;
};

// Clip-gradient sums of one channel, float64. With d = rint(t) - t:
//   grad_clip_max = gd / L + gup,  grad_clip_min = glo - gd / L.
struct UlqSums {
  double gd;   // sum of g * d
  double gup;  // sum of g where x > hi_e
  double glo;  // sum of g where x < lo_e
};

struct UlqKernels {
  // grad_input over one run with constant params, adding the run's sums to *acc.
  // gx may be g or x (same pointer); no other overlap. The run's own sum is taken
  // in eight float64 lanes folded in a fixed order, so it is the same at every ISA.
  void (*backward_row)(const float* x, const float* g, float* gx, int64_t n, UlqConst c,
                       UlqSums* acc);
  // Element c uses the constants and accumulators of index c (runs along the
  // channel axis); each accumulator adds its one term, in call order.
  void (*backward_cols)(const float* x, const float* g, float* gx, int64_t n, UlqConstArrays c,
                        double* gd, double* gup, double* glo);
};

}  // namespace qatcore
