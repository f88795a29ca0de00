// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/ulq.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

// prefix(s) may add the first whole lane-widths to s itself (the vector prefixes
// below) and returns how many elements it took.
template <int K, bool kWrite, class Term, class Prefix>
void lanes_row(const float* x, const float* g, float* gx, int64_t n, const Term& term,
               const Prefix& prefix, double* acc) {
  double s[K][kLanes] = {};
  int64_t i = prefix(s);
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

// ---- vector prefixes ----------------------------------------------------------------
//
// GCC 12 vectorises the row loops above but spends about 7.5 instructions per element
// on them at AVX2 and AVX-512 (it re-derives every select's comparison and blends
// float64 terms under masks), which makes the backwards compute-bound at about 0.6 ns
// per element, eight times an in-cache copy. The prefixes below are the same row
// loops written with intrinsics (about 2 instructions per element at AVX-512). They
// take whole lane-widths only, add element i + j to lane j in the order the scalar
// twin does, and leave the rest to it, so every level keeps the same bits. A term the
// twin adds as an exact +0.0 (a masked-off g) is skipped here: the lanes start at +0.0
// and a float64 sum that starts at +0.0 is never -0.0, so adding +0.0 changes nothing.

#if defined(__AVX512F__)

// The zero-masked forms: GCC 12 warns that the plain ones' undefined pass-through
// "may be used uninitialized".
inline __m512d half_pd(__m256 v) { return _mm512_maskz_cvtps_pd(0xFF, v); }
inline __m512d lo_pd(__m512 v) { return half_pd(_mm512_maskz_extractf32x8_ps(0xFF, v, 0)); }
inline __m512d hi_pd(__m512 v) { return half_pd(_mm512_maskz_extractf32x8_ps(0xFF, v, 1)); }
inline __m512 round_diff(__m512 t) {  // rint_small(t) - t
  const __m512 magic = _mm512_set1_ps(kRoundMagic);
  return _mm512_sub_ps(_mm512_sub_ps(_mm512_add_ps(t, magic), magic), t);
}

// Twin of lanes_row over ulq_term: 16 elements a step, lanes 0-7 then 8-15.
int64_t ulq_row_prefix(const float* x, const float* g, float* gx, int64_t n, const UlqConst& c,
                       double (&s)[kUlqSums][kLanes]) {
  const __m512 inv = _mm512_set1_ps(c.inv_scale), lo_e = _mm512_set1_ps(c.lo_e);
  const __m512 hi_e = _mm512_set1_ps(c.hi_e), cmin = _mm512_set1_ps(c.cmin);
  const __m512 cmax = _mm512_set1_ps(c.cmax);
  __m512d gd = _mm512_loadu_pd(s[kUlqGd]), up = _mm512_loadu_pd(s[kUlqGup]);
  __m512d lo = _mm512_loadu_pd(s[kUlqGlo]);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i), gv = _mm512_loadu_ps(g + i);
    const __mmask16 above = _mm512_cmp_ps_mask(xv, hi_e, _CMP_GT_OQ);
    const __mmask16 below = _mm512_cmp_ps_mask(xv, lo_e, _CMP_LT_OQ);
    const __m512 xc = _mm512_mask_blend_ps(below, _mm512_mask_blend_ps(above, xv, cmax), cmin);
    const __m512 d = round_diff(_mm512_mul_ps(xc, inv));
    _mm512_storeu_ps(gx + i, _mm512_maskz_mov_ps(static_cast<__mmask16>(~(above | below)), gv));
    const __m512d g0 = lo_pd(gv), g1 = hi_pd(gv);
    gd = _mm512_add_pd(gd, _mm512_mul_pd(g0, lo_pd(d)));
    gd = _mm512_add_pd(gd, _mm512_mul_pd(g1, hi_pd(d)));
    up = _mm512_mask_add_pd(up, static_cast<__mmask8>(above), up, g0);
    up = _mm512_mask_add_pd(up, static_cast<__mmask8>(above >> 8), up, g1);
    lo = _mm512_mask_add_pd(lo, static_cast<__mmask8>(below), lo, g0);
    lo = _mm512_mask_add_pd(lo, static_cast<__mmask8>(below >> 8), lo, g1);
  }
  _mm512_storeu_pd(s[kUlqGd], gd);
  _mm512_storeu_pd(s[kUlqGup], up);
  _mm512_storeu_pd(s[kUlqGlo], lo);
  return i;
}

// Twin of lanes_row over weight_term.
template <bool kWrite>
int64_t weight_row_prefix(const float* w, const float* g, float* gw, int64_t n,
                          const UlqWeightConst& c, float qmin, float qmax,
                          double (&s)[kUlqWeightSums][kLanes]) {
  const __m512 inv = _mm512_set1_ps(c.inv_scale), lo_b = _mm512_set1_ps(c.lo_b);
  const __m512 hi_b = _mm512_set1_ps(c.hi_b), vmin = _mm512_set1_ps(qmin);
  const __m512 vmax = _mm512_set1_ps(qmax);
  __m512d gd = _mm512_loadu_pd(s[0]);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 wv = _mm512_loadu_ps(w + i), gv = _mm512_loadu_ps(g + i);
    __m512 d = round_diff(_mm512_mul_ps(wv, inv));
    d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(wv, hi_b, _CMP_GT_OQ), d, vmax);
    d = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(wv, lo_b, _CMP_LT_OQ), d, vmin);
    if constexpr (kWrite) _mm512_storeu_ps(gw + i, gv);
    gd = _mm512_add_pd(gd, _mm512_mul_pd(lo_pd(gv), lo_pd(d)));
    gd = _mm512_add_pd(gd, _mm512_mul_pd(hi_pd(gv), hi_pd(d)));
  }
  _mm512_storeu_pd(s[0], gd);
  return i;
}

