#include "ops/ifmr.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include "dispatch.h"
#include "ops/fake_quant.h"
#include "ops/layout.h"

namespace qatcore {
namespace {

// Up to this many bins, each part counts into 16-bit staging counters (a
// 16384-bin histogram stays in L1) that the kernel flushes every 65535 values.
// Above it the flush would cost more than it saves: parts count into int64 directly.
constexpr int64_t kStagedBins = int64_t{1} << 16;

// Scratch of histogram_add, kept between calls so that a calibration loop does
// not allocate it per batch. Staging counters are all zero between uses (the
// kernel zeroes what it used before returning); private counts are zeroed per call.
struct HistogramScratch {
  std::vector<int64_t> priv;
  std::vector<uint16_t> staging;

  void prepare(size_t priv_size, size_t staging_size) {
    if (priv.size() < priv_size) priv.resize(priv_size);
    std::fill(priv.begin(), priv.begin() + static_cast<std::ptrdiff_t>(priv_size), 0);
    if (staging.size() < staging_size) staging.resize(staging_size, 0);
  }
};

std::mutex g_scratch_mutex;
HistogramScratch g_scratch;  // guarded by g_scratch_mutex

}  // namespace

void histogram_add(Executor& ex, const float* x, int64_t n, double inv_width, double offset,
                   int64_t* counts, int64_t nbins) {
  const IfmrKernels& k = *kernels().ifmr;
  // Part 0 counts into `counts`; every other part into private int64 counts,
  // added afterwards (integer sums: exact in any order). The number of parts is
  // capped so that all scratch stays within kHistogramScratchBytes.
  const auto nb = static_cast<size_t>(nbins);
  const size_t staged = nbins <= kStagedBins ? nb : 0;
  const size_t per_part = staged * sizeof(uint16_t) + nb * sizeof(int64_t);
  const auto max_parts = static_cast<int64_t>(
      (kHistogramScratchBytes + nb * sizeof(int64_t)) / per_part);
  const Parts parts = per_thread_parts(ex, n, std::max<int64_t>(1, max_parts));
  const auto n_parts = static_cast<size_t>(parts.count);
  const int64_t part_size = parts.size;

  // The shared scratch if no other caller holds it, else a private one of the same bound.
  std::unique_lock<std::mutex> lock(g_scratch_mutex, std::try_to_lock);
  HistogramScratch local;
  HistogramScratch& s = lock.owns_lock() ? g_scratch : local;
  s.prepare(nb * (n_parts - 1), staged * n_parts);

  parallel_ranges(ex, n, part_size, [&](int64_t a, int64_t b) {
    const auto p = static_cast<size_t>(a / part_size);
    int64_t* dst = p == 0 ? counts : &s.priv[(p - 1) * nb];
    uint16_t* stage = staged ? &s.staging[p * staged] : nullptr;
    k.histogram_add(x + a, b - a, inv_width, offset, dst, nbins, stage);
  });
  for (size_t p = 0; p + 1 < n_parts; ++p) {
    const int64_t* src = &s.priv[p * nb];
    for (size_t i = 0; i < nb; ++i) counts[i] += src[i];
  }
}

void data_sq_errors(Executor& ex, const float* x, int64_t n, const float* scales,
                    const int32_t* zero_points, int64_t candidates, QRange r, double* out) {
  const IfmrKernels& k = *kernels().ifmr;
  // Fixed blocks (never from the thread count or grain), each small enough to
  // stay in cache while every candidate scores it; block sums added in order.
  constexpr int64_t kBlock = int64_t{1} << 13;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const auto nc = static_cast<size_t>(candidates);
  std::vector<QuantConst> consts(nc);
  for (size_t c = 0; c < nc; ++c) consts[c] = quant_const(scales[c], zero_points[c], r);
  std::vector<double> partial(static_cast<size_t>(blocks) * nc, 0.0);
  const int64_t min_blocks =
      grain(Family::ifmr) / std::max<int64_t>(1, kBlock * static_cast<int64_t>(nc));
  parallel_ranges(ex, blocks, even_chunk(blocks, min_blocks), [&](int64_t b0, int64_t b1) {
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

void hist_sq_errors(Executor& ex, const double* lo, const double* hi, const double* count,
                    int64_t bins, const float* scales, const int32_t* zero_points,
                    int64_t candidates, QRange r, double* out) {
  const IfmrKernels& k = *kernels().ifmr;
  // Candidates are independent: each one's sum is computed whole by one thread.
  const int64_t min_candidates = grain(Family::ifmr) / std::max<int64_t>(1, bins);
  const int64_t per_chunk = even_chunk(candidates, min_candidates);
  parallel_ranges(ex, candidates, per_chunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      out[c] = k.hist_sq_error(lo, hi, count, bins, static_cast<double>(scales[c]),
                               static_cast<double>(r.qmin - zero_points[c]),
                               static_cast<double>(r.qmax - zero_points[c]));
    }
  });
}

}  // namespace qatcore
