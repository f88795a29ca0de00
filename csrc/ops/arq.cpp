#include "ops/arq.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "ops/fake_quant.h"

namespace qatcore {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// SPEC "ARQ": the smallest symmetric scale at which nothing in [lo, hi] clips.
float arq_scale(float lo, float hi, QRange r) {
  hi = hi > 0.0f ? hi : 0.0f;
  lo = lo < 0.0f ? lo : 0.0f;
  const float s = std::max(hi / static_cast<float>(r.qmax), -lo / static_cast<float>(-r.qmin));
  return s >= kEps ? s : 1.0f;
}

int64_t first_non_finite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(w[i])) return i;
  }
  return -1;
}

// Channels laid out as contiguous rows (outer == 1) and y != w: one fused pass,
// each row reduced and then quantized while it is still in cache.
bool arq_fused_rows(Executor& ex, const float* w, float* y, const Layout& l, QRange r,
                    float* scales) {
  const Kernels& k = kernels();
  std::atomic<int> finite{1};
  const int64_t min_rows = grain(Family::arq) / std::max<int64_t>(1, l.inner);
  parallel_ranges(ex, l.channels, even_chunk(l.channels, min_rows), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* row = w + c * l.inner;
      MinMax m{kInf, -kInf, 1};
      k.reduce->minmax(row, l.inner, &m);
      if (!m.finite) {
        finite.store(0);
        continue;
      }
      const float s = arq_scale(m.lo, m.hi, r);
      scales[c] = s;
      if (y != nullptr) k.fq->fq_row(row, y + c * l.inner, l.inner, quant_const(s, 0, r));
    }
  });
  return finite.load() != 0;
}

// Any layout: per-channel min/max over the whole tensor first, then one
// elementwise pass. Min and max are exact, so the split into chunks (here one
// per thread, to bound the partial arrays) cannot change the result.
bool arq_two_pass(Executor& ex, const float* w, float* y, const Layout& l, QRange r,
                  float* scales) {
  const Kernels& k = kernels();
  const int64_t n = l.size();
  const auto channels = static_cast<size_t>(l.channels);
  const Parts parts = per_thread_parts(ex, n);
  const int64_t per_part = parts.size, n_parts = parts.count;
  std::vector<float> lo(channels * static_cast<size_t>(n_parts), kInf);
  std::vector<float> hi(lo.size(), -kInf);
  std::atomic<int> finite{1};
  parallel_ranges(ex, n, per_part, [&](int64_t a, int64_t b) {
    const size_t base = static_cast<size_t>(a / per_part) * channels;
    float* plo = &lo[base];
    float* phi = &hi[base];
    for_runs(
        a, b, l,
        [&](int64_t off, int64_t len, int64_t c) {
          MinMax m{plo[c], phi[c], 1};
          k.reduce->minmax(w + off, len, &m);
          plo[c] = m.lo;
          phi[c] = m.hi;
          if (!m.finite) finite.store(0);
        },
        [&](int64_t off, int64_t len, int64_t c) {
          if (!k.reduce->minmax_cols(w + off, len, plo + c, phi + c)) finite.store(0);
        });
  });
  if (!finite.load()) return false;
  for (size_t c = 0; c < channels; ++c) {
    float clo = kInf, chi = -kInf;
    for (size_t p = 0; p < static_cast<size_t>(n_parts); ++p) {
      clo = std::min(clo, lo[p * channels + c]);
      chi = std::max(chi, hi[p * channels + c]);
    }
    scales[c] = arq_scale(clo, chi, r);
  }
  if (y != nullptr) {
    const std::vector<int32_t> zeros(channels, 0);
    fake_quantize(ex, w, y, l, scales, zeros.data(), r);
  }
  return true;
}

}  // namespace

int64_t arq(Executor& ex, const float* w, float* y, const Layout& l, QRange r, float* scales) {
  // The fused pass writes channel by channel, so it would leave an aliased w
  // half-overwritten when a later channel turns out to hold a NaN; in-place
  // calls reduce everything first and write only once the input is known good.
  const bool fused = l.outer == 1 && l.channels > 1 && y != w;
  const bool ok =
      fused ? arq_fused_rows(ex, w, y, l, r, scales) : arq_two_pass(ex, w, y, l, r, scales);
  return ok ? -1 : first_non_finite(w, l.size());
}

}  // namespace qatcore