#elif defined(__AVX2__)

// Lanes 0-3 and 4-7 of the eight float64 lanes are two registers.
inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
inline __m256 round_diff(__m256 t) {  // rint_small(t) - t
  const __m256 magic = _mm256_set1_ps(kRoundMagic);
  return _mm256_sub_ps(_mm256_sub_ps(_mm256_add_ps(t, magic), magic), t);
}
// lanes += the eight float64 terms a * b, a and b floats.
inline void add_products(__m256d (&lanes)[2], __m256 a, __m256 b) {
  lanes[0] = _mm256_add_pd(lanes[0], _mm256_mul_pd(lo_pd(a), lo_pd(b)));
  lanes[1] = _mm256_add_pd(lanes[1], _mm256_mul_pd(hi_pd(a), hi_pd(b)));
}
// lanes += the eight float64 terms a.
inline void add_terms(__m256d (&lanes)[2], __m256 a) {
  lanes[0] = _mm256_add_pd(lanes[0], lo_pd(a));
  lanes[1] = _mm256_add_pd(lanes[1], hi_pd(a));
}

// Twin of lanes_row over ulq_term: 8 elements a step. Masked-off terms are +0.0
// here, as in the twin.
int64_t ulq_row_prefix(const float* x, const float* g, float* gx, int64_t n, const UlqConst& c,
                       double (&s)[kUlqSums][kLanes]) {
  const __m256 inv = _mm256_set1_ps(c.inv_scale), lo_e = _mm256_set1_ps(c.lo_e);
  const __m256 hi_e = _mm256_set1_ps(c.hi_e), cmin = _mm256_set1_ps(c.cmin);
  const __m256 cmax = _mm256_set1_ps(c.cmax);
  __m256d lanes[kUlqSums][2];
  for (int k = 0; k < kUlqSums; ++k) {
    lanes[k][0] = _mm256_loadu_pd(s[k]);
    lanes[k][1] = _mm256_loadu_pd(s[k] + 4);
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i), gv = _mm256_loadu_ps(g + i);
    const __m256 above = _mm256_cmp_ps(xv, hi_e, _CMP_GT_OQ);
    const __m256 below = _mm256_cmp_ps(xv, lo_e, _CMP_LT_OQ);
    const __m256 xc = _mm256_blendv_ps(_mm256_blendv_ps(xv, cmax, above), cmin, below);
    const __m256 d = round_diff(_mm256_mul_ps(xc, inv));
    _mm256_storeu_ps(gx + i, _mm256_andnot_ps(_mm256_or_ps(above, below), gv));
    add_products(lanes[kUlqGd], gv, d);
    add_terms(lanes[kUlqGup], _mm256_and_ps(above, gv));
    add_terms(lanes[kUlqGlo], _mm256_and_ps(below, gv));
  }
  for (int k = 0; k < kUlqSums; ++k) {
    _mm256_storeu_pd(s[k], lanes[k][0]);
    _mm256_storeu_pd(s[k] + 4, lanes[k][1]);
  }
  return i;
}

#else  // the baseline build: the twin does it all

int64_t ulq_row_prefix(const float*, const float*, float*, int64_t, const UlqConst&,
                       double (&)[kUlqSums][kLanes]) {
  return 0;
}

#endif

#if !defined(__AVX512F__)
// Below AVX-512 the weight backward's twin runs as fast as intrinsics (measured at
// AVX2): no prefix.
template <bool kWrite>
int64_t weight_row_prefix(const float*, const float*, float*, int64_t, const UlqWeightConst&,
                          float, float, double (&)[kUlqWeightSums][kLanes]) {
  return 0;
}
#endif

void backward_row(const float* x, const float* g, float* gx, int64_t n, UlqConst c, double* acc) {
  const auto term = [c](int64_t, float xv, float gv) {
    return ulq_term(xv, gv, c.inv_scale, c.lo_e, c.hi_e, c.cmin, c.cmax);
  };
  const auto prefix = [&](double(&s)[kUlqSums][kLanes]) {
    return ulq_row_prefix(x, g, gx, n, c, s);
  };
  lanes_row<kUlqSums, true>(x, g, gx, n, term, prefix, acc);
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
  const auto prefix = [&](double(&s)[kUlqWeightSums][kLanes]) {
    return weight_row_prefix<kWrite>(w, g, gw, n, c, qmin, qmax, s);
  };
  lanes_row<kUlqWeightSums, kWrite>(w, g, gw, n, term, prefix, acc);
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
