#include "ops/ulq.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dispatch.h"
#include "ops/fake_quant.h"

namespace qatcore {
namespace {

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

// Elements per partial sum in the ULQ backwards. Fixed: never derived from the
// thread count or the grain, so the float64 sums are the same however the
// pieces are scheduled.
constexpr int64_t kUlqBlock = int64_t{1} << 14;
// With the channel axis last, the outer rows are cut into this many groups,
// each with its own per-channel accumulators.
constexpr int64_t kUlqColGroups = 64;

// The fixed-piece float64 summation that both ULQ backwards share: K sums per
// channel, added into total[c * K + k] (which the caller zeroes) in an order fixed
// by the layout alone, so the result is bit-identical for every thread count.
//   row(off, len, c, acc): one run inside channel c's row, adding its K sums to acc[k];
//   cols(off, len, acc): one run along the channel axis from channel 0 (inner == 1),
//   adding element i's terms to acc[k][i].
// Channels as rows of `inner` elements: each channel's elements, in order, are cut
// into pieces of about kUlqBlock (a block of one long row, or a group of whole
// short rows), each summed on its own, then added in piece order. Channels along
// the last axis: per-channel accumulators per group of outer rows, added in group
// order.
template <int K, class Row, class Cols>
void backward_sums(Executor& ex, const Layout& l, const Row& row, const Cols& cols,
                   std::vector<double>& total) {
  constexpr auto nk = static_cast<size_t>(K);
  const auto nc = static_cast<size_t>(l.channels);
  if (l.size() == 0) return;
  if (l.inner == 1 && l.channels > 1) {
    const int64_t groups = std::min(l.outer, kUlqColGroups);
    const auto ng = static_cast<size_t>(groups);
    std::vector<double> sums(nk * ng * nc);  // [k][group][channel]
    const int64_t min_groups =
        grain(Family::ulq_backward) / std::max<int64_t>(1, l.size() / groups);
    parallel_ranges(ex, groups, even_chunk(groups, min_groups), [&](int64_t k0, int64_t k1) {
      for (int64_t grp = k0; grp < k1; ++grp) {
        double* acc[K];
        for (size_t k = 0; k < nk; ++k) {
          acc[k] = &sums[(k * ng + static_cast<size_t>(grp)) * nc];
        }
        for (int64_t o = grp * l.outer / groups; o < (grp + 1) * l.outer / groups; ++o) {
          cols(o * l.channels, l.channels, acc);
        }
      }
    });
    for (size_t grp = 0; grp < ng; ++grp) {
      for (size_t c = 0; c < nc; ++c) {
        for (size_t k = 0; k < nk; ++k) total[c * nk + k] += sums[(k * ng + grp) * nc + c];
      }
    }
    return;
  }
  const bool long_rows = l.inner >= kUlqBlock;
  const int64_t blocks_per_row = (l.inner + kUlqBlock - 1) / kUlqBlock;
  const int64_t rows_per_piece = long_rows ? 1 : kUlqBlock / l.inner;
  const int64_t pieces =
      long_rows ? l.outer * blocks_per_row : (l.outer + rows_per_piece - 1) / rows_per_piece;
  std::vector<double> partial(static_cast<size_t>(l.channels * pieces) * nk);
  const int64_t piece_elems = long_rows ? kUlqBlock : rows_per_piece * l.inner;
  parallel_ranges(ex, l.channels * pieces,
                  even_chunk(l.channels * pieces, grain(Family::ulq_backward) / piece_elems),
                  [&](int64_t t0, int64_t t1) {
                    for (int64_t t = t0; t < t1; ++t) {
                      const int64_t c = t / pieces, p = t % pieces;
                      double* acc = &partial[static_cast<size_t>(t) * nk];
                      if (long_rows) {
                        const int64_t o = p / blocks_per_row, b = p % blocks_per_row;
                        const int64_t off = (o * l.channels + c) * l.inner + b * kUlqBlock;
                        row(off, std::min(kUlqBlock, l.inner - b * kUlqBlock), c, acc);
                      } else {
                        const int64_t o_end = std::min(l.outer, (p + 1) * rows_per_piece);
                        for (int64_t o = p * rows_per_piece; o < o_end; ++o) {
                          row((o * l.channels + c) * l.inner, l.inner, c, acc);
                        }
                      }
                    }
                  });
  const auto np = static_cast<size_t>(pieces);
  for (size_t c = 0; c < nc; ++c) {
    for (size_t p = 0; p < np; ++p) {
      for (size_t k = 0; k < nk; ++k) total[c * nk + k] += partial[(c * np + p) * nk + k];
    }
  }
}

// Every channel's constants, or the first channel whose scale overflows.
int64_t ulq_channels(const float* clip_min, const float* clip_max, int64_t channels,
                     bool fixed_min, QRange r, std::vector<UlqChannel>* ch) {
  ch->resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const UlqChannel u = ulq_channel(clip_min[c], clip_max[c], fixed_min, r);
    if (!std::isfinite(u.scale)) return c;
    (*ch)[static_cast<size_t>(c)] = u;
  }
  return -1;
}

}  // namespace

