// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/ulq.h"

namespace qatcore {
namespace QATCORE_ISA_NS {
namespace {

#include "kernels/simd.h"

// What one element contributes: its gradient and K float64 terms, each the product
// a[k] * b[k] of two floats (exact in float64: 24-bit by 24-bit significands).
// Branch-free element functions fill it with float selects only (converted to
// float64 afterwards, exactly), so that every level vectorises them.
template <int K>
struct Terms {
  float grad;
  float a[K];
  float b[K];
};

// The fixed-lane summation that both backwards share. A run's sums are taken in
// kLanes float64 lanes, element i + j into lane j, the tail into the first lanes as
// if zero-padded, then folded pairwise in a fixed order: the same at every vector
// width, so the same bits at every ISA. term(i, x, g) gives element i's Terms.
constexpr int kLanes = 8;

inline double fold(const double* v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

template <int K, bool kWrite, class Term>
void lanes_row(const float* x, const float* g, float* gx, int64_t n, const Term& term,
               double* acc) {
  double s[K][kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    QATCORE_SIMD
    for (int j = 0; j < kLanes; ++j) {
      const Terms<K> t = term(i + j, x[i + j], g[i + j]);
      if constexpr (kWrite) gx[i + j] = t.grad;
      for (int k = 0; k < K; ++k) {
        s[k][j] += static_cast<double>(t.a[k]) * static_cast<double>(t.b[k]);
      }
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const Terms<K> t = term(i + j, x[i + j], g[i + j]);
    if constexpr (kWrite) gx[i + j] = t.grad;
    for (int k = 0; k < K; ++k) {
      s[k][j] += static_cast<double>(t.a[k]) * static_cast<double>(t.b[k]);
    }
  }
  for (int k = 0; k < K; ++k) acc[k] += fold(s[k]);
}

template <int K, bool kWrite, class Term>
void lanes_cols(const float* x, const float* g, float* gx, int64_t n, const Term& term,
                double* const* acc) {
  static_assert(K >= 1 && K <= 3, "lanes_cols keeps up to three accumulator rows");
  // Named pointers, not an array of them: GCC then keeps them in registers.
  double* const d0 = acc[0];
  double* const d1 = K > 1 ? acc[1] : nullptr;
  double* const d2 = K > 2 ? acc[2] : nullptr;
  QATCORE_SIMD
  for (int64_t i = 0; i < n; ++i) {
    const Terms<K> t = term(i, x[i], g[i]);
    if constexpr (kWrite) gx[i] = t.grad;
    d0[i] += static_cast<double>(t.a[0]) * static_cast<double>(t.b[0]);
    if constexpr (K > 1) d1[i] += static_cast<double>(t.a[1]) * static_cast<double>(t.b[1]);
    if constexpr (K > 2) d2[i] += static_cast<double>(t.a[2]) * static_cast<double>(t.b[2]);
  }
}

// ---- activations (SPEC "ULQ") ----------------------------------------------------------

// x_c is cmax above the effective range, cmin below it, else x; t = x_c * inv_s
// stays within about +-2L, where rint_small is exact, and rint(t) - t is exact in
// float32. NaN x is "inside": its gradient passes and its NaN d poisons the sums.
inline Terms<kUlqSums> ulq_term(float x, float g, float inv, float lo_e, float hi_e, float cmin,
                                float cmax) {
  // Each select compares afresh: GCC if-converts these, not selects on stored bools.
  float xc = x > hi_e ? cmax : x;
  xc = x < lo_e ? cmin : xc;
  const float t = xc * inv;
  const float d = rint_small(t) - t;
  float gi = x > hi_e ? 0.0f : g;
  gi = x < lo_e ? 0.0f : gi;
  return {gi, {g, x > hi_e ? g : 0.0f, x < lo_e ? g : 0.0f}, {d, 1.0f, 1.0f}};
}

void backward_row(const float* x, const float* g, float* gx, int64_t n, UlqConst c, double* acc) {
  const auto term = [c](int64_t, float xv, float gv) {
    return ulq_term(xv, gv, c.inv_scale, c.lo_e, c.hi_e, c.cmin, c.cmax);
  };
  lanes_row<kUlqSums, true>(x, g, gx, n, term, acc);
}

void backward_cols(const float* x, const float* g, float* gx, int64_t n, UlqConstArrays c,
                   double* const* acc) {
  const auto term = [c](int64_t i, float xv, float gv) {
    return ulq_term(xv, gv, c.inv_scale[i], c.lo_e[i], c.hi_e[i], c.cmin[i], c.cmax[i]);
  };
  lanes_cols<kUlqSums, true>(x, g, gx, n, term, acc);
}

// ---- weights (SPEC "Weight ULQ") -------------------------------------------------------

// d = rint(t) - t inside [qmin * s, qmax * s], qmin below, qmax above; the
// gradient passes unmasked. Inside, |t| <= about qmax + 1, where rint_small is
// exact; outside, whatever rint_small makes of a huge or infinite t is replaced.
// NaN w is inside, and its NaN d poisons the sum.
inline Terms<kUlqWeightSums> weight_term(float w, float g, float inv, float lo_b, float hi_b,
                                         float qmin, float qmax) {
  const float t = w * inv;
  float d = rint_small(t) - t;
  d = w > hi_b ? qmax : d;
  d = w < lo_b ? qmin : d;
  return {g, {g}, {d}};
}

template <bool kWrite>
void weight_row(const float* w, const float* g, float* gw, int64_t n, UlqWeightConst c,
                float qmin, float qmax, double* acc) {
  const auto term = [c, qmin, qmax](int64_t, float wv, float gv) {
    return weight_term(wv, gv, c.inv_scale, c.lo_b, c.hi_b, qmin, qmax);
  };
  lanes_row<kUlqWeightSums, kWrite>(w, g, gw, n, term, acc);
}

void weight_backward_row(const float* w, const float* g, float* gw, int64_t n, UlqWeightConst c,
                         float qmin, float qmax, double* acc) {
  if (gw != nullptr) {
    weight_row<true>(w, g, gw, n, c, qmin, qmax, acc);
  } else {
    weight_row<false>(w, g, gw, n, c, qmin, qmax, acc);
  }
}

template <bool kWrite>
void weight_cols(const float* w, const float* g, float* gw, int64_t n, UlqWeightConstArrays c,
                 float qmin, float qmax, double* const* acc) {
  const auto term = [c, qmin, qmax](int64_t i, float wv, float gv) {
    return weight_term(wv, gv, c.inv_scale[i], c.lo_b[i], c.hi_b[i], qmin, qmax);
  };
  lanes_cols<kUlqWeightSums, kWrite>(w, g, gw, n, term, acc);
}

void weight_backward_cols(const float* w, const float* g, float* gw, int64_t n,
                          UlqWeightConstArrays c, float qmin, float qmax, double* const* acc) {
  if (gw != nullptr) {
    weight_cols<true>(w, g, gw, n, c, qmin, qmax, acc);
  } else {
    weight_cols<false>(w, g, gw, n, c, qmin, qmax, acc);
  }
}

}  // namespace

extern const UlqKernels kUlq = {backward_row, backward_cols, weight_backward_row,
                                weight_backward_cols};

}  // namespace QATCORE_ISA_NS
}  // namespace qatcore
