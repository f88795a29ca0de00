// ULQ backward leaf kernels (SPEC "ULQ" and "Weight ULQ"), compiled once per
// instruction set. The forwards are plain fake quantization (kernels/fake_quant.h)
// with ULQ's scale and zero point.
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

// Activation ULQ sums, in this order in every accumulator array. With d = rint(t) - t:
//   grad_clip_max = gd / L + gup,  grad_clip_min = glo - gd / L.
enum UlqSum { kUlqGd = 0, kUlqGup = 1, kUlqGlo = 2, kUlqSums = 3 };

// One channel's weight-ULQ constants (SPEC "Weight ULQ": scale s, zero point 0).
struct UlqWeightConst {
  float inv_scale;  // float32(1) / s
  float lo_b;       // qmin * s: below it d = qmin
  float hi_b;       // qmax * s: above it d = qmax
};

struct UlqWeightConstArrays {
  const float* inv_scale;
  const float* lo_b;
  const float* hi_b;
};

// Weight ULQ has one sum per channel: sum(g * d).
constexpr int kUlqWeightSums = 1;

// Every kernel below works on one run of elements with K float64 sums per channel.
// *_row: the run has constant params; its K sums are added to acc[0..K). Each sum is
// taken in eight float64 lanes folded in a fixed order, so it is the same at every
// ISA. *_cols: element i uses the constants of index i (runs along the channel axis)
// and adds its one term to acc[k][i], in call order.
struct UlqKernels {
  // Activations: grad_input into gx (which may be g or x; no other overlap).
  void (*backward_row)(const float* x, const float* g, float* gx, int64_t n, UlqConst c,
                       double* acc);
  void (*backward_cols)(const float* x, const float* g, float* gx, int64_t n, UlqConstArrays c,
                        double* const* acc);
  // Weights: grad_weight = g (straight-through, unmasked) into gw, or nothing
  // written when gw is null (the caller's grad_weight is g itself).
  void (*weight_backward_row)(const float* w, const float* g, float* gw, int64_t n,
                              UlqWeightConst c, float qmin, float qmax, double* acc);
  void (*weight_backward_cols)(const float* w, const float* g, float* gw, int64_t n,
                               UlqWeightConstArrays c, float qmin, float qmax,
                               double* const* acc);
};

}  // namespace qatcore