int64_t ulq_params(const float* clip_min, const float* clip_max, int64_t channels, bool fixed_min,
                   QRange r, float* scale, int32_t* zero_point) {
  std::vector<UlqChannel> ch;
  const int64_t bad = ulq_channels(clip_min, clip_max, channels, fixed_min, r, &ch);
  if (bad >= 0) return bad;
  for (size_t c = 0; c < ch.size(); ++c) {
    scale[c] = ch[c].scale;
    zero_point[c] = ch[c].zero_point;
  }
  return -1;
}

int64_t ulq_forward(Executor& ex, const float* x, float* y, const Layout& l, const float* clip_min,
                    const float* clip_max, bool fixed_min, QRange r, float* scale,
                    int32_t* zero_point) {
  const int64_t bad = ulq_params(clip_min, clip_max, l.channels, fixed_min, r, scale, zero_point);
  if (bad >= 0) return bad;
  fake_quantize(ex, x, y, l, scale, zero_point, r);
  return -1;
}

int64_t ulq_backward(Executor& ex, const float* x, const float* g, float* gx, const Layout& l,
                     const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                     float* grad_clip_min, float* grad_clip_max) {
  const auto nc = static_cast<size_t>(l.channels);
  std::vector<UlqChannel> ch;
  const int64_t bad = ulq_channels(clip_min, clip_max, l.channels, fixed_min, r, &ch);
  if (bad >= 0) return bad;
  const UlqKernels& k = *kernels().ulq;
  std::vector<float> inv, lo_e, hi_e, cmin, cmax;  // per-channel arrays, for runs along them
  if (l.inner == 1 && l.channels > 1) {
    for (const UlqChannel& u : ch) {
      inv.push_back(u.k.inv_scale);
      lo_e.push_back(u.k.lo_e);
      hi_e.push_back(u.k.hi_e);
      cmin.push_back(u.k.cmin);
      cmax.push_back(u.k.cmax);
    }
  }
  const UlqConstArrays arrays{inv.data(), lo_e.data(), hi_e.data(), cmin.data(), cmax.data()};
  std::vector<double> total(nc * kUlqSums, 0.0);
  backward_sums<kUlqSums>(
      ex, l,
      [&](int64_t off, int64_t len, int64_t c, double* acc) {
        k.backward_row(x + off, g + off, gx + off, len, ch[static_cast<size_t>(c)].k, acc);
      },
      [&](int64_t off, int64_t len, double* const* acc) {
        k.backward_cols(x + off, g + off, gx + off, len, arrays, acc);
      },
      total);
  const auto levels = static_cast<double>(r.qmax - r.qmin);
  for (size_t c = 0; c < nc; ++c) {
    const double* t = &total[c * kUlqSums];
    const double e = t[kUlqGd] / levels;
    grad_clip_max[c] = static_cast<float>(e + t[kUlqGup]);
    grad_clip_min[c] = fixed_min ? 0.0f : static_cast<float>(t[kUlqGlo] - e);
  }
  return -1;
}

void ulq_weight_forward(Executor& ex, const float* w, float* y, const Layout& l, const float* scale,
                        QRange r) {
  const std::vector<int32_t> zeros(static_cast<size_t>(l.channels), 0);
  fake_quantize(ex, w, y, l, scale, zeros.data(), r);
}

void ulq_weight_backward(Executor& ex, const float* w, const float* g, float* gw, const Layout& l,
                         const float* scale, QRange r, float* grad_scale) {
  const auto nc = static_cast<size_t>(l.channels);
  const auto qmin = static_cast<float>(r.qmin), qmax = static_cast<float>(r.qmax);
  std::vector<float> inv(nc), lo_b(nc), hi_b(nc);
  for (size_t c = 0; c < nc; ++c) {
    inv[c] = 1.0f / scale[c];
    lo_b[c] = qmin * scale[c];
    hi_b[c] = qmax * scale[c];
  }
  // grad_weight is g itself: with gw == g there is nothing to write.
  float* dst = gw == g ? nullptr : gw;
  const UlqKernels& k = *kernels().ulq;
  const UlqWeightConstArrays arrays{inv.data(), lo_b.data(), hi_b.data()};
  std::vector<double> total(nc * kUlqWeightSums, 0.0);
  backward_sums<kUlqWeightSums>(
      ex, l,
      [&](int64_t off, int64_t len, int64_t c, double* acc) {
        const auto i = static_cast<size_t>(c);
        k.weight_backward_row(w + off, g + off, dst ? dst + off : nullptr, len,
                              {inv[i], lo_b[i], hi_b[i]}, qmin, qmax, acc);
      },
      [&](int64_t off, int64_t len, double* const* acc) {
        k.weight_backward_cols(w + off, g + off, dst ? dst + off : nullptr, len, arrays, qmin,
                               qmax, acc);
      },
      total);
  // SPEC "Weight ULQ": the sum over sqrt(N * qmax), N the elements of one channel.
  const auto per_channel = static_cast<double>(l.outer * l.inner);
  const double norm = std::sqrt(per_channel * static_cast<double>(r.qmax));
  for (size_t c = 0; c < nc; ++c) {
    grad_scale[c] = per_channel > 0 ? static_cast<float>(total[c] / norm) : 0.0f;
  }
}

}  // namespace qatcore
