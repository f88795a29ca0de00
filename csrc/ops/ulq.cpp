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

int64_t ulq_forward(const float* x, float* y, const Layout& l, const float* clip_min,
                    const float* clip_max, bool fixed_min, QRange r, float* scale,
                    int32_t* zero_point) {
  const int64_t bad = ulq_params(clip_min, clip_max, l.channels, fixed_min, r, scale, zero_point);
  if (bad >= 0) return bad;
  fake_quantize(x, y, l, scale, zero_point, r);
  return -1;
}

int64_t ulq_backward(const float* x, const float* g, float* gx, const Layout& l,
                     const float* clip_min, const float* clip_max, bool fixed_min, QRange r,
                     float* grad_clip_min, float* grad_clip_max) {
  const auto nc = static_cast<size_t>(l.channels);
  std::vector<UlqChannel> ch;
  const int64_t bad = ulq_channels(clip_min, clip_max, l.channels, fixed_min, r, &ch);
  if (bad >= 0) return bad;
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
  return -1;
}

}  // namespace qatcore
