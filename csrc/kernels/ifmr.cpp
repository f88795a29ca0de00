// Compiled once per instruction set; see kernels/simd.h for the rules.
#include "kernels/ifmr.h"

namespace qatcore {
namespace QATCORE_ISA_NS {
namespace {

#include "kernels/simd.h"

constexpr int kLanes = 8;

inline double fold(const double* v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// 1.5 * 2^52: rounds a double half-to-even for |v| <= 2^51, as kRoundMagic does for floats.
constexpr double kRoundMagic64 = 6755399441055744.0;
inline double rint_small64(double v) { return (v + kRoundMagic64) - kRoundMagic64; }

void histogram_add(const float* x, int64_t n, double inv_width, double offset, int64_t* counts,
                   int64_t nbins, uint16_t* scratch) {
  constexpr int64_t kBatch = 512;
  // With scratch, increments go to 16-bit counters (a quarter of the cache
  // footprint of int64, so a 16384-bin histogram stays in L1), flushed before
  // any can overflow; without, straight to counts.
  constexpr int64_t kWindow = 65535;
  int32_t idx[kBatch];
  const double top = static_cast<double>(nbins - 1);
  for (int64_t w0 = 0; w0 < n; w0 += kWindow) {
    const int64_t w1 = n - w0 < kWindow ? n : w0 + kWindow;
    for (int64_t i0 = w0; i0 < w1; i0 += kBatch) {
      const int64_t m = w1 - i0 < kBatch ? w1 - i0 : kBatch;
      // Indices, vectorised. t is exact (a power-of-two scaling) and |t| < 2^48
      // for in-range x, so floor(t) = r - (r > t) with r = rint(t) is exact too,
      // and so is floor(t) - offset (integers). Subtracting the offset before the
      // floor would not be: a tiny negative t next to a large offset rounds away.
      // The clamp only guards against misuse (callers pass finite, in-range x):
      // below the range and -inf go to bin 0, above it and +inf to the top bin
      // (+-inf pass through t, r and b as +-inf), NaN to bin 0 (b >= 0 is false
      // for NaN); never to an out-of-range conversion.
      QATCORE_SIMD
      for (int64_t j = 0; j < m; ++j) {
        const double t = static_cast<double>(x[i0 + j]) * inv_width;
        const double r = rint_small64(t);
        double b = (r - (r > t ? 1.0 : 0.0)) - offset;
        b = b >= 0.0 ? b : 0.0;
        b = b <= top ? b : top;
        idx[j] = static_cast<int32_t>(b);
      }
      if (scratch != nullptr) {
        for (int64_t j = 0; j < m; ++j) ++scratch[idx[j]];
      } else {
        for (int64_t j = 0; j < m; ++j) ++counts[idx[j]];
      }
    }
    if (scratch == nullptr) continue;
    QATCORE_SIMD
    for (int64_t b = 0; b < nbins; ++b) {
      counts[b] += scratch[b];
      scratch[b] = 0;
    }
  }
}

double data_sq_error(const float* x, int64_t n, QuantConst c) {
  const float s = c.scale, inv = c.inv_scale, lo = c.lo, hi = c.hi;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    QATCORE_SIMD
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      const float y = rint_small(clamp_nan(v * inv, lo, hi)) * s;
      const double d = static_cast<double>(y) - static_cast<double>(v);
      acc[j] += d * d;
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const float v = x[i + j];
    const float y = rint_small(clamp_nan(v * inv, lo, hi)) * s;
    const double d = static_cast<double>(y) - static_cast<double>(v);
    acc[j] += d * d;
  }
  return fold(acc);
}

// Integral over [a, b] of (k - t)^2: w * ((m - k)^2 + w^2 / 12), stable for any offset.
inline double piece(double a, double b, double k) {
  const double w = b - a, m = 0.5 * (a + b) - k;
  return w * (m * m + w * w / 12.0);
}

// The integral over [ta, tb) (t units) of (code(t) - t)^2, code(t) =
// clamp(rint(t), lo_code, hi_code), for a bin that crosses a rounding boundary.
double bin_integral_split(double ta, double tb, double lo_code, double hi_code) {
  const double below = lo_code - 0.5, above = hi_code + 0.5;
  double j = 0.0;
  if (ta < below) j += piece(ta, tb < below ? tb : below, lo_code);
  if (tb > above) j += piece(ta > above ? ta : above, tb, hi_code);
  const double u0 = ta > below ? ta : below;
  const double u1 = tb < above ? tb : above;
  if (u0 < u1) {
    const double c0 = __builtin_floor(u0 + 0.5), c1 = __builtin_floor(u1 + 0.5);
    if (c0 == c1) {
      j += piece(u0, u1, c0);
    } else {  // first partial cell, whole cells (1/12 each), last partial cell
      j += piece(u0, c0 + 0.5, c0) + (c1 - c0 - 1.0) / 12.0 + piece(c1 - 0.5, u1, c1);
    }
  }
  return j;
}

// The code a bin's midpoint rounds to, and whether code(t) is that one constant
// over the whole bin (inside one rounding cell, or in a clipped tail).
inline double bin_code(double ta, double tb, double lo_code, double hi_code, double* one) {
  const double mid = 0.5 * (ta + tb);
  double k = mid < lo_code ? lo_code : mid;
  k = k > hi_code ? hi_code : k;
  k = rint_small64(k);
  const double in_lo = (ta >= k - 0.5 ? 1.0 : 0.0) + (k == lo_code ? 1.0 : 0.0);
  const double in_hi = (tb <= k + 0.5 ? 1.0 : 0.0) + (k == hi_code ? 1.0 : 0.0);
  *one = (in_lo > 0.0 ? 1.0 : 0.0) * (in_hi > 0.0 ? 1.0 : 0.0);
  return k;
}

// count * mean of (k - t)^2 over the bin when code(t) is one constant k, else 0.
inline double one_code_term(double lo, double hi, double count, double inv, double lo_code,
                            double hi_code) {
  const double ta = lo * inv, tb = hi * inv;
  double one;
  const double k = bin_code(ta, tb, lo_code, hi_code, &one);
  const double d = 0.5 * (ta + tb) - k, w = tb - ta;
  return one * count * (d * d + w * w / 12.0);
}

double hist_sq_error(const double* lo, const double* hi, const double* count, int64_t m,
                     double scale, double lo_code, double hi_code) {
  const double inv = 1.0 / scale;
  // Most bins lie where code(t) is one constant k: there the mean is
  // (mid - k)^2 + w^2 / 12. Vectorised, with the rest left for the exact split.
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= m; i += kLanes) {
    QATCORE_SIMD
    for (int j = 0; j < kLanes; ++j) acc[j] += one_code_term(lo[i + j], hi[i + j], count[i + j],
                                                             inv, lo_code, hi_code);
  }
  for (int j = 0; i + j < m; ++j) {
    acc[j] += one_code_term(lo[i + j], hi[i + j], count[i + j], inv, lo_code, hi_code);
  }
  double split = 0.0;
  for (int64_t b = 0; b < m; ++b) {
    const double ta = lo[b] * inv, tb = hi[b] * inv;
    double one;
    bin_code(ta, tb, lo_code, hi_code, &one);
    if (one == 0.0) split += count[b] * bin_integral_split(ta, tb, lo_code, hi_code) / (tb - ta);
  }
  return (fold(acc) + split) * (scale * scale);
}

}  // namespace

extern const IfmrKernels kIfmr = {histogram_add, data_sq_error, hist_sq_error};

}  // namespace QATCORE_ISA_NS
}  // namespace qatcore
