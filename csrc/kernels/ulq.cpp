// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/ulq.h"

namespace qatcore {
namespace QATCORE_ISA_NS {
namespace {

#include "kernels/simd.h"

// One element of SPEC "ULQ" backward. x_c is cmax above the effective range,
// cmin below it, else x; t = x_c * inv_s stays within about +-2L, where
// rint_small is exact, and rint(t) - t is exact in float32. NaN x is "inside":
// its gradient passes and its NaN d poisons the sums, as it should.
// Branch-free, with float selects only (converted to float64 afterwards, exactly),
// so that every level vectorises it.
struct Term {
  float gx, gd_hi, gd_lo, gup, glo;
};

inline Term backward_term(float x, float g, float inv, float lo_e, float hi_e, float cmin,
                          float cmax) {
  // Each select compares afresh: GCC if-converts these, not selects on stored bools.
  float xc = x > hi_e ? cmax : x;
  xc = x < lo_e ? cmin : xc;
  const float t = xc * inv;
  const float d = rint_small(t) - t;
  float gi = x > hi_e ? 0.0f : g;
  gi = x < lo_e ? 0.0f : gi;
  return {gi, g, d, x > hi_e ? g : 0.0f, x < lo_e ? g : 0.0f};
}

constexpr int kLanes = 8;

void backward_row(const float* x, const float* g, float* gx, int64_t n, UlqConst c,
                  UlqSums* acc) {
  const float inv = c.inv_scale, lo_e = c.lo_e, hi_e = c.hi_e, cmin = c.cmin, cmax = c.cmax;
  double sd[kLanes] = {}, su[kLanes] = {}, sl[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    QATCORE_SIMD
    for (int j = 0; j < kLanes; ++j) {
      const Term t = backward_term(x[i + j], g[i + j], inv, lo_e, hi_e, cmin, cmax);
      gx[i + j] = t.gx;
      // g * d is exact in float64 (24-bit by 24-bit significands).
      sd[j] += static_cast<double>(t.gd_hi) * static_cast<double>(t.gd_lo);
      su[j] += static_cast<double>(t.gup);
      sl[j] += static_cast<double>(t.glo);
    }
  }
  for (int j = 0; i + j < n; ++j) {  // the tail goes to the first lanes, as if zero-padded
    const Term t = backward_term(x[i + j], g[i + j], inv, lo_e, hi_e, cmin, cmax);
    gx[i + j] = t.gx;
    sd[j] += static_cast<double>(t.gd_hi) * static_cast<double>(t.gd_lo);
    su[j] += static_cast<double>(t.gup);
    sl[j] += static_cast<double>(t.glo);
  }
  // A fixed pairwise fold, the same at every vector width.
  auto fold = [](const double* v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
  };
  acc->gd += fold(sd);
  acc->gup += fold(su);
  acc->glo += fold(sl);
}

void backward_cols(const float* x, const float* g, float* gx, int64_t n, UlqConstArrays c,
                   double* gd, double* gup, double* glo) {
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) {
    const Term t =
        backward_term(x[i], g[i], c.inv_scale[i], c.lo_e[i], c.hi_e[i], c.cmin[i], c.cmax[i]);
    gx[i] = t.gx;
    gd[i] += static_cast<double>(t.gd_hi) * static_cast<double>(t.gd_lo);
    gup[i] += static_cast<double>(t.gup);
    glo[i] += static_cast<double>(t.glo);
  }
}

}  // namespace

extern const UlqKernels kUlq = {backward_row, backward_cols};

}  // namespace QATCORE_ISA_NS
}  // namespace qatcore
