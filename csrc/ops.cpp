#include "ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "parallel.h"

namespace qatcore {
namespace {

constexpr float kEps = 1.1920928955078125e-7f;  // 2^-23, FLT_EPSILON

QuantConst make_const(float scale, int32_t z, QRange r) {
  return {scale, 1.0f / scale, static_cast<float>(r.qmin - z), static_cast<float>(r.qmax - z), z};
}

// Per-channel constants in both forms the leaf kernels take.
struct ChannelConsts {
  std::vector<QuantConst> rows;
  std::vector<float> scale, inv, lo, hi;
  std::vector<int32_t> zero_point;

  ChannelConsts(const float* s, const int32_t* z, int64_t channels, QRange r) {
    const auto n = static_cast<size_t>(channels);
    rows.resize(n);
    scale.resize(n);
    inv.resize(n);
    lo.resize(n);
    hi.resize(n);
    zero_point.resize(n);
    for (size_t c = 0; c < n; ++c) {
      const QuantConst q = make_const(s[c], z[c], r);
      rows[c] = q;
      scale[c] = q.scale;
      inv[c] = q.inv_scale;
      lo[c] = q.lo;
      hi[c] = q.hi;
      zero_point[c] = q.zero_point;
    }
  }

  QuantConstArrays from(int64_t c) const {
    const auto i = static_cast<size_t>(c);
    return {&scale[i], &inv[i], &lo[i], &hi[i], &zero_point[i]};
  }
};

// Visits the flat range [a, b) of a (outer, channels, inner) tensor as maximal
// runs that the leaf kernels take: row(offset, length, channel) for runs inside
// one channel's row of `inner` elements, or, when inner == 1 (the channel axis
// is the last one), cols(offset, length, first_channel) for runs along the
// channel axis.
template <class Row, class Cols>
void for_runs(int64_t a, int64_t b, const Layout& l, Row&& row, Cols&& cols) {
  if (l.inner == 1 && l.channels > 1) {
    while (a < b) {
      const int64_t c = a % l.channels;
      const int64_t end = std::min(b, a - c + l.channels);
      cols(a, end - a, c);
      a = end;
    }
  } else {
    while (a < b) {
      const int64_t r = a / l.inner;
      const int64_t end = std::min(b, (r + 1) * l.inner);
      row(a, end - a, r % l.channels);
      a = end;
    }
  }
}

// Runs an elementwise per-channel map over the whole tensor in grain-sized chunks.
template <class Row, class Cols>
void elementwise(const Layout& l, Row&& row, Cols&& cols) {
  parallel_ranges(l.size(), grain(), [&](int64_t a, int64_t b) { for_runs(a, b, l, row, cols); });
}

template <class T, class RowK, class ColsK>
bool quantize_impl(const float* x, T* q, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r, RowK row_k, ColsK cols_k) {
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  std::atomic<int> nan{0};
  elementwise(
      l,
      [&](int64_t off, int64_t n, int64_t c) {
        if (row_k(x + off, q + off, n, cc.rows[static_cast<size_t>(c)])) nan.store(1);
      },
      [&](int64_t off, int64_t n, int64_t c) {
        if (cols_k(x + off, q + off, n, cc.from(c))) nan.store(1);
      });
  return nan.load() == 0;
}

template <class T, class RowK, class ColsK>
void dequantize_impl(const T* q, float* y, const Layout& l, const float* scale,
                     const int32_t* zero_point, QRange r, RowK row_k, ColsK cols_k) {
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  elementwise(
      l,
      [&](int64_t off, int64_t n, int64_t c) {
        row_k(q + off, y + off, n, cc.rows[static_cast<size_t>(c)]);
      },
      [&](int64_t off, int64_t n, int64_t c) { cols_k(q + off, y + off, n, cc.from(c)); });
}

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

constexpr float kInf = std::numeric_limits<float>::infinity();

// One contiguous part per thread (of at least grain() items), for reductions whose
// result cannot depend on the split: exact min/max, integer counts.
struct Parts {
  int64_t count;  // ranges parallel_ranges(n, size, ...) will produce (1 when n == 0)
  int64_t size;
};

Parts per_thread_parts(int64_t n) {
  const int64_t wanted =
      std::max<int64_t>(1, std::min<int64_t>(num_threads(), (n + grain() - 1) / grain()));
  const int64_t size = std::max<int64_t>(1, (n + wanted - 1) / wanted);
  return {n == 0 ? 1 : (n + size - 1) / size, size};
}

// Channels laid out as contiguous rows (outer == 1) and y != w: one fused pass,
// each row reduced and then quantized while it is still in cache.
bool arq_fused_rows(const float* w, float* y, const Layout& l, QRange r, float* scales) {
  const Kernels& k = kernels();
  std::atomic<int> finite{1};
  const int64_t rows_per_chunk = std::max<int64_t>(1, grain() / std::max<int64_t>(1, l.inner));
  parallel_ranges(l.channels, rows_per_chunk, [&](int64_t c0, int64_t c1) {
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
      if (y != nullptr) k.fq->fq_row(row, y + c * l.inner, l.inner, make_const(s, 0, r));
    }
  });
  return finite.load() != 0;
}

// Any layout: per-channel min/max over the whole tensor first, then one
// elementwise pass. Min and max are exact, so the split into chunks (here one
// per thread, to bound the partial arrays) cannot change the result.
bool arq_two_pass(const float* w, float* y, const Layout& l, QRange r, float* scales) {
  const Kernels& k = kernels();
  const int64_t n = l.size();
  const auto channels = static_cast<size_t>(l.channels);
  const Parts parts = per_thread_parts(n);
  const int64_t per_part = parts.size, n_parts = parts.count;
  std::vector<float> lo(channels * static_cast<size_t>(n_parts), kInf);
  std::vector<float> hi(lo.size(), -kInf);
  std::atomic<int> finite{1};
  parallel_ranges(n, per_part, [&](int64_t a, int64_t b) {
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
    fake_quantize(w, y, l, scales, zeros.data(), r);
  }
  return true;
}

// SPEC "ULQ", per channel, in float32 exactly as written there.
struct UlqChannel {
  float scale;
  int32_t zero_point;
  UlqConst k;
};

UlqChannel ulq_channel(float clip_min, float clip_max, bool fixed_min, QRange r) {
  const auto levels = static_cast<float>(r.qmax - r.qmin);  // L
  const float cmin = fixed_min ? 0.0f : std::min(clip_min, 0.0f);
  const float cmax = std::max(clip_max, levels * kEps);
  const float s = (cmax - cmin) / levels;  // >= EPS, since cmax >= L * EPS and cmin <= 0
  const float inv = 1.0f / s;
  // n_lo in [-L, 0]: cmin * inv is cmin * L / (cmax - cmin), off by a few ulps.
  const float n_lo = std::rint(cmin * inv);
  return {s, r.qmin - static_cast<int32_t>(n_lo), {inv, s * n_lo, s * (n_lo + levels), cmin, cmax}};
}

// Elements per partial sum in the ULQ backward. Fixed: never derived from the
// thread count or the grain, so the float64 sums are the same however the
// pieces are scheduled.
constexpr int64_t kUlqBlock = int64_t{1} << 14;
// With the channel axis last, the outer rows are cut into this many groups,
// each with its own per-channel accumulators.
constexpr int64_t kUlqColGroups = 64;

// Channels along the last axis: per-channel accumulators per group of outer rows.
void ulq_backward_cols(const float* x, const float* g, float* gx, const Layout& l,
                       const std::vector<UlqChannel>& ch, std::vector<UlqSums>& total) {
  const UlqKernels& k = *kernels().ulq;
  const int64_t channels = l.channels;
  const auto nc = static_cast<size_t>(channels);
  std::vector<float> inv(nc), lo_e(nc), hi_e(nc), cmin(nc), cmax(nc);
  for (size_t c = 0; c < nc; ++c) {
    inv[c] = ch[c].k.inv_scale;
    lo_e[c] = ch[c].k.lo_e;
    hi_e[c] = ch[c].k.hi_e;
    cmin[c] = ch[c].k.cmin;
    cmax[c] = ch[c].k.cmax;
  }
  const UlqConstArrays arrays{inv.data(), lo_e.data(), hi_e.data(), cmin.data(), cmax.data()};
  const int64_t groups = std::min(l.outer, kUlqColGroups);
  std::vector<double> gd(nc * static_cast<size_t>(groups)), gup(gd.size()), glo(gd.size());
  const int64_t groups_per_chunk =
      std::max<int64_t>(1, grain() / std::max<int64_t>(1, l.size() / groups));
  parallel_ranges(groups, groups_per_chunk, [&](int64_t k0, int64_t k1) {
    for (int64_t grp = k0; grp < k1; ++grp) {
      const size_t base = static_cast<size_t>(grp) * nc;
      for (int64_t o = grp * l.outer / groups; o < (grp + 1) * l.outer / groups; ++o) {
        const int64_t off = o * channels;
        k.backward_cols(x + off, g + off, gx + off, channels, arrays, &gd[base], &gup[base],
                        &glo[base]);
      }
    }
  });
  for (size_t grp = 0; grp < static_cast<size_t>(groups); ++grp) {
    for (size_t c = 0; c < nc; ++c) {
      total[c].gd += gd[grp * nc + c];
      total[c].gup += gup[grp * nc + c];
      total[c].glo += glo[grp * nc + c];
    }
  }
}

// Channels as rows of `inner` elements: each channel's elements, in order, are
// cut into pieces of about kUlqBlock (a block of one long row, or a group of
// whole short rows), each summed on its own, then added in piece order.
void ulq_backward_rows(const float* x, const float* g, float* gx, const Layout& l,
                       const std::vector<UlqChannel>& ch, std::vector<UlqSums>& total) {
  const UlqKernels& k = *kernels().ulq;
  const bool long_rows = l.inner >= kUlqBlock;
  const int64_t blocks_per_row = (l.inner + kUlqBlock - 1) / kUlqBlock;
  const int64_t rows_per_piece = long_rows ? 1 : kUlqBlock / l.inner;
  const int64_t pieces =
      long_rows ? l.outer * blocks_per_row : (l.outer + rows_per_piece - 1) / rows_per_piece;
  std::vector<UlqSums> partial(static_cast<size_t>(l.channels * pieces));
  const int64_t piece_elems = long_rows ? kUlqBlock : rows_per_piece * l.inner;
  parallel_ranges(l.channels * pieces, std::max<int64_t>(1, grain() / piece_elems),
                  [&](int64_t t0, int64_t t1) {
                    for (int64_t t = t0; t < t1; ++t) {
                      const int64_t c = t / pieces, p = t % pieces;
                      const UlqConst kc = ch[static_cast<size_t>(c)].k;
                      UlqSums& acc = partial[static_cast<size_t>(t)];
                      if (long_rows) {
                        const int64_t o = p / blocks_per_row, b = p % blocks_per_row;
                        const int64_t off = (o * l.channels + c) * l.inner + b * kUlqBlock;
                        const int64_t len = std::min(kUlqBlock, l.inner - b * kUlqBlock);
                        k.backward_row(x + off, g + off, gx + off, len, kc, &acc);
                      } else {
                        const int64_t o_end = std::min(l.outer, (p + 1) * rows_per_piece);
                        for (int64_t o = p * rows_per_piece; o < o_end; ++o) {
                          const int64_t off = (o * l.channels + c) * l.inner;
                          k.backward_row(x + off, g + off, gx + off, l.inner, kc, &acc);
                        }
                      }
                    }
                  });
  for (size_t c = 0; c < static_cast<size_t>(l.channels); ++c) {
    for (size_t p = 0; p < static_cast<size_t>(pieces); ++p) {
      const UlqSums& s = partial[c * static_cast<size_t>(pieces) + p];
      total[c].gd += s.gd;
      total[c].gup += s.gup;
      total[c].glo += s.glo;
    }
  }
}

}  // namespace

QRange qrange(int num_bits) {
  const int32_t half = int32_t{1} << (num_bits - 1);
  return {-half, half - 1};
}

void fake_quantize(const float* x, float* y, const Layout& l, const float* scale,
                   const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  const ChannelConsts cc(scale, zero_point, l.channels, r);
  elementwise(
      l,
      [&](int64_t off, int64_t n, int64_t c) {
        k.fq_row(x + off, y + off, n, cc.rows[static_cast<size_t>(c)]);
      },
      [&](int64_t off, int64_t n, int64_t c) { k.fq_cols(x + off, y + off, n, cc.from(c)); });
}

bool quantize(const float* x, int8_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  return quantize_impl(x, q, l, scale, zero_point, r, k.quant_row_i8, k.quant_cols_i8);
}

bool quantize(const float* x, int16_t* q, const Layout& l, const float* scale,
              const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  return quantize_impl(x, q, l, scale, zero_point, r, k.quant_row_i16, k.quant_cols_i16);
}

void dequantize(const int8_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  dequantize_impl(q, y, l, scale, zero_point, r, k.dequant_row_i8, k.dequant_cols_i8);
}

void dequantize(const int16_t* q, float* y, const Layout& l, const float* scale,
                const int32_t* zero_point, QRange r) {
  const FakeQuantKernels& k = *kernels().fq;
  dequantize_impl(q, y, l, scale, zero_point, r, k.dequant_row_i16, k.dequant_cols_i16);
}

int64_t arq(const float* w, float* y, const Layout& l, QRange r, float* scales) {
  // The fused pass writes channel by channel, so it would leave an aliased w
  // half-overwritten when a later channel turns out to hold a NaN; in-place
  // calls reduce everything first and write only once the input is known good.
  const bool fused = l.outer == 1 && l.channels > 1 && y != w;
  const bool ok = fused ? arq_fused_rows(w, y, l, r, scales) : arq_two_pass(w, y, l, r, scales);
  return ok ? -1 : first_non_finite(w, l.size());
}

int64_t ulq_params(const float* clip_min, const float* clip_max, int64_t channels, bool fixed_min,
                   QRange r, float* scale, int32_t* zero_point) {
  std::vector<UlqChannel> ch(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {  // all checked before anything is written
    ch[static_cast<size_t>(c)] = ulq_channel(clip_min[c], clip_max[c], fixed_min, r);
    if (!std::isfinite(ch[static_cast<size_t>(c)].scale)) return c;
  }
  for (size_t c = 0; c < ch.size(); ++c) {
    scale[c] = ch[c].scale;
    zero_point[c] = ch[c].zero_point;
  }
  return -1;
}

void ulq_backward(const float* x, const float* g, float* gx, const Layout& l,
                  const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                  float* grad_clip_min, float* grad_clip_max) {
  const auto nc = static_cast<size_t>(l.channels);
  std::vector<UlqChannel> ch(nc);
  for (size_t c = 0; c < nc; ++c) ch[c] = ulq_channel(clip_min[c], clip_max[c], fixed_min, r);
  std::vector<UlqSums> total(nc, UlqSums{0.0, 0.0, 0.0});
  if (l.size() > 0) {
    if (l.inner == 1 && l.channels > 1) {
      ulq_backward_cols(x, g, gx, l, ch, total);
    } else {
      ulq_backward_rows(x, g, gx, l, ch, total);
    }
  }
  const auto levels = static_cast<double>(r.qmax - r.qmin);
  for (size_t c = 0; c < nc; ++c) {
    const double e = total[c].gd / levels;
    grad_clip_max[c] = static_cast<float>(e + total[c].gup);
    grad_clip_min[c] = fixed_min ? 0.0f : static_cast<float>(total[c].glo - e);
  }
}

Range minmax(const float* x, int64_t n) {
  const Kernels& k = kernels();
  // Min and max are exact: one part per thread, combined in any order.
  const Parts parts = per_thread_parts(n);
  const int64_t per_part = parts.size;
  std::vector<MinMax> part(static_cast<size_t>(parts.count), MinMax{kInf, -kInf, 1});
  parallel_ranges(n, per_part, [&](int64_t a, int64_t b) {
    k.reduce->minmax(x + a, b - a, &part[static_cast<size_t>(a / per_part)]);
  });
  Range r{kInf, -kInf, true};
  for (const MinMax& m : part) {
    r.lo = std::min(r.lo, m.lo);
    r.hi = std::max(r.hi, m.hi);
    r.finite = r.finite && m.finite;
  }
  return r;
}

void histogram_add(const float* x, int64_t n, double inv_width, double offset, int64_t* counts,
                   int64_t nbins) {
  const IfmrKernels& k = *kernels().ifmr;
  // One private count array per part; integer sums are exact in any order.
  const Parts parts = per_thread_parts(n);
  const int64_t per_part = parts.size;
  const auto nb = static_cast<size_t>(nbins);
  std::vector<int64_t> priv(nb * static_cast<size_t>(parts.count - 1), 0);
  std::vector<uint16_t> scratch(nb * static_cast<size_t>(parts.count), 0);
  parallel_ranges(n, per_part, [&](int64_t a, int64_t b) {
    const int64_t p = a / per_part;
    int64_t* dst = p == 0 ? counts : &priv[static_cast<size_t>(p - 1) * nb];
    k.histogram_add(x + a, b - a, inv_width, offset, dst, nbins,
                    &scratch[static_cast<size_t>(p) * nb]);
  });
  for (size_t p = 0; p + 1 < static_cast<size_t>(parts.count); ++p) {
    for (size_t i = 0; i < nb; ++i) counts[i] += priv[p * nb + i];
  }
}

void data_sq_errors(const float* x, int64_t n, const float* scales, const int32_t* zero_points,
                    int64_t candidates, QRange r, double* out) {
  const IfmrKernels& k = *kernels().ifmr;
  // Fixed blocks (never from the thread count or grain), each small enough to
  // stay in cache while every candidate scores it; block sums added in order.
  constexpr int64_t kBlock = int64_t{1} << 13;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const auto nc = static_cast<size_t>(candidates);
  std::vector<QuantConst> consts(nc);
  for (size_t c = 0; c < nc; ++c) consts[c] = make_const(scales[c], zero_points[c], r);
  std::vector<double> partial(static_cast<size_t>(blocks) * nc, 0.0);
  parallel_ranges(blocks, std::max<int64_t>(1, grain() / kBlock), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t a = b * kBlock, len = std::min(kBlock, n - a);
      for (size_t c = 0; c < nc; ++c) {
        partial[static_cast<size_t>(b) * nc + c] = k.data_sq_error(x + a, len, consts[c]);
      }
    }
  });
  for (size_t c = 0; c < nc; ++c) {
    double sum = 0.0;
    for (size_t b = 0; b < static_cast<size_t>(blocks); ++b) sum += partial[b * nc + c];
    out[c] = sum;
  }
}

void hist_sq_errors(const double* lo, const double* hi, const double* count, int64_t bins,
                    const float* scales, const int32_t* zero_points, int64_t candidates, QRange r,
                    double* out) {
  const IfmrKernels& k = *kernels().ifmr;
  // Candidates are independent: each one's sum is computed whole by one thread.
  const int64_t per_chunk = std::max<int64_t>(1, grain() / std::max<int64_t>(1, bins));
  parallel_ranges(candidates, per_chunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      out[c] = k.hist_sq_error(lo, hi, count, bins, static_cast<double>(scales[c]),
                               static_cast<double>(r.qmin - zero_points[c]),
                               static_cast<double>(r.qmax - zero_points[c]));
    }
  });
}

}  // namespace qatcore
